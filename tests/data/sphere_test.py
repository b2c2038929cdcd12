"""Tests of the sphere supply-demand problems in :mod:`ottsliced.data.sphere`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.geometry import pointcloud
from ott.initializers.linear import initializers
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

from ottsliced.data import sphere
from ottsliced.problems.batch import ProblemBatch


def _unit(rs, n):
  x = rs.normal(size=(n, 3))
  return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def small():
  return sphere.supply_demand_pairs(4, num_supply=20, num_demand=300, epsilon=0.5, seed=999)


def test_stereographic_round_trip():
  rs = np.random.default_rng(0)
  x = _unit(rs, 200)
  x = x[x[:, 2] < 0.99]
  u = sphere.to_stereographic(x)
  assert u.shape == (x.shape[0], 2)
  np.testing.assert_allclose(u, 2 * x[:, :2] / (1 - x[:, 2:]), rtol=1e-12)
  np.testing.assert_allclose(sphere.from_stereographic(u), x, atol=1e-12)
  np.testing.assert_allclose(sphere.to_stereographic(sphere.from_stereographic(u[:5])), u[:5], rtol=1e-10)
  # JAX in, JAX out; the pole and a zero vector stay finite.
  uj = sphere.to_stereographic(jnp.asarray([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, -2.0]]))
  assert isinstance(uj, jax.Array)
  assert np.all(np.isfinite(uj))
  np.testing.assert_allclose(uj[1:], 0.0)


def test_geodesic_matches_arccos(x64):
  rs = np.random.default_rng(1)
  x, y = _unit(rs, 30), _unit(rs, 40)
  x, y = x[x[:, 2] < 0.99], y[y[:, 2] < 0.99]
  cost = sphere.SphereGeodesic()
  u, v = jnp.asarray(sphere.to_stereographic(x)), jnp.asarray(sphere.to_stereographic(y))
  c = np.asarray(cost.all_pairs(u, v))
  np.testing.assert_allclose(c, np.arccos(np.clip(x @ y.T, -1, 1)), atol=1e-5)
  np.testing.assert_allclose(np.asarray(cost.all_pairs(v, u)), c.T, atol=1e-12)
  diag = np.asarray(jax.vmap(cost)(u, u))
  np.testing.assert_allclose(diag, np.arccos(1 - 1e-7), rtol=1e-6)
  assert diag.max() < 1e-3


def test_arccos_polynomial(x64):
  t = np.concatenate([np.linspace(-1.0, 1.0, 200_001), 1.0 - np.logspace(-12, -1, 50), [-1.0, 0.0, 1.0]])
  got = np.asarray(sphere.arccos(jnp.asarray(t)))
  np.testing.assert_allclose(got, np.arccos(t), atol=2.5e-8, rtol=0)
  near = t > 0.999  # short distances: relative accuracy
  np.testing.assert_allclose(got[near], np.arccos(t[near]), rtol=1e-7)
  grad = jax.vmap(jax.grad(sphere.arccos))(jnp.asarray([-0.9, -0.3, 0.0, 0.4, 0.99]))
  np.testing.assert_allclose(grad, -1.0 / np.sqrt(1.0 - np.array([-0.9, -0.3, 0.0, 0.4, 0.99]) ** 2), rtol=1e-5)


def test_geodesic_all_pairs_matches_pairwise():
  u = jnp.asarray(np.random.default_rng(3).normal(size=(7, 2)), jnp.float32)
  v = jnp.asarray(np.random.default_rng(4).normal(size=(9, 2)), jnp.float32)
  cost = sphere.SphereGeodesic()
  pairwise = jax.vmap(lambda p: jax.vmap(lambda q: cost(p, q))(v))(u)
  np.testing.assert_allclose(cost.all_pairs(u, v), pairwise, atol=2e-6)
  np.testing.assert_allclose(pointcloud.PointCloud(u, v, cost_fn=cost).cost_matrix, pairwise, atol=2e-6)


def test_geodesic_pytree_jit_vmap():
  cost = sphere.SphereGeodesic(delta=1e-6)
  leaves, tree = jax.tree_util.tree_flatten(cost)
  back = jax.tree_util.tree_unflatten(tree, leaves)
  assert leaves == []
  assert back == cost
  assert back.delta == 1e-6
  assert hash(back) == hash(cost)
  assert sphere.SphereGeodesic() != cost
  u = jnp.asarray(np.random.default_rng(2).normal(size=(3, 5, 2)), jnp.float32)
  f = jax.jit(jax.vmap(lambda c, a, b: c.all_pairs(a, b), in_axes=(None, 0, 0)))
  out = f(cost, u, u[::-1])
  assert out.shape == (3, 5, 5)
  assert np.all(np.isfinite(out))
  g = jax.grad(lambda z: cost(z, jnp.zeros(2)))(jnp.ones(2))
  assert np.all(np.isfinite(g))


def test_supply_demand_pairs(small):
  batch = small.batch
  assert isinstance(batch, ProblemBatch)
  assert batch.shared_x
  assert batch.shared_y
  assert batch.x.shape == (20, 2)
  assert batch.y.shape == (300, 2)
  assert batch.a.shape == (4, 20)
  assert isinstance(batch.cost_fn, sphere.SphereGeodesic)
  assert batch.epsilon == 0.5
  assert small.supply_xyz.shape == (20, 3)
  assert small.demand_xyz.shape == (300, 3)
  np.testing.assert_allclose(np.linalg.norm(small.demand_xyz, axis=1), 1.0, atol=1e-6)
  np.testing.assert_allclose(sphere.from_stereographic(np.asarray(batch.x)), small.supply_xyz, atol=1e-5)
  for w in (np.asarray(batch.a), np.asarray(batch.b)):
    assert np.all(np.isfinite(w))
    assert np.all(w >= 0)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-5)
  assert np.any(np.asarray(batch.a) == 0)  # Bernoulli mask
  # Seeds: instance k uses seed + offset + k; the locations are fixed.
  later = sphere.supply_demand_pairs(2, num_supply=20, num_demand=300, seed=999, offset=2)
  np.testing.assert_array_equal(later.batch.a, batch.a[2:])
  np.testing.assert_array_equal(later.batch.y, batch.y)
  train = sphere.supply_demand_pairs(4, num_supply=20, num_demand=300, seed=0)
  assert not np.any(np.all(np.asarray(train.batch.a)[:, None] == np.asarray(batch.a)[None], axis=-1))
  with pytest.raises(ValueError, match="num_pairs"):
    sphere.supply_demand_pairs(0)


def test_population_points():
  pop = sphere.population_density_points(2000, seed=0)
  land = sphere.land_points(2000, seed=0)
  np.testing.assert_allclose(np.linalg.norm(pop, axis=1), 1.0, atol=1e-12)
  np.testing.assert_array_equal(pop, sphere.population_density_points(2000, seed=0))
  # The population is concentrated: mean resultant length of its nearest-neighbour spread is larger.
  spread = lambda p: np.linalg.norm(p[:1000] - p[1000:], axis=1).mean()
  assert spread(pop) < spread(land)
  vmf = sphere.sample_vmf(
    np.tile([[0.0, 1.0, 0.0]], (5000, 1)), np.full(5000, 50.0), 1 - np.random.default_rng(0).random((5000, 2))
  )
  # E[cos] = coth(kappa) - 1/kappa for the 3-D vMF.
  np.testing.assert_allclose(vmf[:, 1].mean(), 1 / np.tanh(50.0) - 1 / 50.0, atol=2e-3)


def test_sinkhorn_converges(small):
  """OTT Sinkhorn converges on the geodesic cost; OTT's GaussianInitializer runs on it (plane coordinates)."""
  batch = small.batch
  geom = pointcloud.PointCloud(batch.x, batch.y, cost_fn=sphere.SphereGeodesic(), epsilon=batch.epsilon)
  solver = sinkhorn.Sinkhorn(max_iterations=2000)
  out = jax.jit(jax.vmap(lambda a, b: solver(linear_problem.LinearProblem(geom, a, b))))(batch.a, batch.b)
  assert np.all(out.converged)
  # Marginals of the plan P = exp((f + g - C) / eps), from the batched potentials.
  logp = (out.f[:, :, None] + out.g[:, None, :] - geom.cost_matrix[None]) / batch.epsilon
  plan = np.exp(np.asarray(logp, np.float64))
  np.testing.assert_allclose(plan.sum(1), batch.b, atol=2e-3)
  np.testing.assert_allclose(plan.sum(2), batch.a, atol=1e-5)
  f, g = jax.jit(lambda p: initializers.GaussianInitializer()(p, lse_mode=True))(batch.problem(0))
  assert np.all(np.isfinite(np.asarray(f)[np.asarray(batch.a[0]) > 0]))
  assert np.all(np.isfinite(np.asarray(g)))
