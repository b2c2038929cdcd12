"""Correction steps three ways on 8x8 digit pairs: the training-free default, regression, through sweeps.

Run: ``python benchmarks/correction_fits.py`` (about a minute on the 2-core CPU). 24 training pairs, 24
held-out pairs (``digit_pairs``, ε = 1e-2, 64 atoms), 16 directions, K = 2 corrections without Anderson: fit
time and mean iterations to 1e-2, 1e-3 and 1e-4 on the held-out pairs, from zeros with no correction, with the
default steps (2, 1), with coefficients fitted by regression (``method="regression"``) and through 3
differentiated sweeps (``method="sweeps"``, 200 Adam steps of 16 pairs), and, for the sweep fit, through 1 and 6.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np

import ottsliced as ots
from ottsliced.data import digit_pairs


def main() -> None:
  train = digit_pairs(24, epsilon=1e-2, seed=0)
  test = digit_pairs(24, epsilon=1e-2, seed=0, offset=50)
  theta = ots.directions(jax.random.key(3), 2, 16)
  base = ots.SlicedSinkhorn(theta, anderson_memory=0)
  run = jax.jit(lambda solver, prob: solver(prob))

  def iterations(solver, threshold):
    bound = solver.replace(threshold=threshold).bind(test.y)
    return np.mean([int(jnp.sum(run(bound, test.problem(i)).errors != -1)) for i in range(test.num_pairs)])

  rows = [("zeros, no correction", base.replace(steps=()), 0.0), ("default steps (2, 1)", base, 0.0)]
  for label, kw in (
    ("regression", {"method": "regression"}),
    ("sweeps (3)", {"method": "sweeps", "sweeps": 3}),
    ("sweeps (1)", {"method": "sweeps", "sweeps": 1}),
    ("sweeps (6)", {"method": "sweeps", "sweeps": 6}),
  ):
    t0 = time.perf_counter()
    fit = ots.fit_correction_steps(train, base, num_corrections=2, **kw)
    rows.append((f"fitted: {label}", fit.solver, time.perf_counter() - t0))
  print("| steps | fit s | iters to 1e-2 | 1e-3 | 1e-4 |")
  print("|---|---:|---:|---:|---:|")
  for label, solver, seconds in rows:
    its = [iterations(solver, t) for t in (1e-2, 1e-3, 1e-4)]
    print(f"| {label} | {seconds:.1f} | " + " | ".join(f"{v:.1f}" for v in its) + " |")


if __name__ == "__main__":
  main()
