"""fit_head: the three losses against their references, training, pools, checkpoints, bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.solvers.linear import sinkhorn

import ottsliced as ots
from ottsliced.data import grid_points, load_digits
from ottsliced.fitting.heads import head_loss
from ottsliced.fitting.objective import semi_dual
from ottsliced.fitting.regression import ground_truth, regression_targets

KW = {"steps": 40, "batch_size": 4, "chunk_steps": 20, "progress": False, "hidden": (8,)}


def _clouds(num_pairs, n=12, m=10, d=2, eps=0.5, seed=0):
  rs = np.random.default_rng(seed)
  a, b = rs.uniform(0.1, 1, (num_pairs, n)), rs.uniform(0.1, 1, (num_pairs, m))
  x, y = rs.normal(size=(num_pairs, n, d)), rs.normal(size=(num_pairs, m, d)) + 0.5
  return ots.ProblemBatch(x, y, a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True), eps)


def _pair(model, batch, i):
  x, y = batch.points(i)
  px, py = model.projections(x, y)
  return px, py, x, y, batch.a[i], batch.b[i], batch.geometry(x, y)


def test_sweeps_loss_is_otts_error_after_k_iterations(x64, ra_model, digits_test):
  model = ra_model.replace(theta=ra_model.theta.astype(jnp.float64), alpha=ra_model.alpha.astype(jnp.float64))
  batch = ots.ProblemBatch(
    np.asarray(digits_test.x, np.float64),
    np.asarray(digits_test.y, np.float64),
    np.asarray(digits_test.a, np.float64),
    np.asarray(digits_test.b, np.float64),
    digits_test.epsilon,
  )
  for k in (1, 3):
    loss = head_loss(model, "sweeps", *_pair(model, batch, 0), num_sweeps=k)
    solver = sinkhorn.Sinkhorn(initializer=model, min_iterations=k, max_iterations=k, inner_iterations=1)
    out = solver(batch.problem(0))
    np.testing.assert_allclose(loss, out.errors[k - 1], rtol=1e-9)


def test_dual_loss_is_minus_the_semi_dual(ra_model, digits_test):
  px, py, x, y, a, b, geom = _pair(ra_model, digits_test, 1)
  f, _ = ra_model.predict_potentials(digits_test.problem(1))
  value = head_loss(ra_model, "dual", px, py, x, y, a, b, geom)
  np.testing.assert_allclose(value, -semi_dual(jnp.where(a > 0, f, 0.0), geom, a, b), rtol=1e-5)


def test_regression_loss_is_stationary_at_ra_ot(x64):
  """RA-OT's closed form minimises the same squared error (pairs with equally many atoms weigh alike)."""
  batch = _clouds(6)
  truth = ground_truth(batch, threshold=1e-10)
  model = ots.fit_ra(batch, num_projections=5, ridge=0.0, progress=False, truth=truth)
  targets = regression_targets(batch, truth.g, "weighted", "f")

  def mean_loss(alpha):
    m = model.replace(alpha=alpha)
    losses = [head_loss(m, "regression", *_pair(m, batch, i), target=targets[i]) for i in range(batch.num_pairs)]
    return jnp.mean(jnp.stack(losses))

  mean_grad = jax.jit(jax.grad(mean_loss))  # compiled once for both evaluations (eagerly, every op of 6 pairs)
  grad = mean_grad(model.alpha)
  assert float(jnp.max(jnp.abs(grad))) < 1e-9
  assert float(jnp.max(jnp.abs(mean_grad(1.1 * model.alpha)))) > 1e-6


@functools.partial(jax.jit, static_argnames="loss")
def _pair_loss(model, batch, i, loss, target):
  """Pair ``i``'s loss, compiled once per model structure and loss (eagerly, every op of every pair is dispatched)."""
  return head_loss(model, loss, *_pair(model, batch, i), target=target)


def _training_loss(model, batch, loss, targets=None):
  """The loss averaged over every pair of ``batch`` (not a minibatch)."""
  values = [_pair_loss(model, batch, i, loss, None if targets is None else targets[i]) for i in range(batch.num_pairs)]
  return float(jnp.mean(jnp.stack(values)))


@pytest.mark.parametrize("loss", ["regression", "dual", "sweeps"])
def test_each_loss_decreases_and_gives_a_usable_model(loss, ra_model, digits_train, digits_test):
  truth = ground_truth(digits_train, threshold=1e-5) if loss == "regression" else None
  targets = None if truth is None else regression_targets(digits_train, truth.g, "weighted", "f")
  kw = {**KW, "steps": 300, "batch_size": 8, "learning_rate": 3e-3, "hidden": (32, 32)}
  model = ots.fit_head(digits_train, loss=loss, model=ra_model, truth=truth, **kw)
  # RA-OT is the linear optimum of the regression loss: the head goes below it on the training pairs.
  assert _training_loss(model, digits_train, loss, targets) < _training_loss(ra_model, digits_train, loss, targets)
  assert model.head is not None
  assert model.method == {"regression": "ra", "dual": "oa", "sweeps": "sweeps"}[loss]
  assert model.summary["parameters"] == model.alpha.size + model.head.num_parameters
  out = ots.solve_batch(digits_test.take(slice(0, 4)), model, threshold=1e-2, inner_iterations=1)
  assert bool(jnp.all(out.converged))


