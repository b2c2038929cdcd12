"""The timing loop the benchmark scripts share: several solves on the same pairs, side by side.

Each call runs once per pair untimed first (compilation, warm-up), then ``repeats`` times per pair with the calls
alternated, in order on even repeats and in reverse on odd ones, so that none always follows the same other; a
call's time is the median of its per-pair medians. Scripts in this folder import it as ``from side_by_side import
side_by_side`` (``python benchmarks/<script>.py`` puts this folder on the path).
"""

import statistics
import time
import types
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional, Sequence

import jax

from ottsliced.experiments import solvers as bench

__all__ = ["Timing", "compiled_with", "side_by_side", "suite_interleaving"]


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


def compiled_with(
  module: types.ModuleType, constants: Mapping[str, Any], method: bench.Method, pairs: Sequence[Any], tol: Any
) -> bench.Method:
  """``method`` compiled, ahead of time, with ``module``'s ``constants`` set while it is traced; restored after.

  For a solver's module constant read at trace time (a threshold, a size). Patching it and calling the jitted
  method is not enough: :class:`~ottsliced.SlicedSinkhorn`'s call is itself jitted, and JAX caches its trace by
  shapes and options, not by module constants, so a second method of the same shapes would reuse the first one's
  program. JAX's caches are cleared before the trace, and the executables (one per pair's argument shapes) are
  kept, so later calls, traced or not, cannot swap them.

  Args:
    module: the module holding the constants (e.g. ``ottsliced.solvers.sliced_sinkhorn``).
    constants: name -> value while tracing.
    method: a jitted method of :mod:`ottsliced.experiments.solvers` (``solve(*prepare(pair), tol)``).
    pairs: the pairs it will be called on (one program per distinct argument shapes).
    tol: the tolerance argument (traced: any value of its dtype runs on the same program).

  Returns:
    ``method`` whose ``solve`` runs the kept executables.
  """
  shipped = {name: getattr(module, name) for name in constants}
  programs = {}
  try:
    for name, value in constants.items():
      setattr(module, name, value)
    jax.clear_caches()
    for pair in pairs:
      args = method.prepare(pair)
      key = tuple(a.shape for a in args)
      if key not in programs:
        programs[key] = bench.compiled_solve(method, args, float(tol))
  finally:
    for name, value in shipped.items():
      setattr(module, name, value)
    jax.clear_caches()  # nothing traced under the patch stays in JAX's caches
  bound = method.solve.args if hasattr(method.solve, "args") else ()

  def solve(*args):
    return programs[tuple(a.shape for a in args[:-1])](*bound, *args)

  return method._replace(solve=solve)
