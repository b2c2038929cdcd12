"""Amortized solves: marginals after c-transforms, refinement, batching, padding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import predict_potentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ott.solvers.linear import sinkhorn

import ottsliced as ots
from ottsliced.solvers.iterations import marginal_errors


def test_column_then_row_marginals_exact(ra_model, digits_test):
  prob = digits_test.problem(3)
  one = ots.amortized_solve(prob, ra_model, two_sided=False)
  rows, cols = marginal_errors(prob.geom, one.f, one.g, prob.a, prob.b)
  assert float(cols) < 1e-5
  assert float(rows) > 1e-3
  two = ots.amortized_solve(prob, ra_model, two_sided=True)
  rows2, cols2 = marginal_errors(prob.geom, two.f, two.g, prob.a, prob.b)
  assert float(rows2) < 1e-5
  np.testing.assert_allclose(two.errors[0], rows2 + cols2, rtol=1e-4)  # jit vs eager float32
  np.testing.assert_allclose(two.matrix.sum(1), prob.a, atol=1e-5)
  assert np.isfinite(float(two.reg_ot_cost))


def test_refinement_reduces_error_and_approaches_sinkhorn(ra_model, digits_test):
  prob = digits_test.problem(5)
  errs = [float(ots.amortized_solve(prob, ra_model, refine_iterations=k).errors[0]) for k in (0, 10, 100)]
  assert errs[0] > errs[1] > errs[2]
  ref = sinkhorn.Sinkhorn(threshold=1e-6, max_iterations=50_000)(prob)
  out = ots.amortized_solve(prob, ra_model, refine_iterations=2000)
  np.testing.assert_allclose(out.matrix, ref.matrix, atol=2e-4)


def test_batched_equals_per_pair(ra_model, digits_test):
  batch = digits_test.take(slice(0, 4))
  out = ots.amortized_solve_batch(batch, ra_model, refine_iterations=3)
  for k in range(4):
    single = ots.amortized_solve(batch.problem(k), ra_model, refine_iterations=3)
    mask = batch.a[k] > 0
    np.testing.assert_allclose(out.f[k][mask], single.f[mask], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.errors[k, 0], single.errors[0], rtol=1e-4)


def test_padding_invariance(ra_model, digits_test):
  """A padded pair (zero-weight atoms at new locations) gives the same plan."""
  x, y = digits_test.points(0)
  a, b = digits_test.a[0], digits_test.b[0]
  extra = jnp.array([[0.5, 0.5], [2.0, -1.0], [0.1, 0.9]])
  padded = ots.ProblemBatch(
    jnp.concatenate([x, extra])[None],
    jnp.concatenate([y, extra[:2]])[None],
    jnp.concatenate([a, jnp.zeros(3)])[None],
    jnp.concatenate([b, jnp.zeros(2)])[None],
    digits_test.epsilon,
  )
  plain = ots.amortized_solve(digits_test.problem(0), ra_model)
  pad = ots.amortized_solve(padded.problem(0), ra_model)
  np.testing.assert_allclose(pad.matrix[:64, :64], plain.matrix, rtol=1e-4, atol=1e-7)  # float32; exact in x64 tests
  np.testing.assert_array_equal(pad.matrix[64:], 0.0)
  np.testing.assert_array_equal(pad.matrix[:, 64:], 0.0)
  pad_batch = ots.amortized_solve_batch(padded, ra_model)
  np.testing.assert_allclose(pad_batch.errors[0, 0], plain.errors[0], rtol=1e-4, atol=1e-7)
  zeros_p = ots.solve_batch(padded, ra_model, threshold=1e-2, inner_iterations=1)
  zeros_u = ots.solve_batch(digits_test.take([0]), ra_model, threshold=1e-2, inner_iterations=1)
  assert abs(int(ots.num_iterations(zeros_p)[0]) - int(ots.num_iterations(zeros_u)[0])) <= 1


class TestBadInput:
  @pytest.mark.parametrize(
    ("field", "value", "match"),
    [
      ("a", lambda a: a.at[0, 0].set(-0.1), "negative"),
      ("a", lambda a: a.at[1, 3].set(jnp.nan), "non-finite"),
      ("b", lambda b: b.at[0].set(0.0), "zero total mass"),
      ("x", lambda x: x.at[0, 0].set(jnp.inf), "non-finite"),
      ("y", lambda y: y[:, :1], "dimension mismatch"),
    ],
  )
  def test_problem_batch_validation(self, digits_test, field, value, match):
    fields = {"x": digits_test.x, "y": digits_test.y, "a": digits_test.a[:2], "b": digits_test.b[:2]}
    fields[field] = value(fields[field])
    with pytest.raises(ValueError, match=match):
      ots.ProblemBatch(fields["x"], fields["y"], fields["a"], fields["b"], 1e-2)

  @pytest.mark.parametrize("eps", [0.0, -1e-2])
  def test_bad_epsilon(self, digits_test, eps):
    with pytest.raises(ValueError, match="epsilon"):
      ots.ProblemBatch(digits_test.x, digits_test.y, digits_test.a[:2], digits_test.b[:2], eps)

  def test_model_dimension_and_epsilon(self, ra_model, digits_test):
    batch3 = ots.ProblemBatch(jnp.zeros((4, 3)), jnp.ones((4, 3)), jnp.ones((1, 4)), jnp.ones((1, 4)), 1e-2)
    with pytest.raises(ValueError, match="fitted with d=2"):
      ots.amortized_solve_batch(batch3, ra_model)
    with pytest.raises(ValueError, match="fitted at"):
      ots.amortized_solve(_eps(digits_test, 0.5), ra_model)
    with pytest.raises(ValueError, match="refine_iterations"):
      ots.amortized_solve(digits_test.problem(0), ra_model, refine_iterations=-1)


def _eps(batch, eps):
  return ots.ProblemBatch(batch.x, batch.y, batch.a[:1], batch.b[:1], eps).problem(0)


def test_jit_friendly_prediction(ra_model, digits_test):
  prob = digits_test.problem(0)
  f1 = jax.jit(lambda p, ini: ini.predict_potentials(p)[0])(prob, ra_model)
  f2, _ = ra_model.predict_potentials(prob)
  np.testing.assert_allclose(f1, f2, rtol=1e-4, atol=1e-7)  # jit vs eager float32


class TestNeverWorseThanSinkhorn:
  def test_fallback_threshold_solves_out_of_distribution_pairs(self, ra_model, digits_test):
    batch = digits_test.take(slice(0, 4))
    bad = ra_model.replace(alpha=ra_model.alpha * 40.0)  # a model far from the truth
    plain, info0 = ots.amortized_solve_batch(batch, bad, return_info=True)
    assert float(plain.errors[:, 0].min()) > 1e-2
    out, info = ots.amortized_solve_batch(batch, bad, fallback_threshold=1e-3, return_info=True)
    assert bool(info.fallback_solved.all())
    assert float(out.errors[:, 0].max()) < 1e-3
    np.testing.assert_allclose(info.predicted_error, plain.errors[:, 0], rtol=1e-5)
    single, sinfo = ots.amortized_solve(batch.problem(0), bad, fallback_threshold=1e-3, return_info=True)
    assert bool(sinfo.fallback_solved)
    assert float(single.errors[0]) < 1e-3
    # A good prediction under a loose threshold is returned untouched.
    good, ginfo = ots.amortized_solve_batch(batch, ra_model, fallback_threshold=10.0, return_info=True)
    assert not bool(ginfo.fallback_solved.any())
    np.testing.assert_allclose(good.errors[:, 0], ots.amortized_solve_batch(batch, ra_model).errors[:, 0], rtol=1e-6)

  def test_non_finite_prediction_reported(self, ra_model, digits_test):
    batch = digits_test.take(slice(0, 3))
    nan_model = ra_model.replace(alpha=ra_model.alpha.at[3].set(jnp.inf))
    out, info = ots.amortized_solve_batch(batch, nan_model, return_info=True)
    assert int(info.fell_back.sum()) == 3
    assert np.all(np.isfinite(np.asarray(out.errors)))
    _, ok = ots.amortized_solve_batch(batch, ra_model, return_info=True)
    assert int(ok.fell_back.sum()) == 0

  @pytest.mark.parametrize("value", [0.0, -1.0, float("nan")])
  def test_bad_fallback_threshold(self, ra_model, digits_test, value):
    with pytest.raises(ValueError, match="fallback_threshold"):
      ots.amortized_solve(digits_test.problem(0), ra_model, fallback_threshold=value)


def _random_model(d=2, num=12, eps=0.5):
  theta = ots.directions(jax.random.key(11), d, num)
  alpha = 0.3 * jax.random.normal(jax.random.key(12), (num,))
  return ots.SlicedInitializer(theta, alpha, epsilon=eps)


@jax.jit
def _sinkhorn_plan(prob, initializer):
  """Reference Sinkhorn to a tight threshold, compiled once: OTT's solver called eagerly retraces on every call.

  ``initializer`` (a model, or ``None`` for zeros) is an argument, so every example reuses one program per start.
  """
  out = sinkhorn.Sinkhorn(initializer=initializer, threshold=1e-9, max_iterations=20_000)(prob)
  return out.matrix, out.converged


@pytest.mark.usefixtures("x64")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
  # Each unpadded (n, m) compiles the solve anew (seconds each); a few sizes (single atom, some padding, none)
  # share those compilations across the examples, and every example is still padded to the same (10, 8).
  n=st.sampled_from([1, 4, 10]),
  m=st.sampled_from([1, 5, 8]),
  seed=st.integers(0, 2**31 - 1),
  zero_frac=st.sampled_from([0.0, 0.3]),
  scale=st.sampled_from([0.3, 1.0, 3.0]),
)
def test_hypothesis_amortized_and_warm_start(n, m, seed, zero_frac, scale):
  """Random problems padded to (10, 8): finiteness, exact columns, padding invariance, same plan as zeros."""
  rs = np.random.default_rng(seed)
  model = _random_model()

  def measure(k, size):
    x = rs.normal(size=(k, 2)) * scale
    w = rs.uniform(0.1, 1.0, size=k)
    w[rs.uniform(size=k) < zero_frac] = 0.0
    w[rs.integers(k)] += 0.5
    w = w / w.sum()
    xp = np.concatenate([x, rs.normal(size=(size - k, 2)) * scale])
    return x, w, xp, np.pad(w, (0, size - k))

  x, a, xp, ap = measure(n, 10)
  y, b, yp, bp = measure(m, 8)
  prob = ots.ProblemBatch(xp[None], yp[None], ap[None], bp[None], 0.5).problem(0)
  one = ots.amortized_solve(prob, model, two_sided=False)
  assert np.all(np.isfinite(np.asarray(one.matrix)))
  np.testing.assert_allclose(one.matrix.sum(0), bp, atol=1e-10)  # columns exact after one c-transform
  two = ots.amortized_solve(prob, model)
  np.testing.assert_allclose(two.matrix.sum(1), ap, atol=1e-10)
  unpadded = ots.amortized_solve(ots.ProblemBatch(x[None], y[None], a[None], b[None], 0.5).problem(0), model)
  np.testing.assert_allclose(two.matrix[:n, :m], unpadded.matrix, atol=1e-10)
  # Warm start reaches the plan Sinkhorn reaches from zeros.
  warm, warm_converged = _sinkhorn_plan(prob, model)
  cold, cold_converged = _sinkhorn_plan(prob, None)
  assert bool(warm_converged)
  assert bool(cold_converged)
  np.testing.assert_allclose(warm, cold, atol=1e-7)


class TestNumericalRange:
  """No NaN in features, predictions or plans at the edges of the input range."""

  def _check(self, model, x, y, a, b, eps):
    prob = ots.ProblemBatch(x[None], y[None], a[None], b[None], eps).problem(0)
    phi, psi = ots.sliced_potentials(x, y, a, b, model.theta)
    assert np.all(np.isfinite(np.asarray(phi)))
    assert np.all(np.isfinite(np.asarray(psi)))
    f, g = predict_potentials(model.replace(allow_epsilon_mismatch=True), prob)
    assert np.all(np.isfinite(np.asarray(f)[np.asarray(a) > 0]))
    out, info = ots.amortized_solve(prob, model.replace(allow_epsilon_mismatch=True), return_info=True)
    assert np.all(np.isfinite(np.asarray(out.matrix)))
    assert np.isfinite(float(out.errors[0]))
    return out, info

  @pytest.mark.parametrize("dtype", [np.float32, np.float64])
  @pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
  def test_scales_and_dtypes(self, dtype, scale):
    ctx = jax.enable_x64(dtype == np.float64)
    with ctx:
      rs = np.random.default_rng(0)
      x, y = (rs.normal(size=(20, 2)) * scale).astype(dtype), (rs.normal(size=(15, 2)) * scale).astype(dtype)
      a, b = np.full(20, 1 / 20, dtype), np.full(15, 1 / 15, dtype)
      self._check(_random_model(eps=0.5), x, y, a, b, 0.5 * scale**2)

  def test_tiny_weights_duplicates_single_atom_and_1d(self):
    rs = np.random.default_rng(1)
    x = np.repeat(rs.normal(size=(5, 2)), 3, axis=0)  # duplicate atoms
    a = np.full(15, 1e-12)
    a[0] = 1.0
    a /= a.sum()
    y, b = rs.normal(size=(7, 2)), np.full(7, 1 / 7)
    self._check(_random_model(), x, y, a, b, 0.5)
    self._check(_random_model(), x[:1], y, np.ones(1), b, 0.5)  # n = 1
    model1 = _random_model(d=1, num=3)
    self._check(model1, rs.normal(size=(9, 1)), rs.normal(size=(6, 1)), np.full(9, 1 / 9), np.full(6, 1 / 6), 0.5)

  def test_small_epsilon_on_28x28_grid(self, ra_model):
    from ottsliced.data import digit_pairs

    batch = digit_pairs(2, size=28, epsilon=1e-3, seed=3)
    model = ra_model.replace(allow_epsilon_mismatch=True)
    out = ots.amortized_solve_batch(batch, model)
    assert np.all(np.isfinite(np.asarray(out.errors)))
    warm = ots.solve_batch(batch, model, threshold=1e-2, max_iterations=20_000)
    assert bool(warm.converged.all())

  def test_oa_gradients_finite_with_zero_weights(self, digits_train):
    batch = digits_train.take(slice(0, 3))  # digits have many zero-weight pixels
    model = ots.fit_oa(batch, num_projections=8, steps=30, progress=False)
    assert np.all(np.isfinite(np.asarray(model.summary["loss"])))
    assert np.all(np.isfinite(np.asarray(model.alpha)))


def test_loader_arguments():
  from ottsliced.data import digit_pairs

  for kwargs, match in [
    ({"num_pairs": 0}, "num_pairs"),
    ({"num_pairs": 2, "offset": -1}, "offset"),
    ({"num_pairs": 2, "size": 1}, "size"),
    ({"num_pairs": 2, "epsilon": 0.0}, "epsilon"),
  ]:
    with pytest.raises(ValueError, match=match):
      digit_pairs(**kwargs)
