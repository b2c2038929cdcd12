"""How much a solve slows down when it does not run back to back: ottsliced against OTT's best on flow batches.

Run: ``python benchmarks/interleaving.py [B]`` (B = 256 by default; about 2 minutes on a 2-core CPU). The suite's
3 pairs and methods (``ottsliced.experiments.solvers``), to 1e-2; per condition, the two solvers alternated
(``side_by_side.py``, 12 repeats per pair), what the condition names run untimed before every call; median ms:

- ``alternated``: nothing else between the calls but the other solver;
- ``after idling 1 / 5 / 20 ms``: ``time.sleep`` before each call;
- ``after spinning 20 ms``: the Python thread busy (a loop on the clock), XLA idle;
- ``after idling 20 ms, then OTT's best once``: another program's call right before;
- ``after OTT's best 14 times``: another program, as long as the suite's interleaving;
- ``after OTT's 14 configurations``: as in the suite, every OTT configuration runs before each call.

A first line counts the fusions (XLA CPU kernels) of each compiled solve.
"""

import sys
import time

import jax
import jax.numpy as jnp
from side_by_side import side_by_side, suite_interleaving

from ottsliced.experiments import solvers as bench


def _spin(seconds: float) -> None:
  t0 = time.perf_counter()
  while time.perf_counter() - t0 < seconds:
    pass


def main(batch: int = 256, repeats: int = 12) -> None:
  case = bench.CaseConfig(data="flow", n=batch, epsilon=0.05, relative=True)
  pairs = bench.make_pairs(case, 3, case.seed)
  ours = bench._ours_method("ottsliced", None, 0, 20_000)
  otts = bench.ott_methods(bench.OTTConfig(), case, None, 20_000)
  best = next(m for m in otts if m.name == "OTT momentum (1.5)")  # the suite's best OTT on this case (B=256)
  tol = jnp.float32(1e-2)
  args = {m.name: [m.prepare(p) for p in pairs] for m in (ours, best)}

  def call(method):
    return lambda i: jax.block_until_ready(method.solve(*args[method.name][i], tol))

  calls = {m.name: call(m) for m in (ours, best)}
  conditions = {
    "alternated": None,
    "after idling 1 ms": lambda: time.sleep(0.001),
    "after idling 5 ms": lambda: time.sleep(0.005),
    "after idling 20 ms": lambda: time.sleep(0.02),
    "after spinning 20 ms": lambda: _spin(0.02),
    "after idling 20 ms, then OTT's best once": lambda: (time.sleep(0.02), calls[best.name](1)),
    "after OTT's best 14 times": lambda: [calls[best.name](0) for _ in otts],
    "after OTT's 14 configurations": suite_interleaving(case, pairs[0], tol),
  }
  fusions = {m.name: bench.compiled_solve(m, args[m.name][0], tol).as_text().count(" fusion(") for m in (ours, best)}
  print(f"flow B={batch}, to 1e-2, median ms: {ours.name} / {best.name}", flush=True)
  print(f"{'kernels (fusions) in the compiled solve':42s} {fusions[ours.name]} / {fusions[best.name]}", flush=True)
  for name, before in conditions.items():
    timings = side_by_side(calls, range(len(pairs)), repeats, before=before)
    print(f"{name:42s} {timings[ours.name].ms:.3f} / {timings[best.name].ms:.3f}", flush=True)


if __name__ == "__main__":
  main(*(int(v) for v in sys.argv[1:2]))
