"""MLPHead and models with a head: the linear model at start, pytree/jit, storage, any n and padding."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import predict_potentials
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem

import ottsliced as ots
from ottsliced import sliced
from ottsliced.initializers.heads import MLPHead, PairHead, pair_summary


def _with_head(model, seed=1, scale=0.05):
  """The model with a head whose output layer is non-zero (a fresh head outputs zero)."""
  head = MLPHead.init(jax.random.key(seed), model.num_projections, model.dim, (16, 16), model.theta.dtype)
  params = jax.tree_util.tree_map(
    lambda p: p + scale * jax.random.normal(jax.random.key(seed + 1), p.shape, p.dtype), head.params
  )
  return model.replace(head=MLPHead(params, head.hidden))


def _with_pair_head(model, seed=1):
  """The model with a pair head whose output is non-zero."""
  head = PairHead.init(jax.random.key(seed), model.num_projections, model.dim, (16,), model.theta.dtype)
  inner = dict(head.params["params"])
  inner["Dense_1"] = jax.tree_util.tree_map(
    lambda p: 0.3 * jax.random.normal(jax.random.key(seed + 1), p.shape, p.dtype), inner["Dense_1"]
  )
  return model.replace(head=PairHead({"params": inner}, head.hidden))


@pytest.mark.parametrize("kind", [MLPHead, PairHead])
def test_fresh_head_is_the_linear_model(kind, ra_model, digits_test):
  prob = digits_test.problem(0)
  head = kind.init(jax.random.key(0), ra_model.num_projections, ra_model.dim, (8,))
  f_lin, _ = ra_model.predict_potentials(prob)
  f_head, _ = ra_model.replace(head=head).predict_potentials(prob)
  mask = prob.a > 0
  # The linear fast path is Phi alpha up to a constant (a gauge); compare centred.
  centre = lambda f: f[mask] - jnp.mean(f[mask])  # noqa: E731
  np.testing.assert_allclose(centre(f_head), centre(f_lin), atol=1e-5)


def test_head_changes_the_prediction_by_its_residual(ra_model, digits_test):
  prob = digits_test.problem(0)
  model = _with_head(ra_model)
  x, y = prob.geom.x, prob.geom.y
  phi, _ = model.features(*model.projections(x, y), prob.a, prob.b)
  f, _ = model.predict_potentials(prob)
  f_lin = ra_model.potentials_from_features(phi, None, prob.a, prob.b, prob.geom.epsilon)[0]
  mask = prob.a > 0
  np.testing.assert_allclose(f[mask], (f_lin + model.head(phi, x))[mask], rtol=1e-5, atol=1e-6)
  assert np.ptp(np.asarray(model.head(phi, x))) > 1e-3


def test_new_head_parameters_do_not_retrace(ra_model, digits_test):
  prob = digits_test.problem(0)
  model = _with_head(ra_model)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def predict(m, prob):
    return m(prob, lse_mode=True)[0]

  f1 = predict(model, prob)
  f2 = predict(model.replace(head=jax.tree_util.tree_map(lambda p: 2 * p, model.head)), prob)
  assert not np.allclose(f1, f2)


def test_any_number_of_atoms_and_padding(x64):
  rs = np.random.default_rng(0)
  x, y = rs.normal(size=(30, 3)), rs.normal(size=(25, 3))
  a, b = rs.uniform(0.1, 1, 30), rs.uniform(0.1, 1, 25)
  a, b = a / a.sum(), b / b.sum()
  batch = ots.ProblemBatch(x, y, a[None], b[None], 0.5)
  model = _with_head(ots.fit_ra(batch, num_projections=6, progress=False))
  # Compiled prediction (one program per shape, not every eager op compiled for each of the three shapes).
  f, _ = predict_potentials(model, batch.problem(0))
  # Pad both sides with zero-weight atoms far away: the real atoms' prediction is unchanged.
  xp, yp = np.concatenate([x, 5 + rs.normal(size=(7, 3))]), np.concatenate([y, rs.normal(size=(4, 3))])
  ap, bp = np.concatenate([a, np.zeros(7)]), np.concatenate([b, np.zeros(4)])
  padded = linear_problem.LinearProblem(pointcloud.PointCloud(xp, yp, epsilon=0.5), a=ap, b=bp)
  fp, gp = predict_potentials(model, padded)
  np.testing.assert_allclose(fp[:30], f, rtol=1e-10, atol=1e-12)
  assert np.all(np.isneginf(fp[30:]))
  assert np.all(np.isneginf(gp[25:]))
  # Another number of atoms, same model.
  small = linear_problem.LinearProblem(pointcloud.PointCloud(x[:11], y[:9], epsilon=0.5))
  assert np.all(np.isfinite(predict_potentials(model, small)[0]))


def test_round_trip_with_head(ra_model, digits_test, tmp_path):
  model, path = _with_head(ra_model), tmp_path / "head.npz"
  model.save(path)
  loaded = ots.SlicedInitializer.load(path)
  assert loaded.head.hidden == model.head.hidden
  chex.assert_trees_all_equal(loaded.head.params, model.head.params)
  prob = digits_test.problem(1)
  np.testing.assert_array_equal(loaded.predict_potentials(prob)[0], model.predict_potentials(prob)[0])
  with np.load(path) as d:
    assert json.loads(str(d["metadata"]))["format_version"] == 2
  ra_model.save(tmp_path / "linear.npz")  # no head: still readable by every ottsliced
  with np.load(tmp_path / "linear.npz") as d:
    assert json.loads(str(d["metadata"]))["format_version"] == 1


def test_bad_heads(ra_model, digits_test):
  with pytest.raises(ValueError, match="L \\+ d"):
    ra_model.replace(head=MLPHead.init(jax.random.key(0), ra_model.num_projections + 1, ra_model.dim, (4,)))
  with pytest.raises(TypeError, match="MLPHead"):
    ra_model.replace(head={"params": {}})
  with pytest.raises(ValueError, match="hidden"):
    MLPHead.init(jax.random.key(0), 4, 2, ())
  prob = digits_test.problem(0)
  model = _with_head(ra_model)
  px, py = model.projections(prob.geom.x, prob.geom.y)
  with pytest.raises(ValueError, match="needs the source points"):
    model.predict_from_projections(px, py, prob.a, prob.b, prob.geom.epsilon)
  arrays = model.head.arrays()
  with pytest.raises(ValueError, match="do not match"):
    MLPHead.from_arrays(arrays, (16,))


def test_corrections_solver_accepts_a_head(ra_model, digits_test):
  prob = digits_test.problem(2)
  model = _with_head(ra_model, scale=0.01)
  out = jax.jit(lambda s, p: s(p))(ots.SlicedSinkhorn.from_initializer(model, threshold=1e-3), prob)
  assert bool(out.converged)


class TestPairHead:
  def test_prediction_is_phi_times_the_pairs_coefficients(self, ra_model, digits_test):
    model = _with_pair_head(ra_model)
    prob = digits_test.problem(3)
    px, py = model.projections(prob.geom.x, prob.geom.y)
    phi, psi = model.features(px, py, prob.a, prob.b)
    coef = model.alpha + model.head.coefficients(pair_summary(px, py, prob.a, prob.b, phi, psi))
    f, _ = model.predict_potentials(prob)
    mask = prob.a > 0
    expected = phi @ coef + prob.geom.epsilon * jnp.log(jnp.where(mask, prob.a, 1.0))
    np.testing.assert_allclose(f[mask], expected[mask], rtol=1e-5, atol=1e-6)
    assert float(jnp.max(jnp.abs(coef - model.alpha))) > 1e-3

  def test_summary_ignores_atom_order_and_padding(self, x64):
    rs = np.random.default_rng(1)
    x, y = rs.normal(size=(20, 2)), rs.normal(size=(15, 2))
    a, b = rs.uniform(0.1, 1, 20), rs.uniform(0.1, 1, 15)
    theta = ots.directions(jax.random.key(0), 2, 4, dtype=jnp.float64)

    @jax.jit  # one program per shape (two here) instead of every eager op compiled per shape
    def summary(x, y, a, b):
      px, py = sliced.sort_projections(x, theta), sliced.sort_projections(y, theta)
      phi, psi = sliced.sliced_potentials_sorted(px, py, a / a.sum(), b / b.sum())
      return pair_summary(px, py, a, b, phi, psi)

    ref = summary(x, y, a, b)
    perm = rs.permutation(20)
    np.testing.assert_allclose(summary(x[perm], y, a[perm], b), ref, rtol=1e-10, atol=1e-12)
    xp, ap = np.concatenate([x, rs.normal(size=(5, 2))]), np.concatenate([a, np.zeros(5)])
    np.testing.assert_allclose(summary(xp, y, ap, b), ref, rtol=1e-10, atol=1e-12)

  def test_round_trip_and_bad_sizes(self, ra_model, digits_test, tmp_path):
    model, path = _with_pair_head(ra_model), tmp_path / "pair.npz"
    model.save(path)
    loaded = ots.SlicedInitializer.load(path)
    assert isinstance(loaded.head, PairHead)
    prob = digits_test.problem(1)
    np.testing.assert_array_equal(loaded.predict_potentials(prob)[0], model.predict_potentials(prob)[0])
    with pytest.raises(ValueError, match="outputs 3 coefficients"):
      ra_model.replace(head=PairHead.init(jax.random.key(0), 3, ra_model.dim, (4,)))
    with pytest.raises(ValueError, match="needs the pair's summary"):
      model.head(jnp.ones((5, model.num_projections)), None, None)
