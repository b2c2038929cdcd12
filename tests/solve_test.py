"""Amortized solves: marginals after c-transforms, refinement, batching, padding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.solvers.linear import sinkhorn

import ottsliced as ots
from ottsliced.solve import marginal_errors


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


def test_list_of_problems_padded(digits_test):
  probs = [digits_test.problem(0), digits_test.problem(1)]
  small = ots.ProblemBatch(digits_test.x[:40], digits_test.y, digits_test.a[2:3, :40] + 1e-3, digits_test.b[2:3], 1e-2)
  batch = ots.ProblemBatch.from_problems([*probs, small.problem(0)])
  assert batch.shape == (64, 64)
  assert float(batch.a[2, 40:].sum()) == 0.0


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
