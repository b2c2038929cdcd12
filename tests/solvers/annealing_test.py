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
  rows = lambda g, e: newton.row_update(cost, a, b, g, e)[0]  # noqa: E731
  cols = lambda f, e: newton.column_update(cost, b, f, e)  # noqa: E731
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
