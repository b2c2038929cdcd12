"""``sliced_plan`` and ``monotone_coupling``: lifted 1-D monotone plans, checked against OTT's north-west solver."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_measure
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import univariate

from ottsliced import sliced


@pytest.mark.parametrize(("n", "m"), [(7, 7), (9, 5), (4, 11)])
def test_monotone_coupling_matches_otts_north_west_solver(x64, n, m):
  rs = np.random.default_rng(n * m)
  x, a = random_measure(rs, n, 1)
  y, b = random_measure(rs, m, 1)
  prob = linear_problem.LinearProblem(
    pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y)), jnp.asarray(a), jnp.asarray(b)
  )
  ref = univariate.north_west_solver(prob)
  ref_plan = np.zeros((n, m))
  ox, oy = np.argsort(x[:, 0]), np.argsort(y[:, 0])  # OTT's indices are positions in the sorted clouds
  np.add.at(ref_plan, (ox[ref.paired_indices[0, 0]], oy[ref.paired_indices[0, 1]]), ref.mass_paired_indices[0])

  plan = sliced.sliced_plan(jnp.asarray(x), jnp.asarray(y), jnp.asarray(a), jnp.asarray(b), jnp.ones((1, 1)))
  dense = np.asarray(plan.todense(n, m))
  np.testing.assert_allclose(dense, ref_plan, atol=1e-12)
  cost = np.sum(dense * (x - y.T) ** 2)
  np.testing.assert_allclose(cost, ref.ot_costs[0], rtol=1e-10)


def test_sliced_plan_is_a_coupling_and_padding_gets_no_mass(x64):
  rs = np.random.default_rng(0)
  x, a = random_measure(rs, 13, 3, zero_frac=0.3)
  y, b = random_measure(rs, 8, 3, zero_frac=0.3)
  theta = sliced.directions(jax.random.key(1), 3, 5)
  plan = jax.jit(sliced.sliced_plan)(x, y, a, b, theta)
  assert plan.rows.shape == (5 * (13 + 8),)
  dense = np.asarray(plan.todense(13, 8))
  assert np.all(dense >= 0)
  np.testing.assert_allclose(dense.sum(1), a, atol=1e-12)
  np.testing.assert_allclose(dense.sum(0), b, atol=1e-12)
  assert np.all(dense[a == 0] == 0)
  assert np.all(dense[:, b == 0] == 0)
  # Each direction's lifted plan has at most n + m - 1 positive cells.
  per_direction = np.asarray(plan.mass).reshape(5, -1)
  assert np.all((per_direction > 0).sum(1) <= 13 + 8 - 1)


@pytest.mark.parametrize("float64", [False, True])
def test_zero_weight_atoms_get_exactly_no_mass(float64):
  # Regression: XLA's cumsum left round-off mass (1e-17) on ~27 zero-weight cells of these five pairs.
  with jax.enable_x64(float64):
    theta = sliced.directions(jax.random.key(0), 2, 16)
    for seed in range(5):
      rs = np.random.default_rng(seed)
      x, a = random_measure(rs, 400, 2, zero_frac=0.3)
      y, b = random_measure(rs, 300, 2, zero_frac=0.3)
      dense = np.asarray(sliced.sliced_plan(x, y, a, b, theta).todense(400, 300))
      assert np.count_nonzero(dense[a == 0]) == 0
      assert np.count_nonzero(dense[:, b == 0]) == 0
      np.testing.assert_allclose(dense.sum(1), a, atol=1e-6 if not float64 else 1e-12)


def test_sliced_plan_of_a_measure_with_itself_is_diagonal(x64):
  rs = np.random.default_rng(2)
  x, a = random_measure(rs, 10, 2)
  theta = sliced.directions(jax.random.key(0), 2, 4)
  dense = np.asarray(sliced.sliced_plan(x, x, a, a, theta).todense(10, 10))
  np.testing.assert_allclose(dense, np.diag(a), atol=1e-12)


def test_sliced_plan_in_1d_is_optimal_and_vmaps(x64):
  rs = np.random.default_rng(3)
  xs = rs.normal(size=(3, 6, 1))
  ys = rs.normal(size=(3, 6, 1))
  w = np.full(6, 1 / 6)
  plans = jax.vmap(lambda x, y: sliced.sliced_plan(x, y, w, w, jnp.ones((1, 1))).todense(6, 6))(xs, ys)
  for x, y, p in zip(xs, ys, np.asarray(plans)):
    # Uniform weights in 1-D: the optimal plan matches sorted points.
    cost = np.sum(p * (x - y.T) ** 2)
    np.testing.assert_allclose(cost, np.mean((np.sort(x[:, 0]) - np.sort(y[:, 0])) ** 2), rtol=1e-12)
