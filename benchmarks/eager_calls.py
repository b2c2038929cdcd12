"""Solvers called as a notebook calls them: no ``jax.jit`` of the user's own, one call per pair in a Python loop.

Run: ``python benchmarks/eager_calls.py`` (about 2 minutes on a 2-core CPU). For each case, a fresh process's
first call (compilation included) and then the median of the next calls on new pairs of the same shapes::

  first call s   next calls ms (median)   iterations   method   case

- ``OTT Sinkhorn()``: ``Sinkhorn()(prob)`` with OTT's defaults, called directly. OTT's solver is not compiled as
  a whole: its loop is compiled again at every call (a new closure each time), which is most of each call;
- ``OTT Sinkhorn(), jitted``: the same solver under the user's own ``jax.jit``, for reference (what the suite
  in ``ottsliced bench configs/solvers.yaml`` times, compile excluded);
- ``SlicedSinkhorn()``: ours, called directly. ``__call__`` compiles its solve once per shapes and options
  (``jax.jit`` at the API boundary), so later calls reuse the program.

Each method runs in its own process (``--method``), so that no compilation cache is shared between them.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp

CASES = {
  "flow B=256, eps=0.05 x mean": {"data": "flow", "n": 256, "epsilon": 0.05},
  "wine, eps=0.05 x mean": {"data": "tabular", "name": "wine", "epsilon": 0.05},
  "mixtures n=1,000, d=3, eps=0.01 x mean": {"data": "gmm", "n": 1000, "d": 3, "epsilon": 0.01},
}
METHODS = ("OTT Sinkhorn()", "OTT Sinkhorn(), jitted", "SlicedSinkhorn()")
PAIRS = 6


def _run(method: str, case_name: str) -> dict:
  from ott.problems.linear import linear_problem
  from ott.solvers.linear import sinkhorn

  from ottsliced import SlicedSinkhorn
  from ottsliced.experiments import solvers as bench

  case = bench.CaseConfig(**CASES[case_name])
  pairs = bench.make_pairs(case, PAIRS, case.seed)
  solver = SlicedSinkhorn() if method == "SlicedSinkhorn()" else sinkhorn.Sinkhorn()

  def solve(x, y, a, b, eps):
    prob = linear_problem.LinearProblem(bench._geometry(x, y, eps, pairs[0].cost_fn, 0), a, b)
    out = solver(prob)
    return out.f, out.n_iters

  call = jax.jit(solve) if method.endswith("jitted") else solve
  seconds, iterations = [], []
  for pair in pairs:
    args = bench._device_args(pair)
    start = time.perf_counter()
    f, n_iters = call(*args)
    jax.block_until_ready(f)
    seconds.append(time.perf_counter() - start)
    iterations.append(int(n_iters))
  return {"first_s": seconds[0], "next_ms": 1e3 * statistics.median(seconds[1:]), "iterations": iterations[1:]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--method", choices=METHODS)
  parser.add_argument("--case", choices=list(CASES))
  args = parser.parse_args()
  if args.method:
    print(json.dumps(_run(args.method, args.case)))
    return
  print(f"{jax.devices()[0].device_kind}, {jnp.zeros(()).dtype}, {PAIRS} pairs per case")
  print(f"{'first call s':>12} {'next calls ms':>14}  iterations  method  case")
  for case_name in CASES:
    for method in METHODS:
      cmd = [sys.executable, __file__, "--method", method, "--case", case_name]
      res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
      its = statistics.median(res["iterations"])
      print(f"{res['first_s']:12.2f} {res['next_ms']:14.2f}  {its:10g}  {method}  {case_name}")


if __name__ == "__main__":
  main()
