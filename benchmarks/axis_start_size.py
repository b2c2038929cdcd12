"""From how many cost entries the axis start pays: the shipped size threshold against a lower one.

Run: ``python benchmarks/axis_start_size.py`` (about 5 minutes on a 2-core CPU). This is the data behind
:data:`ottsliced.solvers.sliced_sinkhorn.AXIS_START_MIN_ENTRIES` (2**17). Per case, the suite's 3 pairs, to 1e-2
and 1e-3, :class:`~ottsliced.SlicedSinkhorn` compiled twice (``side_by_side.compiled_with``): as shipped (below
2**17 entries no axis start) and with the threshold at 2**14 (every case here is above it, so the second one starts
from the axis potential), alternated (``side_by_side.py``, 7 repeats per pair), each call after OTT's 14
configurations of the suite (untimed), as the suite runs them. One line per case and tolerance::

  new/shipped  shipped ms  new ms  (iterations shipped/new)  case  tol
"""

import jax.numpy as jnp
from side_by_side import compiled_with, side_by_side, suite_interleaving

from ottsliced.experiments import solvers as bench
from ottsliced.solvers import sliced_sinkhorn

CASES = [
  {"data": "flow", "n": 128, "epsilon": 0.05},
  {"data": "flow", "n": 181, "epsilon": 0.05},
  {"data": "flow", "n": 256, "epsilon": 0.05},
  {"data": "flow", "n": 256, "epsilon": 0.01},
  {"data": "gmm", "n": 200, "d": 3, "epsilon": 0.05},
  {"data": "gmm", "n": 256, "d": 2, "epsilon": 0.05},
  {"data": "gmm", "n": 300, "d": 4, "epsilon": 0.05},
  {"data": "gmm", "n": 256, "d": 3, "epsilon": 0.01},
]
LOWER = 2**14


def _call(method, pairs, tol):
  """``i -> method's solve of pair i`` (arguments prepared once, outside the timing)."""
  args = [method.prepare(p) for p in pairs]
  return lambda i: method.solve(*args[i], tol)


def main(repeats: int = 7) -> None:
  print(f"shipped AXIS_START_MIN_ENTRIES = {sliced_sinkhorn.AXIS_START_MIN_ENTRIES}, new = {LOWER}", flush=True)
  for spec in CASES:
    case = bench.CaseConfig(**spec)
    pairs = bench.make_pairs(case, 3, case.seed)
    methods = {  # the tolerance is traced: one program per variant serves both
      name: compiled_with(
        sliced_sinkhorn,
        {"AXIS_START_MIN_ENTRIES": entries},
        bench._ours_method(name, None, 0, 20_000),
        pairs,
        jnp.float32(1e-2),
      )
      for name, entries in (("shipped", sliced_sinkhorn.AXIS_START_MIN_ENTRIES), ("new", LOWER))
    }
    for tol in (jnp.float32(1e-2), jnp.float32(1e-3)):
      calls = {name: _call(m, pairs, tol) for name, m in methods.items()}
      timings = side_by_side(calls, range(len(pairs)), repeats, before=suite_interleaving(case, pairs[0], tol))
      old, new = timings["shipped"], timings["new"]
      print(
        f"{new.ms / old.ms:5.2f} {old.ms:7.3f} {new.ms:7.3f} ({old.iterations:g}/{new.iterations:g})  "
        f"{case.label()}  tol {float(tol):g}",
        flush=True,
      )


if __name__ == "__main__":
  main()
