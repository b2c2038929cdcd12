"""Compacted batches: every pair gets the potentials, errors and iterations of its own solve."""

import jax.numpy as jnp
import numpy as np
import pytest
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem

import ottsliced as ots


# A cap of 1000 iterations: the compacted solve runs one block of 4 iterations after another (a call and a
# compaction each) up to the slowest pair's count, so the cap sets this test's time (a cap of 5000 took 1250
# blocks). At 1000 most pairs still converge (after 109 to 954 iterations from zeros, 51 to 661 warm) and
# 2-3 pairs in each case stop at the cap: both ways of leaving the batch are compared with the per-pair solves.
@pytest.mark.parametrize(("warm", "inner", "max_iterations"), [(False, 1, 1000), (True, 1, 1000), (False, 3, 40)])
def test_compacted_batch_equals_per_pair_solves(x64, warm, inner, max_iterations):
  """Converged pairs leave the batch between blocks; every pair keeps its own trace, count and potentials."""
  from helpers import random_measure

  from ottsliced.problems import compaction

  rs = np.random.default_rng(2)
  probs = []
  for k in range(11):
    x, a = random_measure(rs, 6 + k % 5, 2, 0.2)
    y, b = random_measure(rs, 9 - k % 4, 2, 0.2)
    geom = pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y), epsilon=0.03 + 0.01 * (k % 3))
    probs.append(linear_problem.LinearProblem(geom, jnp.asarray(a), jnp.asarray(b)))
  batch = ots.ProblemBatch.from_problems(
    [linear_problem.LinearProblem(pointcloud.PointCloud(p.geom.x, p.geom.y, epsilon=0.04), p.a, p.b) for p in probs]
  )
  ini = ots.fit_ra(batch, num_projections=8, progress=False) if warm else None
  kw = {"threshold": 1e-6, "inner_iterations": inner, "max_iterations": max_iterations}
  ref = ots.solve_batch(batch, ini, strategy="map", **kw)
  out = ots.solve_batch(batch, ini, strategy="compact", compact_block=4, **kw)
  np.testing.assert_array_equal(ots.num_iterations(out), ots.num_iterations(ref))
  np.testing.assert_array_equal(out.converged, ref.converged)
  np.testing.assert_allclose(out.errors, ref.errors, rtol=1e-8, atol=1e-12)  # vmap vs map: float64 rounding
  np.testing.assert_allclose(out.f, ref.f, atol=1e-10)
  np.testing.assert_allclose(out.reg_ot_cost, ref.reg_ot_cost, rtol=1e-10)
  if max_iterations == 40:
    assert not np.all(np.asarray(out.converged))  # the cap was reached by some pairs
  assert [compaction.bucket_size(k, 100) for k in (1, 8, 9, 33, 100)] == [8, 8, 16, 64, 100]
  with pytest.raises(ValueError, match="compact"):
    ots.solve_batch(batch, ini, strategy="compact", momentum=None, **kw)
