"""The timing loop the benchmark scripts share: several solves on the same pairs, side by side.

Each call runs once per pair untimed first (compilation, warm-up), then ``repeats`` times per pair with the calls
alternated, in order on even repeats and in reverse on odd ones, so that none always follows the same other; a
call's time is the median of its per-pair medians. Scripts in this folder import it as ``from side_by_side import
side_by_side`` (``python benchmarks/<script>.py`` puts this folder on the path).
"""

import statistics
import time
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional, Sequence

import jax

from ottsliced.experiments import solvers as bench

__all__ = ["Timing", "side_by_side", "suite_interleaving"]


class Timing(NamedTuple):
  """One call's result.

  Attributes:
    ms: the median over pairs of its median wall time per pair, in milliseconds.
    iterations: the median of its outputs' last element (a solver's iteration count); ``nan`` if not an integer.
  """

  ms: float
  iterations: float


def _iterations(out: Any) -> float:
  try:
    return float(int(out[-1]))
  except (TypeError, IndexError, ValueError):
    return float("nan")


def side_by_side(
  calls: Mapping[str, Callable[[Any], Any]],
  pairs: Sequence[Any],
  repeats: int,
  before: Optional[Callable[[], Any]] = None,
) -> Dict[str, Timing]:
  """Times ``calls[name](pair)`` for every name and pair, alternated.

  Args:
    calls: name -> a function of one pair returning JAX arrays (blocked on, inside the timed region).
    pairs: the problems, passed as they are to every call.
    repeats: timed calls per name and pair.
    before: run, untimed, before every timed call (``None``: nothing): what the calls should follow.

  Returns:
    name -> :class:`Timing`, in the order of ``calls``.
  """
  names = list(calls)
  for name in names:
    for pair in pairs:
      jax.block_until_ready(calls[name](pair))
  per_pair: Dict[str, list] = {name: [] for name in names}
  iterations: Dict[str, list] = {name: [] for name in names}
  for pair in pairs:
    seconds: Dict[str, list] = {name: [] for name in names}
    for rep in range(repeats):
      for name in names if rep % 2 == 0 else names[::-1]:
        if before is not None:
          before()
        t0 = time.perf_counter()
        out = jax.block_until_ready(calls[name](pair))
        seconds[name].append(time.perf_counter() - t0)
        iterations[name].append(_iterations(out))
    for name in names:
      per_pair[name].append(statistics.median(seconds[name]))
  return {name: Timing(1e3 * statistics.median(per_pair[name]), statistics.median(iterations[name])) for name in names}


def suite_interleaving(case: bench.CaseConfig, pair: Any, tol: Any) -> Callable[[], Any]:
  """Every OTT configuration of the suite on ``pair``, blocked on: what runs between two calls of a method there.

  A ``before`` for :func:`side_by_side`.
  """
  methods = bench.ott_methods(bench.OTTConfig(), case, None, 20_000)
  args = [m.prepare(pair) for m in methods]
  return lambda: [jax.block_until_ready(m.solve(*a, tol)) for m, a in zip(methods, args)]
