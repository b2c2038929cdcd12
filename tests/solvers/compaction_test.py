"""Compaction: problems with many zero weights solved on their support, same potentials as the dense solve."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_measure
from ott.geometry import geometry, pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

from ottsliced.solvers import compaction, sliced_sinkhorn
from ottsliced.solvers.sliced_sinkhorn import SlicedSinkhorn


def _sparse_problem(seed, n, m, support_n, support_m, d=2):
  """Points with weights on ``support_n`` (``support_m``) atoms scattered among ``n`` (``m``), zeros elsewhere."""
  rs = np.random.default_rng(seed)
  x, _ = random_measure(rs, n, d)
  y, _ = random_measure(rs, m, d)
  a, b = np.zeros(n), np.zeros(m)
  a[rs.choice(n, support_n, replace=False)] = rs.uniform(0.5, 1.5, support_n)
  b[rs.choice(m, support_m, replace=False)] = rs.uniform(0.5, 1.5, support_m)
  return x, y + 0.5, a / a.sum(), b / b.sum()


def _prob(x, y, a, b, eps, matrix=False):
  geom = pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y), epsilon=eps)
  if matrix:
    geom = geometry.Geometry(cost_matrix=geom.cost_matrix, epsilon=eps)
  return linear_problem.LinearProblem(geom, jnp.asarray(a), jnp.asarray(b))


@jax.jit
def _solve(solver, prob):
  out = solver(prob)
  return out.f, out.g, out.errors


def test_where_compaction_applies():
  x = jnp.zeros((400, 2))
  assert compaction.compaction_applies(pointcloud.PointCloud(x, x[:380]))
  assert compaction.compaction_applies(geometry.Geometry(cost_matrix=jnp.zeros((400, 380))))
  assert not compaction.compaction_applies(pointcloud.PointCloud(x[:100], x[:100]))  # a small plan
  assert not compaction.compaction_applies(pointcloud.PointCloud(x, x, scale_cost="mean"))  # scale of the points
  assert not compaction.compaction_applies(pointcloud.PointCloud(x, x, batch_size=64))  # online: no stored cost


def test_level_holds_both_supports_and_takes_the_batch_largest():
  def weights(n, support):
    return jnp.zeros(n).at[:support].set(1.0)

  assert compaction.COMPACTION_LEVELS == 1  # the cases below: sizes n and n / 2
  cases = [((100, 50), (80, 40), 1), ((100, 51), (80, 40), 0), ((100, 50), (80, 41), 0), ((101, 51), (79, 40), 1)]
  for (n, sn), (m, sm), level in cases:
    assert int(compaction.compaction_level(weights(n, sn), weights(m, sm))) == level
  # Batched: one level for the batch, the one that holds every pair's supports (a single branch runs).
  a = jnp.stack([weights(100, 10), weights(100, 60), weights(100, 20)])
  b = jnp.stack([weights(80, 5), weights(80, 5), weights(80, 5)])
  np.testing.assert_array_equal([int(compaction.compaction_level(a[i], b[i])) for i in range(3)], [1, 0, 1])
  np.testing.assert_array_equal(jax.vmap(compaction.compaction_level)(a, b), [0, 0, 0])
  np.testing.assert_array_equal(jax.vmap(compaction.compaction_level, in_axes=(0, None))(a, b[0]), [0, 0, 0])
  np.testing.assert_array_equal(jax.vmap(compaction.compaction_level)(a[::2], b[::2]), [1, 1])


def test_static_level_is_the_run_time_level():
  def weights(n, support):
    return (np.arange(n) < support).astype(np.float32)

  for (n, sn), (m, sm) in [((100, 50), (80, 40)), ((100, 51), (80, 40)), ((101, 51), (79, 40)), ((100, 100), (80, 80))]:
    a, b = weights(n, sn), weights(m, sm)
    assert compaction.static_level(a, b) == int(compaction.compaction_level(a, b))
  seen = []
  jax.jit(lambda a, b: seen.append(compaction.static_level(a, b)) or a)(a, b)  # traced: picked at run time
  assert seen == [None]


@pytest.mark.parametrize(("supports", "level"), [((90, 80), 1), ((300, 20), 0)])
def test_a_direct_call_compiles_its_level_only(x64, supports, level):
  """Concrete weights: the level is read on the host, one solve is compiled (not one per level); same potentials."""
  x, y, a, b = _sparse_problem(4, 400, 380, *supports)
  prob = _prob(x, y, a, b, 0.05)
  solver = SlicedSinkhorn(threshold=1e-9, max_iterations=500)
  assert compaction.static_level(prob.a, prob.b) == level
  out = solver(prob)
  f, g, _ = _solve(solver, prob)  # weights traced: every level compiled, this one picked at run time
  np.testing.assert_allclose(out.f[a > 0], f[a > 0], atol=1e-8)
  np.testing.assert_allclose(out.g[b > 0], g[b > 0], atol=1e-8)
  assert np.all(np.isneginf(np.asarray(out.f)[a == 0]))

  def loops(level):
    lowered = sliced_sinkhorn._output_compiled.lower(solver, prob, None, {}, level=level)
    return lowered.as_text().count("stablehlo.while")

  assert 0 < loops(level) < loops(None)


@pytest.mark.parametrize(("supports", "level"), [((90, 80), 1), ((190, 170), 1), ((300, 20), 0)])
@pytest.mark.parametrize("matrix", [False, True])
def test_compacted_solve_is_the_dense_solve(x64, monkeypatch, supports, level, matrix):
  """Same potentials as the dense solve of the same problem (compaction off), ``-inf`` off the support."""
  x, y, a, b = _sparse_problem(3, 400, 380, *supports)
  prob = _prob(x, y, a, b, 0.05, matrix)
  assert int(compaction.compaction_level(prob.a, prob.b)) == level
  solver = SlicedSinkhorn(threshold=1e-9, max_iterations=500)
  f, g, errors = _solve(solver, prob)
  ref = sinkhorn.Sinkhorn(threshold=1e-11, max_iterations=100_000)(prob)
  np.testing.assert_allclose(ref.matrix, prob.geom.transport_from_potentials(f, g), atol=1e-10)
  assert np.all(np.isneginf(np.asarray(f)[a == 0]))
  assert np.all(np.isneginf(np.asarray(g)[b == 0]))
  monkeypatch.setattr(compaction, "COMPACTION_MIN_ENTRIES", 10**9)  # the dense solve, traced anew
  f_dense, g_dense = jax.jit(lambda s, p: s(p).potentials)(solver, prob)
  shift = float(np.mean(np.asarray(f)[a > 0] - np.asarray(f_dense)[a > 0]))  # the gauge: f + c, g - c
  np.testing.assert_allclose(np.asarray(f)[a > 0], np.asarray(f_dense)[a > 0] + shift, atol=1e-8)
  np.testing.assert_allclose(np.asarray(g)[b > 0], np.asarray(g_dense)[b > 0] - shift, atol=1e-8)
  assert np.all(errors[: int(jnp.sum(errors != -1))] >= 0)


@pytest.mark.parametrize("supports", [[(60, 50), (150, 90), (80, 170)], [(60, 50), (250, 90)]])  # levels 1, 0
def test_batched_compacted_solve_is_each_pair_solve(x64, supports):
  """Under vmap one level serves the batch (the largest support); each pair's potentials are its own solve's."""
  problems = [_sparse_problem(s, 400, 380, sa, sb) for s, (sa, sb) in enumerate(supports)]
  solver = SlicedSinkhorn(threshold=1e-9, max_iterations=500)

  def potentials(x, y, a, b):
    out = solver(_prob(x, y, a, b, 0.05))
    return out.f, out.g

  stacked = [jnp.asarray(np.stack(v)) for v in zip(*problems)]
  f_b, g_b = jax.jit(jax.vmap(potentials))(*stacked)
  for i, (x, y, a, b) in enumerate(problems):
    f, g, _ = _solve(solver, _prob(x, y, a, b, 0.05))
    f_i, g_i = np.asarray(f_b[i])[a > 0], np.asarray(g_b[i])[b > 0]
    shift = float(np.mean(f_i - np.asarray(f)[a > 0]))  # the gauge (f + c, g - c): another level, another path
    np.testing.assert_allclose(f_i, np.asarray(f)[a > 0] + shift, atol=1e-8)
    np.testing.assert_allclose(g_i, np.asarray(g)[b > 0] - shift, atol=1e-8)
    assert np.all(np.isneginf(np.asarray(f_b[i])[a == 0]))
