"""Batched solves: every strategy gives the same iterations and potentials; lists of problems are padded."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_measure
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


KW = {"threshold": 1e-6, "inner_iterations": 1, "max_iterations": 5000}


@pytest.fixture(scope="module")
def pairs_of_four_sizes():
  """Four float64 pairs of different sizes, their padded batch and the RA-OT model fitted on it (fitted once)."""
  with jax.enable_x64(True):
    rs = np.random.default_rng(1)
    probs = []
    for n, m in ((12, 9), (7, 11), (10, 10), (5, 8)):
      x, a = random_measure(rs, n, 2, 0.2)
      y, b = random_measure(rs, m, 2, 0.2)
      geom = pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y), epsilon=0.05)
      probs.append(linear_problem.LinearProblem(geom, jnp.asarray(a), jnp.asarray(b)))
    batch = ots.ProblemBatch.from_problems(probs)
    return probs, batch, ots.fit_ra(batch, num_projections=8, progress=False)


@jax.jit
def _sinkhorn_iterations(prob, initializer):
  """One pair's own OTT solve (``initializer=None``: from zeros), compiled: eagerly OTT retraces every call."""
  return sinkhorn.Sinkhorn(initializer=initializer, **KW)(prob).n_iters


@pytest.mark.parametrize("warm", [False, True])
def test_batch_strategies_same_iterations_and_potentials(x64, warm, pairs_of_four_sizes):
  """map (each pair stops at its own count) and vmap (all until the slowest) agree exactly, padding included."""
  probs, batch, model = pairs_of_four_sizes
  ini = model if warm else None
  by_map = ots.solve_batch(batch, ini, strategy="map", **KW)
  by_vmap = ots.solve_batch(batch, ini, strategy="vmap", **KW)
  by_chunks = ots.solve_batch(batch, ini, strategy="map", chunk_size=3, **KW)
  for out in (by_vmap, by_chunks):
    np.testing.assert_array_equal(ots.num_iterations(out), ots.num_iterations(by_map))
    np.testing.assert_allclose(out.f, by_map.f, atol=1e-10)
  iters = np.asarray(ots.num_iterations(by_map))
  assert len(set(iters.tolist())) > 1  # the pairs really stop at different counts
  for k, prob in enumerate(probs):  # and each count is the one of its own solve
    assert int(_sinkhorn_iterations(prob, ini)) == iters[k]
  amortized = [ots.amortized_solve_batch(batch, model, strategy=s) for s in ("map", "vmap")]
  np.testing.assert_allclose(amortized[0].f, amortized[1].f, atol=1e-10)
