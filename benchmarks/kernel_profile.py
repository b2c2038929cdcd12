"""Where a small solve's time goes on XLA's CPU runtime: the kernels of one call, alone and after other programs.

Run: ``python benchmarks/kernel_profile.py [flow|sphere|wine ...]`` (about a minute per case on a 2-core CPU).
For ottsliced (:class:`~ottsliced.SlicedSinkhorn`, no argument) and OTT's momentum (1.5), the best OTT setting
on these cases, it traces 15 calls on the case's first pair to 1e-2 with ``jax.profiler``, twice: alone, and
each call after the suite's 14 OTT configurations (``side_by_side.suite_interleaving``, untimed). It prints,
per call, the wall time inside the trace (the profiler slows every kernel: compare rows, not with the suite),
the kernels executed and how many distinct ones, and the kernels that take longest more after other programs.

Each line: ``case method condition: wall ms, executed kernels, distinct kernels``, then ``  +us kernel``.
"""

import collections
import sys
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
from side_by_side import suite_interleaving

from ottsliced.experiments import solvers as bench

CASES = {
  "flow": {"data": "flow", "n": 256, "epsilon": 0.05},
  "sphere": {"data": "sphere", "n": 1000, "epsilon": 0.5, "relative": False},
  "wine": {"data": "tabular", "name": "wine", "epsilon": 0.05},
}
CALLS = 15
_NOT_KERNELS = ("ThunkExecutor", "while", "cond", "Threadpool", "Slinky", "end:")


def _kernel_times(solve, before) -> tuple:
  """``(wall ms per call, {kernel: us per call}, {kernel: executions per call})`` from one trace."""
  with tempfile.TemporaryDirectory() as folder:
    with jax.profiler.trace(folder):
      for _ in range(CALLS):
        if before is not None:
          before()
        with jax.profiler.TraceAnnotation("timed call"):
          jax.block_until_ready(solve())
    data = jax.profiler.ProfileData.from_file(str(next(Path(folder).rglob("*.xplane.pb"))))
  events, windows = [], []
  for plane in data.planes:
    for line in plane.lines:
      for event in line.events:
        if event.name == "timed call":
          windows.append((event.start_ns, event.start_ns + event.duration_ns))
        elif line.name != "python" and not event.name.startswith(_NOT_KERNELS):
          events.append((event.start_ns, event.duration_ns, event.name))
  times, counts = collections.Counter(), collections.Counter()
  for start, duration, name in events:
    if any(lo <= start <= hi for lo, hi in windows):
      times[name] += duration / CALLS / 1e3
      counts[name] += 1 / CALLS
  return sum(hi - lo for lo, hi in windows) / CALLS / 1e6, times, counts


def main(names) -> None:
  """Prints the kernels of each case and method, alone and after the OTT configurations."""
  tol = jnp.float32(1e-2)
  for name in names:
    case = bench.CaseConfig(**CASES[name])
    pair = bench.make_pairs(case, 1, case.seed)[0]
    ott = bench.OTTConfig(anderson=(), momentum=(1.5,), gaussian=False, epsilon_scaling=())
    momentum = [m for m in bench.ott_methods(ott, case, pair.cost_fn, 20_000) if m.name.startswith("OTT momentum")]
    before = suite_interleaving(case, pair, tol)
    for method in [bench._ours_method("ottsliced", pair.cost_fn, 0, 20_000), *momentum]:
      args = method.prepare(pair)
      solve = lambda method=method, args=args: method.solve(*args, tol)  # noqa: E731
      for _ in range(3):
        before()
        jax.block_until_ready(solve())
      alone = _kernel_times(solve, None)
      after = _kernel_times(solve, before)
      for label, (wall, _, counts) in (("alone", alone), ("after OTT's 14", after)):
        executed = sum(counts.values())
        distinct = sum(1 for c in counts.values() if c >= 0.9)
        print(f"{case.label()} {method.name} {label}: {wall:.2f} ms, {executed:.0f} kernels, {distinct} distinct")
      slower = sorted(after[1], key=lambda k: alone[1][k] - after[1][k])[:5]
      print("  " + ", ".join(f"+{after[1][k] - alone[1][k]:.0f}us {k}" for k in slower), flush=True)


if __name__ == "__main__":
  main(sys.argv[1:] or list(CASES))
