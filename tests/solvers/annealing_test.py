"""Epsilon scaling from the cost scale: the schedule, the sweeps, the mean cost."""

import jax.numpy as jnp
import numpy as np
import pytest
from ott.geometry import pointcloud

from ottsliced.solvers import annealing, newton


@pytest.mark.parametrize(
  ("scale", "eps", "expected"), [(1.0, 1e-3, 44), (1.0, 0.1, 0), (1.0, 0.05, 7), (10.0, 1e-2, 44)]
)
def test_schedule_anneals_from_a_tenth_of_the_mean_cost(scale, eps, expected):
  eps0, sweeps = annealing.schedule(jnp.asarray(scale), eps, 0.1, 0.9)
  assert int(sweeps) == expected
  np.testing.assert_allclose(eps0, max(eps, 0.1 * scale), rtol=1e-6)
  if expected:  # the last sweep is above the target, the next one at it
    assert eps0 * 0.9 ** (expected - 1) > eps >= eps0 * 0.9**expected * (1 - 1e-6)


@pytest.mark.parametrize(
  ("scale", "eps", "expected"), [(1.0, 1e-2, 10), (1.0, 1e-3, 32), (1.0, 0.5, 0), (4.0, 1e-2, 20)]
)
def test_paced_schedule_runs_sqrt_of_the_cost_ratio_sweeps_from_three_tenths(scale, eps, expected):
  eps0, sweeps, decay = annealing.paced_schedule(jnp.asarray(scale), eps, 0.3, 1.0)
  assert int(sweeps) == expected
  np.testing.assert_allclose(eps0, max(eps, 0.3 * scale), rtol=1e-6)
  if expected:  # geometric from eps0, the last sweep above the target, the next one at it
    assert 0 < float(decay) < 1
    assert eps0 * decay ** (expected - 1) > eps
    np.testing.assert_allclose(eps0 * decay**expected, eps, rtol=1e-5)


@pytest.mark.parametrize(("eps", "expected"), [(0.05, 0), (1 / 30, 0), (0.02, 8), (1e-3, 32)])
def test_newton_annealing_leaves_targets_near_the_cost_scale_cold(eps, expected):
  # OTT's default epsilon (a twentieth of the mean cost) and anything within 30 of it: no sweep.
  _, sweeps, _ = annealing.paced_schedule(jnp.asarray(1.0), eps, *annealing.NEWTON_ANNEALING)
  assert int(sweeps) == expected


def test_mean_cost_is_the_independent_couplings_dense_and_online():
  rs = np.random.default_rng(0)
  x, y = jnp.asarray(rs.normal(size=(30, 3))), jnp.asarray(rs.normal(size=(20, 3)))
  a = jnp.asarray(rs.uniform(size=30)).at[3].set(0.0)
  b = jnp.asarray(rs.uniform(size=20))
  a, b = a / a.sum(), b / b.sum()
  dense = pointcloud.PointCloud(x, y)
  expected = float(a @ dense.cost_matrix @ b)
  np.testing.assert_allclose(annealing.mean_cost(dense, a, b), expected, rtol=1e-5)
  np.testing.assert_allclose(annealing.mean_cost(pointcloud.PointCloud(x, y, batch_size=7), a, b), expected, rtol=1e-5)


def test_anneal_runs_the_sweeps_at_decreasing_epsilon():
  rs = np.random.default_rng(1)
  x, y = jnp.asarray(rs.normal(size=(12, 2))), jnp.asarray(rs.normal(size=(9, 2)))
  a, b = jnp.full(12, 1 / 12), jnp.full(9, 1 / 9)
  cost = pointcloud.PointCloud(x, y).cost_matrix
  rows = lambda g, e, _: newton.row_update(cost, a, b, g, e)[0]  # noqa: E731
  cols = lambda f, e, _: newton.column_update(cost, b, f, e)  # noqa: E731
  f0, g0 = jnp.zeros(12), jnp.zeros(9)
  f, g = annealing.anneal(rows, cols, f0, g0, jnp.asarray(1.0), jnp.asarray(0, jnp.int32), 0.5, 0.1)
  np.testing.assert_array_equal(f, f0)  # no sweep: inputs returned
  f, g = annealing.anneal(rows, cols, f0, g0, jnp.asarray(1.0), jnp.asarray(4, jnp.int32), 0.5, 0.1)
  # Four sweeps at 1, 0.5, 0.25, 0.125: the result is the last sweep's, columns exact at 0.125.
  f_ref, g_ref = f0, g0
  for e in (1.0, 0.5, 0.25, 0.125):
    f_ref = newton.row_update(cost, a, b, g_ref, e)[0]
    g_ref = newton.column_update(cost, b, f_ref, e)
  np.testing.assert_allclose(g, g_ref, rtol=1e-5)
  np.testing.assert_allclose(f, f_ref, rtol=1e-5)


def _weighted_problem(seed=2):
  rs = np.random.default_rng(seed)
  x, y = jnp.asarray(rs.normal(size=(14, 2))), jnp.asarray(rs.normal(size=(11, 2)))
  a = jnp.asarray(rs.uniform(size=14)).at[2].set(0.0)
  b = jnp.asarray(rs.uniform(size=11)).at[5].set(0.0)
  return pointcloud.PointCloud(x, y).cost_matrix, a / a.sum(), b / b.sum()


@pytest.mark.usefixtures("x64")
def test_shifted_update_after_a_sweep_is_the_exact_update_without_falling_back():
  cost, a, b = _weighted_problem()
  f = newton.row_update(cost, a, b, jnp.where(b > 0, 0.0, -jnp.inf), 0.5)[0]
  g = newton.column_update(cost, b, f, 0.5)
  never = lambda: jnp.full(cost.shape[0], jnp.nan)  # noqa: E731  (would poison the result if taken)
  for eps in (0.5, 0.2):  # the same epsilon, then a smaller one (annealing)
    f_new = annealing.shifted_update(cost, a, f, g, eps, 1, never)
    np.testing.assert_allclose(f_new, newton.row_update(cost, a, b, g, eps)[0], rtol=1e-12, atol=1e-12)
    g_new = annealing.shifted_update(cost, b, f_new, g, eps, 0, lambda: jnp.full(cost.shape[1], jnp.nan))
    np.testing.assert_allclose(g_new, newton.column_update(cost, b, f_new, eps), rtol=1e-12, atol=1e-12)
    assert np.isneginf(f_new[2])
    assert np.isneginf(g_new[5])


def test_shifted_update_falls_back_to_the_exact_update_where_the_shift_overflows_or_underflows():
  cost, a, b = _weighted_problem()
  g = jnp.where(b > 0, 0.0, -jnp.inf)
  exact = lambda: jnp.full(14, 7.0)  # noqa: E731  (a marker of the fallback)
  for bad in (-1e3, 1e3):  # exponents of +-1e5: the sum overflows, or every term underflows
    np.testing.assert_array_equal(annealing.shifted_update(cost, a, jnp.full(14, bad), g, 0.01, 1, exact), 7.0)
  f = newton.row_update(cost, a, b, g, 0.01)[0]  # a valid shift: no fallback
  np.testing.assert_allclose(annealing.shifted_update(cost, a, f, g, 0.01, 1, exact), f, rtol=1e-5, atol=1e-6)
