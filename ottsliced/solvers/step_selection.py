r"""A :class:`~ottsliced.SlicedSinkhorn` schedule chosen per task by wall time: corrections only where they pay.

A sliced correction costs the sliced potentials (one pass over ``[L, m]``
arrays), one more :math:`\mathcal T_a` per extra line-search candidate and, for
a new target, the sort of its projections: one to two iterations' time
(``benchmarks/flow_corrections.py`` at commit 301e8bd). Where Sinkhorn needs many sweeps
(MNIST at :math:`\varepsilon=10^{-2}`: 20 iterations to 1e-2 from zeros, 6.7
with corrections and Anderson) they pay many times over; where it needs a few
(2-D flow-matching batches at :math:`\varepsilon=2`: 4-10 iterations with
Anderson alone) they save at most one iteration and cost more than they save.
No quantity read before or during the first iterations separated the two
regimes on our tasks (early contraction rates, first errors and the first
correction's dual gain overlap between MNIST and the flows), so the schedule is
chosen the way XLA picks kernels: by timing the candidates, side by side, on a
few sample problems of the task. No training and no ground truth; the choice
holds for the task's problem sizes and hardware.
"""

import time
from typing import Any, Dict, NamedTuple, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ottsliced.problems.batch import as_problem_batch
from ottsliced.solvers.sliced_sinkhorn import DEFAULT_STEPS, SlicedSinkhorn

__all__ = ["DEFAULT_CANDIDATES", "StepSelection", "select_steps"]

DEFAULT_CANDIDATES: Tuple[Dict[str, Any], ...] = (
  {"steps": DEFAULT_STEPS},
  {"steps": DEFAULT_STEPS, "stop_after_rejection": True},
  {"steps": DEFAULT_STEPS[:1]},
  {"steps": ()},
)


class StepSelection(NamedTuple):
  """The fastest schedule on the sample problems, and what every candidate measured.

  Attributes:
    solver: the input solver with the chosen candidate's fields.
    best: index of the chosen candidate.
    candidates: the candidates (``SlicedSinkhorn.replace`` keyword arguments).
    ms: ``[C]`` median over repeats of the mean wall ms of one solve.
    iterations: ``[C]`` mean iterations over the sample problems.
    converged: ``[C]`` number of sample problems each candidate solved to the threshold.
  """

  solver: SlicedSinkhorn
  best: int
  candidates: Tuple[Dict[str, Any], ...]
  ms: np.ndarray
  iterations: np.ndarray
  converged: np.ndarray


@jax.jit
def _solve(solver: SlicedSinkhorn, prob: Any):
  out = solver(prob)
  return out.f, jnp.sum(out.errors != -1), out.converged


def select_steps(
  problems: Any,
  solver: SlicedSinkhorn,
  candidates: Sequence[Dict[str, Any]] = DEFAULT_CANDIDATES,
  *,
  repeats: int = 5,
) -> StepSelection:
  r"""Time ``solver`` with each candidate schedule on sample problems; keep the fastest that converges.

  Every candidate is compiled and run once on every problem first (iterations
  and convergence are read there), then timed ``repeats`` times, the
  candidates alternating on each problem so that a change of machine load
  hits all of them alike. Candidates that converge on fewer sample problems
  than the best one does are not eligible; among the others the lowest
  median time wins (ties: the earlier candidate).

  Args:
    problems: sample problems of the task, a :class:`~ottsliced.ProblemBatch`
      or a list of OTT ``LinearProblem``\ s (a handful is enough: the choice
      is between schedules whose costs differ by whole iterations).
    solver: the :class:`~ottsliced.SlicedSinkhorn` to tune (its initializer,
      threshold, directions and Anderson settings are kept).
    candidates: keyword arguments of :meth:`SlicedSinkhorn.replace`, e.g.
      ``{"steps": ()}`` (no correction). The default tries the default
      corrections, the same stopped after a rejected correction, one
      correction, and none.
    repeats: timed calls per candidate and problem (>= 1).

  Returns:
    A :class:`StepSelection`; ``selection.solver`` is ready to use.
  """
  if not isinstance(solver, SlicedSinkhorn):
    raise ValueError(f"`solver` must be a SlicedSinkhorn, got {type(solver).__name__}.")
  candidates = tuple(dict(c) for c in candidates)
  if not candidates:
    raise ValueError("`candidates` is empty; give at least one schedule, e.g. [{'steps': ()}].")
  if int(repeats) < 1:
    raise ValueError(f"`repeats` must be >= 1, got {repeats}.")
  batch = as_problem_batch(problems)
  probs = [batch.problem(i) for i in range(batch.num_pairs)]
  solvers = [solver.replace(**c) for c in candidates]
  iterations = np.zeros((len(solvers), len(probs)))
  converged = np.zeros(len(solvers), dtype=int)
  for c, s in enumerate(solvers):
    for i, prob in enumerate(probs):
      _, its, ok = jax.block_until_ready(_solve(s, prob))
      iterations[c, i] = int(its)
      converged[c] += bool(ok)
  seconds = np.zeros((len(solvers), int(repeats)))
  for r in range(int(repeats)):
    for prob in probs:
      for c, s in enumerate(solvers):
        t0 = time.perf_counter()
        jax.block_until_ready(_solve(s, prob))
        seconds[c, r] += time.perf_counter() - t0
  ms = 1e3 * np.median(seconds, axis=1) / len(probs)
  eligible = converged == converged.max()
  best = int(np.argmin(np.where(eligible, ms, np.inf)))
  return StepSelection(solvers[best], best, candidates, ms, iterations.mean(axis=1), converged)
