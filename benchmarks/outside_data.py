"""Point clouds from outside the suite: the default solver against OTT's configurations, side by side.

Run: ``python benchmarks/outside_data.py`` (about 10 minutes on a 2-core CPU; ``--cases``, ``--epsilons``,
``--tols`` pick a part). The suite (``ottsliced bench configs/solvers.yaml``) was built with its data in view;
these clouds were not: scikit-learn's generators and its diabetes table, none of them used by the suite or
tuned on. Per case, 3 pairs of different sizes, uniform weights, standardised coordinates, squared Euclidean
cost, ε a multiple of each pair's mean cost:

- ``moons -> circles`` (2-D, 400 × 500 points), ``swiss roll -> S curve`` (3-D, 600 × 700),
  ``blobs`` (8-D, 4 against 5 centres, 500 × 450), ``diabetes`` (10-D: patients below against above the
  median target, 200 × 210 drawn per pair).

Every method runs jitted (compile excluded) on every pair, alternated (``benchmarks/side_by_side.py``), to its
own threshold ``tol``; OTT's configurations are the suite's 14 (default, Anderson, momentum, Gaussian
initializer, ε-scaling with and without Anderson). Printed: a markdown table with our median time and
iterations, the fastest OTT configuration's, the ratios to it and to OTT's default, and the worst column and row
L1 marginal errors of our returned potentials' plan over the pairs (float64 on the host: each method stops on
its own error, ours on the columns' while the rows carry the error, OTT's on the rows').
"""

import argparse
import statistics
import sys
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from side_by_side import side_by_side

from ottsliced import SlicedSinkhorn
from ottsliced.experiments import solvers as bench

CASES = ("moons -> circles", "swiss roll -> S curve", "blobs", "diabetes")


def _standardised(z: np.ndarray) -> np.ndarray:
  return ((z - z.mean(0)) / z.std(0)).astype(np.float32)


def clouds(case: str, seed: int):
  """One pair of point clouds ``(x [n, d], y [m, d])`` of ``case``."""
  from sklearn import datasets

  if case == "moons -> circles":
    x = datasets.make_moons(400, noise=0.1, random_state=seed)[0]
    y = datasets.make_circles(500, noise=0.05, factor=0.5, random_state=100 + seed)[0]
  elif case == "swiss roll -> S curve":
    x = datasets.make_swiss_roll(600, noise=0.2, random_state=seed)[0]
    y = datasets.make_s_curve(700, noise=0.1, random_state=100 + seed)[0]
  elif case == "blobs":
    x = datasets.make_blobs(500, 8, centers=4, random_state=seed)[0]
    y = datasets.make_blobs(450, 8, centers=5, random_state=50 + seed)[0]
  elif case == "diabetes":
    features, target = datasets.load_diabetes(return_X_y=True)
    features, rs = _standardised(features), np.random.default_rng(seed)
    low, high = features[target < np.median(target)], features[target >= np.median(target)]
    return low[rs.permutation(len(low))[:200]], high[rs.permutation(len(high))[:210]]
  else:
    raise ValueError(f"unknown case {case!r}; choose from {CASES}")
  return _standardised(x), _standardised(y)


def pairs(case: str, epsilon: float, count: int = 3):
  """``count`` problems of ``case`` as the suite's :class:`Pair` (ε = ``epsilon`` × each pair's mean cost)."""
  out = []
  for seed in range(count):
    x, y = clouds(case, seed)
    mean_cost = float(np.mean(np.sum((x[:, None] - y[None]) ** 2, axis=-1)))
    a = np.full(len(x), 1.0 / len(x), np.float32)
    b = np.full(len(y), 1.0 / len(y), np.float32)
    out.append(bench.Pair(x, y, a, b, epsilon * mean_cost, None))
  return out


def marginal_errors(pair, f, g):
  """Column and row L1 marginal errors of the plan of ``(f, g)``, in float64 on the host."""
  x, y = pair.x.astype(np.float64), pair.y.astype(np.float64)
  cost = np.sum((x[:, None] - y[None]) ** 2, axis=-1)
  plan = np.exp((np.asarray(f, np.float64)[:, None] + np.asarray(g, np.float64)[None] - cost) / pair.epsilon)
  return float(np.abs(plan.sum(0) - pair.b).sum()), float(np.abs(plan.sum(1) - pair.a).sum())


def compare(case: str, epsilon: float, tol: float, repeats: int) -> Tuple[str, float]:
  """``(table row, ours ÷ fastest OTT)``: ours against OTT's fastest configuration on ``case`` at ``epsilon`` × mean
  cost to ``tol``."""
  problems = pairs(case, epsilon)
  threshold = jnp.float32(tol)
  solver = SlicedSinkhorn(max_iterations=20_000)

  @jax.jit
  def ours(x, y, a, b, eps, threshold):
    prob = linear_problem.LinearProblem(pointcloud.PointCloud(x, y, epsilon=eps), a, b)
    out = solver.replace(threshold=threshold)(prob)
    return out.f, out.g, out.n_iters

  calls = {"ours": lambda p: ours(*bench._device_args(p), threshold)}
  shape_case = bench.CaseConfig(data="gmm", n=len(problems[0].x), d=problems[0].x.shape[1], epsilon=epsilon)
  for method in bench.ott_methods(bench.OTTConfig(), shape_case, None, 20_000):
    calls[method.name] = (lambda m: lambda p: m.solve(*m.prepare(p), threshold))(method)
  timings = side_by_side(calls, problems, repeats)
  best = min((t.ms, name) for name, t in timings.items() if name != "ours")
  errors = [marginal_errors(p, *calls["ours"](p)[:2]) for p in problems]
  mine = timings["ours"]
  ratio = mine.ms / best[0]
  row = (
    f"| {case} | {epsilon:g} | {tol:g} | {mine.ms:.2f} ({mine.iterations:g}) | {best[0]:.2f} ({best[1]}, "
    f"{timings[best[1]].iterations:g}) | **{ratio:.2f}** | {mine.ms / timings['OTT default'].ms:.2f} | "
    f"{max(e[0] for e in errors):.0e} / {max(e[1] for e in errors):.0e} |"
  )
  return row, ratio


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
  parser.add_argument("--epsilons", nargs="+", type=float, default=[0.05, 0.01], help="× each pair's mean cost")
  parser.add_argument("--tols", nargs="+", type=float, default=[1e-2, 1e-3])
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args(argv)
  print(
    "| case | ε / mean cost | tol | ours ms (it.) | fastest OTT ms (which, it.) | ours ÷ fastest | ours ÷ OTT default "
    "| our column / row error |"
  )
  print("|---|---|---|---|---|---|---|---|")
  ratios = []
  for case in args.cases:
    for epsilon in args.epsilons:
      for tol in args.tols:
        row, ratio = compare(case, epsilon, tol, args.repeats)
        ratios.append(ratio)
        print(row, flush=True)
  print(f"\nours ÷ fastest OTT: median {statistics.median(ratios):.2f}, max {max(ratios):.2f} over {len(ratios)} rows")


if __name__ == "__main__":
  sys.exit(main())
