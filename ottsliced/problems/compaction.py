"""Batched Sinkhorn whose converged pairs leave the batch: blocks of iterations, compacted in between.

A vmapped Sinkhorn ``while_loop`` runs until the slowest pair of the batch
stops: on MNIST pairs at 1e-2, 20 iterations on average but 41-59 for the
slowest, so a batch pays 2-3x the iterations it needs. On accelerators, where
the pairs must run in parallel, :func:`solve_compacted` runs ``block``
iterations of every unconverged pair (one vmapped, jit-compiled OTT Sinkhorn
call with ``max_iterations=block``), takes the converged pairs out, and
continues the others from their potentials. Active pairs are gathered into
buckets of power-of-two sizes, padded by repeating a pair, so at most
``log2(B) + 2`` shapes are compiled.

Plain Sinkhorn's state is its potentials: continuing from ``(f, g)`` runs the
same iterations as an uninterrupted solve, so every pair gets the potentials,
error trace and iteration count of its own solve. Accelerations that keep a
history (Anderson, momentum) or follow the iteration count (epsilon scaling)
do not resume this way; :func:`ottsliced.solve_batch` uses the plain vmap for
them. On a CPU, :func:`ottsliced.problems.batching.over_pairs`' ``"map"`` (one pair
after another) is faster still and is the default there.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

from ottsliced.problems.batch import ProblemBatch

__all__ = ["bucket_size", "solve_compacted"]


def bucket_size(active: int, total: int, smallest: int = 8) -> int:
  """The batch size for ``active`` pairs: the next power of two, at least ``smallest``, at most ``total``."""
  size = max(int(smallest), 1 << max(int(active) - 1, 0).bit_length())
  return int(min(size, total))


@functools.partial(jax.jit, static_argnames=("block", "inner_iterations", "first"))
def _block(
  batch: ProblemBatch, initializer: Any, f: jax.Array, g: jax.Array, threshold, block, inner_iterations, first
):
  solver = sinkhorn.Sinkhorn(
    initializer=initializer, threshold=threshold, max_iterations=block, inner_iterations=inner_iterations
  )

  def one(x, y, a, b, f, g):
    prob = linear_problem.LinearProblem(batch.geometry(x, y), a, b)
    return solver(prob) if first else solver(prob, init=(f, g))

  ax, ay = batch.point_axes
  out = jax.vmap(one, in_axes=(ax, ay, 0, 0, 0, 0))(batch.x, batch.y, batch.a, batch.b, f, g)
  return out.f, out.g, out.errors


@jax.jit
def _finish(batch: ProblemBatch, f: jax.Array, g: jax.Array, errors: jax.Array, threshold: jax.Array, converged):
  def one(x, y, a, b, f, g, errors, converged):
    prob = linear_problem.LinearProblem(batch.geometry(x, y), a, b)
    out = sinkhorn.SinkhornOutput((f, g), errors=errors, threshold=threshold, converged=converged, inner_iterations=1)
    return out.set_cost(prob, lse_mode=True, use_danskin=True).set(ot_prob=prob)

  ax, ay = batch.point_axes
  axes = (ax, ay, 0, 0, 0, 0, 0, 0)
  return jax.vmap(one, in_axes=axes)(batch.x, batch.y, batch.a, batch.b, f, g, errors, converged)


def solve_compacted(
  batch: ProblemBatch,
  initializer: Any = None,
  *,
  threshold: float = 1e-3,
  max_iterations: int = 2000,
  inner_iterations: int = 1,
  block: int = 8,
  smallest_bucket: int = 8,
) -> sinkhorn.SinkhornOutput:
  """Plain OTT Sinkhorn on every pair, converged pairs taken out of the batch every ``block`` iterations.

  Args:
    batch: the problems.
    initializer: any OTT initializer for the first block (``None``: zeros).
    threshold: OTT's marginal-error threshold.
    max_iterations: iteration cap per pair.
    inner_iterations: iterations between two error checks (OTT's meaning);
      ``block`` is rounded up to a multiple of it.
    block: iterations between two compactions.
    smallest_bucket: the smallest batch shape compiled.

  Returns:
    A batched ``SinkhornOutput`` (leading axis ``B``) with the potentials,
    error trace (``-1`` after each pair's stop), ``converged`` flags and costs
    that every pair's own solve gives; :func:`ottsliced.num_iterations` counts
    its iterations.
  """
  if block < 1 or max_iterations < 1 or inner_iterations < 1:
    raise ValueError("`block`, `max_iterations` and `inner_iterations` must be >= 1.")
  block = -(-int(block) // inner_iterations) * inner_iterations
  checks = -(-int(max_iterations) // inner_iterations)  # OTT's error trace: ceil(max_iterations / inner) checks
  max_iterations = checks * inner_iterations
  num = batch.num_pairs
  threshold = jnp.asarray(threshold, batch.a.dtype)
  trace = np.full((num, checks), -1.0, dtype=np.asarray(batch.a).dtype)
  f = jnp.zeros(batch.a.shape, batch.a.dtype)
  g = jnp.zeros(batch.b.shape, batch.b.dtype)
  done = np.zeros(num, bool)
  active, ran = np.arange(num), 0
  while active.size and ran < max_iterations:
    steps = min(block, max_iterations - ran)
    size = bucket_size(active.size, num, smallest_bucket)
    idx = np.concatenate([active, np.full(size - active.size, active[0])])
    part = batch.take(idx)
    fb, gb, errors = _block(part, initializer, f[idx], g[idx], threshold, steps, inner_iterations, ran == 0)
    errors = np.asarray(errors)[: active.size]
    f = f.at[active].set(fb[: active.size])
    g = g.at[active].set(gb[: active.size])
    trace[active, ran // inner_iterations : (ran + steps) // inner_iterations] = errors
    stopped = (errors == -1).any(axis=1) | ((errors >= 0) & (errors < float(threshold))).any(axis=1)
    done[active[stopped]] = True
    active = active[~stopped]
    ran += steps
  last = np.maximum((trace != -1).sum(axis=1) - 1, 0)
  final = trace[np.arange(num), last]
  converged = jnp.asarray((final >= 0) & (final < float(threshold)))
  return _finish(batch, f, g, jnp.asarray(trace), threshold, converged).set(inner_iterations=inner_iterations)