def test_pools_draw_fresh_pairs_and_linear_only():
  images = load_digits()
  pools = ots.MeasurePools(grid_points(8), grid_points(8), images[:200], images[200:400], 1e-2)
  model = ots.fit_head(pools, loss="dual", num_projections=8, **{**KW, "hidden": (), "learning_rate": 1e-2})
  assert model.head is None
  assert model.summary["pools"] == [200, 200]
  history = np.asarray(model.summary["loss"])
  assert history[-10:].mean() < history[:10].mean()
  with pytest.raises(ValueError, match="regression loss needs converged potentials"):
    ots.fit_head(pools, loss="regression", **KW)


def test_head_only_keeps_alpha(ra_model, digits_train):
  model = ots.fit_head(digits_train, loss="sweeps", model=ra_model, train_alpha=False, **KW)
  np.testing.assert_array_equal(model.alpha, ra_model.alpha)
  assert np.ptp(np.asarray(model.head.params["params"]["Dense_1"]["kernel"])) > 0


def test_resume_after_crash_matches_uninterrupted(digits_train, tmp_path):
  batch, ckpt = digits_train.take(slice(0, 8)), tmp_path / "head.npz"
  kw = {**KW, "num_projections": 6, "loss": "sweeps", "rng": jax.random.key(3)}
  full = ots.fit_head(batch, **kw)

  def crash(step, model, losses):
    if step == 20:
      raise RuntimeError("injected failure")

  with pytest.raises(RuntimeError, match="injected failure"):
    ots.fit_head(batch, checkpoint_path=ckpt, checkpoint_every=20, callback=crash, **kw)
  resumed = ots.fit_head(batch, checkpoint_path=ckpt, checkpoint_every=20, resume=True, **kw)
  np.testing.assert_array_equal(resumed.alpha, full.alpha)
  jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.head.params, full.head.params)
  np.testing.assert_array_equal(resumed.summary["loss"], full.summary["loss"])
  with pytest.raises(ValueError, match="other settings"):
    ots.fit_head(batch, checkpoint_path=ckpt, resume=True, **{**kw, "loss": "dual"})


def test_bad_arguments(ra_model, digits_train):
  with pytest.raises(ValueError, match="`loss` must be one of"):
    ots.fit_head(digits_train, loss="mse", **KW)
  with pytest.raises(ValueError, match="must be >= 1"):
    ots.fit_head(digits_train, **{**KW, "steps": 0})
  with pytest.raises(ValueError, match="must be >= 1"):
    ots.fit_head(digits_train, num_sweeps=0, **KW)
  with pytest.raises(ValueError, match="learning_rate"):
    ots.fit_head(digits_train, learning_rate=0.0, **KW)
  with pytest.raises(ValueError, match="dimension"):
    ots.fit_head(_clouds(3, d=3), model=ra_model, **KW)
  with pytest.raises(ValueError, match="nothing to train"):
    ots.fit_head(digits_train, model=ra_model, train_alpha=False, **{**KW, "hidden": ()})
  with pytest.raises(TypeError, match="SlicedInitializer"):
    ots.fit_head(digits_train, model="ra", **KW)
  with pytest.raises(ValueError, match="resume"):
    ots.fit_head(digits_train, resume=True, **KW)
  with pytest.raises(ValueError, match="negative"):
    ots.fit_head(ots.MeasurePools(grid_points(8), grid_points(8), -np.ones((3, 64)), np.ones((3, 64)), 1e-2), **KW)


def test_pair_head_fits_standardised_and_lowers_its_loss(ra_model, digits_train, digits_test):
  model = ots.fit_head(digits_train, loss="dual", model=ra_model, head="pair", **{**KW, "steps": 100, "hidden": (32,)})
  params = model.head.params["params"]
  assert float(jnp.max(jnp.abs(params["shift"]))) > 0  # input scaling set from drawn pairs' summaries
  assert _training_loss(model, digits_train, "dual") < _training_loss(ra_model, digits_train, "dual")
  out = ots.solve_batch(digits_test.take(slice(0, 4)), model, threshold=1e-2, inner_iterations=1)
  assert bool(jnp.all(out.converged))
  with pytest.raises(ValueError, match="`head` must be one of"):
    ots.fit_head(digits_train, head="attention", **KW)
