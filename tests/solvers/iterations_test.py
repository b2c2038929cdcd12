"""Fixed Sinkhorn sweeps equal OTT's iterations; the final error of a solve."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.solvers.linear import sinkhorn

import ottsliced as ots
from ottsliced.solvers.iterations import final_errors


def test_sinkhorn_sweeps_equal_ott_fixed_iterations(x64):
  """K sweeps = OTT Sinkhorn with min = max = K from the same start, zero weights included."""
  from helpers import random_measure

  from ottsliced.solvers.iterations import sinkhorn_sweeps

  rs = np.random.default_rng(3)
  x, a = random_measure(rs, 40, 3, zero_frac=0.2)
  y, b = random_measure(rs, 30, 3, zero_frac=0.2)
  prob = ots.ProblemBatch(x[None], y[None], a[None], b[None], 0.1).problem(0)
  f0 = jnp.where(prob.a > 0, jnp.asarray(rs.normal(size=40)), -jnp.inf)
  g0 = jnp.where(prob.b > 0, jnp.asarray(rs.normal(size=30)), -jnp.inf)
  for k in (1, 7):
    ref = sinkhorn.Sinkhorn(min_iterations=k, max_iterations=k, inner_iterations=1, threshold=-1.0)(prob, init=(f0, g0))
    f, g = jax.jit(sinkhorn_sweeps, static_argnums=5)(prob.geom, prob.a, prob.b, f0, g0, k)
    np.testing.assert_array_equal(np.isfinite(f), np.asarray(prob.a) > 0)
    np.testing.assert_allclose(f[prob.a > 0], ref.f[prob.a > 0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g[prob.b > 0], ref.g[prob.b > 0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("inner", [1, 10])
def test_final_errors_is_the_error_the_solve_stopped_at(digits_test, inner):
  out = ots.solve_batch(digits_test.take(slice(0, 4)), None, threshold=1e-3, inner_iterations=inner)
  errors, checks = np.asarray(out.errors), np.asarray(ots.num_iterations(out)) // inner
  final = np.asarray(final_errors(out))
  np.testing.assert_array_equal(final, errors[np.arange(4), checks - 1])
  assert np.all(final < 1e-3)
  assert np.all(errors[:, 0] > final)  # the trace's first entry (its maximum) is not the final error
