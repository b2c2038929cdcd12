"""``ottsliced.solve``: one call from a geometry to OTT's output, checked inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.geometry import geometry, pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

import ottsliced as ots


def _cloud(seed, n, m, d=2):
  kx, ky = jax.random.split(jax.random.key(seed))
  return jax.random.normal(kx, (n, d)), jax.random.normal(ky, (m, d)) + 1.0


def test_matches_converged_sinkhorn_and_uniform_default():
  with jax.enable_x64(True):
    x, y = (z.astype(jnp.float64) for z in _cloud(0, 30, 24))
    geom = pointcloud.PointCloud(x, y, epsilon=0.1)
    out = ots.solve(geom, threshold=1e-9, max_iterations=5000)
    assert isinstance(out, sinkhorn.SinkhornOutput)
    assert bool(out.converged)
    ref = sinkhorn.Sinkhorn(threshold=1e-11, max_iterations=20000)(linear_problem.LinearProblem(geom))
    np.testing.assert_allclose(out.matrix, ref.matrix, atol=1e-8)
    np.testing.assert_allclose(out.reg_ot_cost, ref.reg_ot_cost, rtol=1e-8)
    # Uniform weights when a and b are omitted: the same as passing them.
    a, b = jnp.full(30, 1 / 30), jnp.full(24, 1 / 24)
    np.testing.assert_allclose(ots.solve(geom, a, b, threshold=1e-9, max_iterations=5000).f, out.f, atol=1e-10)


def test_bad_inputs_raise_clear_errors():
  x, y = _cloud(1, 8, 6)
  geom = pointcloud.PointCloud(x, y, epsilon=0.1)
  with pytest.raises(ValueError, match="negative"):
    ots.solve(geom, a=jnp.array([-1.0] + [1.0] * 7))
  with pytest.raises(ValueError, match="shape"):
    ots.solve(geom, b=jnp.ones(5))
  with pytest.raises(ValueError, match="zero total mass"):
    ots.solve(geom, b=jnp.zeros(6))
  with pytest.raises(ValueError, match="non-finite"):
    ots.solve(pointcloud.PointCloud(x.at[0, 0].set(jnp.nan), y, epsilon=0.1))
  with pytest.raises(ValueError, match="OTT geometry"):
    ots.solve(np.ones((8, 6)))
  with pytest.raises(ValueError, match="1 non-finite entries"):
    ots.solve(geometry.Geometry(cost_matrix=jnp.ones((8, 6)).at[2, 3].set(jnp.nan), epsilon=0.1))
  with pytest.raises(ValueError, match=r"shape \(6,\)"):
    ots.solve(geometry.Geometry(cost_matrix=jnp.ones((8, 6)), epsilon=0.1), b=jnp.ones(8) / 8)
  with pytest.raises(ValueError, match="tail"):
    ots.solve(geom, tail="fast")


def test_plain_cost_matrix_geometry():
  """A geometry from a cost matrix, no points: solved (epsilon scaling, Newton steps) to OTT's plan."""
  with jax.enable_x64(True):
    x, y = (z.astype(jnp.float64) for z in _cloud(2, 20, 16))
    geom = geometry.Geometry(cost_matrix=pointcloud.PointCloud(x, y).cost_matrix, epsilon=0.05)
    out = ots.solve(geom, threshold=1e-9)
    ref = sinkhorn.Sinkhorn(threshold=1e-11, max_iterations=20000)(linear_problem.LinearProblem(geom))
    assert bool(out.converged)
    np.testing.assert_allclose(out.matrix, ref.matrix, atol=1e-9)
