"""Try every bad input and fault on the public entry points; print what happened.

Run: ``python benchmarks/bad_inputs.py`` (a few seconds on a CPU). Each row is
one call made here, with the exception it raised or the result it recovered.
"""

import tempfile

import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem

import ottsliced as ots
from ottsliced.data import digit_pairs


def main() -> None:
  train, test = digit_pairs(8, seed=0), digit_pairs(3, seed=0, offset=8)
  model = ots.fit_ra(train, num_projections=16, progress=False)
  x, y, a, b = np.asarray(test.x), np.asarray(test.y), np.asarray(test.a), np.asarray(test.b)
  tmp = tempfile.mkdtemp()
  model.save(f"{tmp}/m.npz")
  raw = open(f"{tmp}/m.npz", "rb").read()
  open(f"{tmp}/trunc.npz", "wb").write(raw[: len(raw) // 2])

  def prob_eps(eps):
    return linear_problem.LinearProblem(pointcloud.PointCloud(x, y, epsilon=eps), a[0], b[0])

  cases = [
    ("negative weight", "sliced_potentials", lambda: ots.sliced_potentials(x, y, -a[0], b[0], model.theta)),
    ("NaN weight", "ProblemBatch", lambda: ots.ProblemBatch(x, y, np.where(a > 0.05, np.nan, a), b, 1e-2)),
    ("zero total mass", "ProblemBatch", lambda: ots.ProblemBatch(x, y, 0 * a, b, 1e-2)),
    (
      "non-finite point",
      "sliced_potentials",
      lambda: ots.sliced_potentials(np.where(np.arange(64)[:, None] == 0, np.inf, x), y, a[0], b[0], model.theta),
    ),
    ("x, y dimensions differ", "ProblemBatch", lambda: ots.ProblemBatch(x, y[:, :1], a, b, 1e-2)),
    ("weights shape != points", "sliced_potentials", lambda: ots.sliced_potentials(x, y, a[0, :10], b[0], model.theta)),
    ("epsilon <= 0", "ProblemBatch", lambda: ots.ProblemBatch(x, y, a, b, 0.0)),
    ("epsilon != fitted", "amortized_solve", lambda: ots.amortized_solve(prob_eps(0.1), model)),
    (
      "epsilon != fitted, override",
      "amortized_solve",
      lambda: float(ots.amortized_solve(prob_eps(0.1), model.replace(allow_epsilon_mismatch=True)).errors[0]),
    ),
    (
      "d != model's d",
      "amortized_solve_batch",
      lambda: ots.amortized_solve_batch(
        ots.ProblemBatch(np.zeros((4, 3)), np.ones((4, 3)), np.ones((1, 4)), np.ones((1, 4)), 1e-2), model
      ),
    ),
    (
      "no epsilon in PointCloud",
      "fit_ra",
      lambda: ots.fit_ra([linear_problem.LinearProblem(pointcloud.PointCloud(x, y), a[0], b[0])], progress=False),
    ),
    (
      "Geometry without points",
      "SlicedInitializer.init_fu",
      lambda: model.init_fu(
        linear_problem.LinearProblem(
          __import__("ott.geometry.geometry", fromlist=["Geometry"]).Geometry(jnp.ones((3, 3)), epsilon=1e-2)
        ),
        True,
      ),
    ),
    (
      "non-finite alpha",
      "amortized_solve_batch",
      lambda: "fell back on {} of 3 pairs, max error {:.3g}".format(
        *(lambda o, i: (int(i.fell_back.sum()), float(o.errors.max())))(
          *ots.amortized_solve_batch(test, model.replace(alpha=model.alpha * np.inf), return_info=True)
        )
      ),
    ),
    (
      "far-off model + fallback_threshold=1e-3",
      "amortized_solve_batch",
      lambda: "solved {} of 3 pairs by Sinkhorn, max error {:.3g}".format(
        *(lambda o, i: (int(i.fallback_solved.sum()), float(o.errors.max())))(
          *ots.amortized_solve_batch(
            test, model.replace(alpha=model.alpha * 40), fallback_threshold=1e-3, return_info=True
          )
        )
      ),
    ),
    (
      "Sinkhorn never converges",
      "fit_ra",
      lambda: ots.fit_ra(train, threshold=1e-7, max_iterations=10, progress=False),
    ),
    ("missing model file", "SlicedInitializer.load", lambda: ots.SlicedInitializer.load(f"{tmp}/none.npz")),
    ("truncated model file", "SlicedInitializer.load", lambda: ots.SlicedInitializer.load(f"{tmp}/trunc.npz")),
    ("resume without checkpoint_path", "fit_oa", lambda: ots.fit_oa(train, resume=True, progress=False)),
    (
      "refine_iterations < 0",
      "amortized_solve",
      lambda: ots.amortized_solve(test.problem(0), model, refine_iterations=-1),
    ),
    ("num_pairs = 0", "digit_pairs", lambda: digit_pairs(0)),
  ]
  print("| fault | entry point | what happened |\n|---|---|---|")
  for name, entry, call in cases:
    try:
      result = f"recovered: {call()}"
    except (ValueError, FileNotFoundError) as err:
      result = f"`{type(err).__name__}`: {err}"
    print(f"| {name} | `{entry}` | {str(result).replace('|', '/')} |")


if __name__ == "__main__":
  main()
