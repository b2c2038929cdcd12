"""Batched solves: every strategy gives the same iterations and potentials; lists of problems are padded."""

import jax.numpy as jnp
import numpy as np
import pytest
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

import ottsliced as ots


def test_list_of_problems_padded(digits_test):
  probs = [digits_test.problem(0), digits_test.problem(1)]
  small = ots.ProblemBatch(digits_test.x[:40], digits_test.y, digits_test.a[2:3, :40] + 1e-3, digits_test.b[2:3], 1e-2)
  batch = ots.ProblemBatch.from_problems([*probs, small.problem(0)])
  assert batch.shape == (64, 64)
  assert float(batch.a[2, 40:].sum()) == 0.0


@pytest.mark.parametrize("warm", [False, True])
def test_batch_strategies_same_iterations_and_potentials(x64, warm):
  """map (each pair stops at its own count) and vmap (all until the slowest) agree exactly, padding included."""
  from helpers import random_measure

  rs = np.random.default_rng(1)
  probs = []
  for n, m in ((12, 9), (7, 11), (10, 10), (5, 8)):
    x, a = random_measure(rs, n, 2, 0.2)
    y, b = random_measure(rs, m, 2, 0.2)
    geom = pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y), epsilon=0.05)
    probs.append(linear_problem.LinearProblem(geom, jnp.asarray(a), jnp.asarray(b)))
  batch = ots.ProblemBatch.from_problems(probs)
  ini = ots.fit_ra(batch, num_projections=8, progress=False) if warm else None
  kw = {"threshold": 1e-6, "inner_iterations": 1, "max_iterations": 5000}
  by_map = ots.solve_batch(batch, ini, strategy="map", **kw)
  by_vmap = ots.solve_batch(batch, ini, strategy="vmap", **kw)
  by_chunks = ots.solve_batch(batch, ini, strategy="map", chunk_size=3, **kw)
  for out in (by_vmap, by_chunks):
    np.testing.assert_array_equal(ots.num_iterations(out), ots.num_iterations(by_map))
    np.testing.assert_allclose(out.f, by_map.f, atol=1e-10)
  iters = np.asarray(ots.num_iterations(by_map))
  assert len(set(iters.tolist())) > 1  # the pairs really stop at different counts
  for k, prob in enumerate(probs):  # and each count is the one of its own solve
    single = sinkhorn.Sinkhorn(initializer=ini, **kw)(prob) if warm else sinkhorn.Sinkhorn(**kw)(prob)
    assert int(single.n_iters) == iters[k]
  amortized = [
    ots.amortized_solve_batch(batch, ini or ots.fit_ra(batch, num_projections=8, progress=False), strategy=s)
    for s in ("map", "vmap")
  ]
  np.testing.assert_allclose(amortized[0].f, amortized[1].f, atol=1e-10)
