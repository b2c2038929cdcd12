"""How much a solve slows down when it does not run back to back: ottsliced against OTT's best on flow B=256.

Run: ``python benchmarks/interleaving.py`` (about a minute on a 2-core CPU). The suite's pairs and methods
(``ottsliced.experiments.solvers``), to 1e-2; six rounds of three conditions, 12 calls of each solver per
condition and round, the two solvers alternated; median ms per solver and condition:

- ``alternated``: nothing else between the calls but the other solver;
- ``after a 20 ms sleep``: the machine idle before each call;
- ``after OTT's 14 configurations``: as in the suite, every OTT configuration runs before each call.
"""

import collections
import statistics
import time

import jax
import jax.numpy as jnp

from ottsliced.experiments import solvers as bench


def main(rounds: int = 6, calls: int = 12) -> None:
  case = bench.CaseConfig(data="flow", n=256, epsilon=0.05, relative=True)
  pairs = bench.make_pairs(case, 3, case.seed)
  ours = bench._ours_method("ottsliced", None, 0, 20_000)
  otts = bench.ott_methods(bench.OTTConfig(), case, None, 20_000)
  best = next(m for m in otts if m.name == "OTT momentum (1.5)")  # the suite's best OTT on this case
  tol = jnp.float32(1e-2)
  args = {m.name: [m.prepare(p) for p in pairs] for m in [ours, *otts]}

  def timed(method, i):
    t0 = time.perf_counter()
    jax.block_until_ready(method.solve(*args[method.name][i], tol))
    return time.perf_counter() - t0

  for m in [ours, *otts]:  # compile
    for i in range(len(pairs)):
      timed(m, i)
  conditions = {
    "alternated": lambda: None,
    "after a 20 ms sleep": lambda: time.sleep(0.02),
    "after OTT's 14 configurations": lambda: [timed(m, 0) for m in otts],
  }
  seconds = collections.defaultdict(list)
  for _ in range(rounds):
    for name, before in conditions.items():
      for call in range(calls):
        for m in (ours, best):
          before()
          seconds[name, m.name].append(timed(m, call % len(pairs)))
  for (name, method), s in seconds.items():
    print(f"{name:32s} {method:20s} {1e3 * statistics.median(s):.3f} ms")


if __name__ == "__main__":
  main()
