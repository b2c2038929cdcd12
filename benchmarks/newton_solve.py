"""The Newton system's solver on small problems: dense Cholesky, CG, and CG with the Cholesky fallback ("auto").

Run: ``python benchmarks/newton_solve.py`` (about 6 minutes on a 2-core CPU). For each case, the suite's 3 pairs
(``ottsliced.experiments.solvers``), to 1e-2 and 1e-3, 7 repeats per pair with the methods alternated
(``side_by_side.py``); one line per case and tolerance with the median over pairs of each method's median time and
its iterations:

- ``direct``: :class:`~ottsliced.SlicedSinkhorn` with ``newton_solve="direct"``: every step's system factorised;
- ``cg``: ``newton_solve="cg"``: CG alone, at most 10 iterations per step;
- ``auto``: CG, and the factorisation for the steps where CG stalls (up to
  :data:`~ottsliced.solvers.sliced_sinkhorn.DIRECT_MAX` atoms on the smaller side);
- OTT's Anderson (memory 2) and momentum (1.5), the best OTT settings on most of these cases.

``python benchmarks/newton_solve.py self`` (about 2 minutes) is the robustness probe behind "auto": 8 random
clouds (n = 24-100, d = 2, epsilon = 0.05), each transported to itself and to a shifted cloud, in float32 to a
column error of 1e-6 and in float64 to 1e-10; one line per problem with each solve's iterations (``FAIL``: not
converged in the budget). CG alone stalls on self-transport, a plan close to the identity whose Newton system is
ill-conditioned.
"""

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from side_by_side import side_by_side

from ottsliced.experiments import solvers as bench
from ottsliced.solvers.sliced_sinkhorn import NEWTON_SOLVES, SlicedSinkhorn

CASES = (
  {"data": "sphere", "n": 1000, "epsilon": 0.5, "relative": False},
  {"data": "sphere", "n": 300, "epsilon": 0.5, "relative": False},
  {"data": "tabular", "name": "wine", "epsilon": 0.05},
  {"data": "tabular", "name": "wine", "epsilon": 1e-2},
  {"data": "tabular", "name": "breast_cancer", "epsilon": 0.05},
  {"data": "tabular", "name": "iris", "epsilon": 1e-3},
  {"data": "flow", "n": 64, "epsilon": 0.05},
  {"data": "flow", "n": 64, "epsilon": 1e-2},
  {"data": "flow", "n": 64, "epsilon": 1e-3},
  {"data": "flow", "n": 128, "epsilon": 0.05},
  {"data": "flow", "n": 128, "epsilon": 1e-3},
  {"data": "gmm", "n": 128, "d": 3, "epsilon": 1e-3},
  {"data": "gmm", "n": 192, "d": 8, "epsilon": 1e-3},
  {"data": "mnist", "n": 14, "epsilon": 1e-2, "relative": False},
  {"data": "mnist", "n": 14, "epsilon": 1e-3, "relative": False},
  {"data": "gmm", "n": 1000, "d": 3, "epsilon": 0.05, "seed": 5},
)
OTT = ("OTT Anderson (m=2)", "OTT momentum (1.5)")


def _ours(name: str, cost_fn, **kwargs) -> bench.Method:
  solver = SlicedSinkhorn(max_iterations=20_000, **kwargs)

  @jax.jit
  def solve(solver, x, y, a, b, eps, tol):
    prob = linear_problem.LinearProblem(bench._geometry(x, y, eps, cost_fn, 0), a, b)
    out = solver.replace(threshold=tol)(prob)
    return out.f, out.g, out.n_iters

  return bench.Method(name, "ours", bench._device_args, functools.partial(solve, solver))


def _solve_pair(method: bench.Method, args, tol, i: int):
  return method.solve(*args[i], tol)


def main(repeats: int = 7) -> None:
  for spec in CASES:
    case = bench.CaseConfig(**spec)
    pairs = bench.make_pairs(case, 3, case.seed)
    cost_fn = pairs[0].cost_fn
    methods = [_ours(solve, cost_fn, newton_solve=solve) for solve in ("direct", "cg", "auto")]
    methods += [m for m in bench.ott_methods(bench.OTTConfig(), case, cost_fn, 20_000) if m.name in OTT]
    args = {m.name: [m.prepare(p) for p in pairs] for m in methods}
    for tol in (1e-2, 1e-3):
      t = jnp.float32(tol)
      calls = {m.name: functools.partial(_solve_pair, m, args[m.name], t) for m in methods}
      timings = side_by_side(calls, range(len(pairs)), repeats)
      size = f"{pairs[0].x.shape[0]}x{pairs[0].y.shape[0]}"
      cells = [f"{name} {timing.ms:.2f} ms ({timing.iterations:g})" for name, timing in timings.items()]
      print(f"{case.label():34s} {size:9s} tol {tol:g}: " + "  ".join(cells), flush=True)


def self_transport() -> None:
  for x64, threshold, budget in ((False, 1e-6, 2000), (True, 1e-10, 10_000)):
    with jax.enable_x64(x64):
      dtype = jnp.float64 if x64 else jnp.float32
      total = dict.fromkeys(NEWTON_SOLVES, 0)
      for seed in range(8):
        rs = np.random.default_rng(seed)
        n = (24, 40, 64, 100)[seed % 4]
        x, a = _cloud(rs, n)
        z, c = _cloud(rs, n - 6)
        for kind, (y, b) in (("self", (x, a)), ("cross", (z + 0.5, c))):
          prob = linear_problem.LinearProblem(
            pointcloud.PointCloud(x, y, epsilon=0.05), a.astype(dtype), b.astype(dtype)
          )
          cells = []
          for solve in NEWTON_SOLVES:
            solver = SlicedSinkhorn(threshold=threshold, max_iterations=budget, newton_solve=solve)
            out = jax.jit(solver)(prob)
            total[solve] += int(out.n_iters)
            cells.append(f"{solve} {int(out.n_iters)}{'' if bool(out.converged) else ' FAIL'}")
          print(f"{jnp.dtype(dtype).name} to {threshold:g}, n = {n:3d} {kind:5s}: " + "  ".join(cells), flush=True)
      print(f"{jnp.dtype(dtype).name} total iterations: {total}", flush=True)


def _cloud(rs: np.random.Generator, n: int):
  x, w = rs.normal(size=(n, 2)), rs.uniform(0.1, 1.0, size=n)
  return jnp.asarray(x), jnp.asarray(w / w.sum())


if __name__ == "__main__":
  self_transport() if sys.argv[1:] == ["self"] else main()
