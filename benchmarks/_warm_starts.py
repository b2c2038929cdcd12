"""Shared by the MNIST warm-start benchmarks: iteration counts from error traces, side-by-side timing."""

import time
from typing import Any, Callable, Dict, Sequence

import jax
import numpy as np
from ott.solvers.linear import sinkhorn

import ottsliced as ots

__all__ = ["corrected_iterations", "iterations_to", "time_to_thresholds"]

_run = jax.jit(lambda solver, prob: solver(prob))


def iterations_to(errors: np.ndarray, threshold: float) -> np.ndarray:
  """Iterations to ``threshold`` per pair from ``[B, T]`` error traces (the cap when never reached)."""
  below = (errors >= 0) & (errors < threshold)
  return np.where(below.any(axis=1), below.argmax(axis=1) + 1, errors.shape[1])


def corrected_iterations(solver: Any, test: Any, thresholds: Sequence[float]) -> list:
  """Mean iterations of a ``SlicedSinkhorn`` over the test pairs, one count per threshold (its own count)."""
  counts = []
  for t in thresholds:
    fixed = solver.replace(threshold=t)
    counts.append(
      float(np.mean([int(ots.num_iterations(_run(fixed, test.problem(i)))) for i in range(test.num_pairs)]))
    )
  return counts


def time_to_thresholds(
  starts: Dict[str, Any], solvers: Dict[str, Any], test: Any, thresholds: Sequence[float], pairs: int, repeats: int
) -> Dict[float, Dict[str, float]]:
  """Median ms of one pair to each threshold, prediction included, every start and solver alternating.

  ``starts``: OTT initializers (``None``: zeros) run with OTT's Sinkhorn; ``solvers``: ``SlicedSinkhorn``\\ s.
  The first ``pairs`` test pairs are timed one by one, ``repeats`` calls each after a warm-up call.
  """

  def ott_call(ini, threshold) -> Callable:
    solver = sinkhorn.Sinkhorn(threshold=threshold, inner_iterations=1, max_iterations=20_000, initializer=ini)
    return jax.jit(lambda prob: solver(prob).f)

  ms = {}
  for threshold in thresholds:
    calls = {name: ott_call(ini, threshold) for name, ini in starts.items()}
    for name, solver in solvers.items():
      fixed = solver.replace(threshold=threshold)
      calls[name] = lambda prob, fixed=fixed: _run(fixed, prob).f
    times = {name: [] for name in calls}
    for i in range(pairs):
      prob = test.problem(i)
      for call in calls.values():
        jax.block_until_ready(call(prob))
      for _ in range(repeats):
        for name, call in calls.items():
          t0 = time.perf_counter()
          jax.block_until_ready(call(prob))
          times[name].append(time.perf_counter() - t0)
    ms[threshold] = {name: 1e3 * float(np.median(v)) for name, v in times.items()}
  return ms
