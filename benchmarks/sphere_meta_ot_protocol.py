"""Supply-demand on S² at Meta OT's ε = 1e-3 with its protocol: 10 test pairs of 100 × 10,000, a 1e-4 reference.

Run: ``python benchmarks/sphere_meta_ot_protocol.py`` (about an hour on the 2-core CPU). The locations and the
instance sampler are ``ottsliced.data.sphere`` (a synthetic population density: GPWv4 ships in no package), the
cost is the geodesic distance, the features live on the stereographic plane. Every method is fitted on the same
training pairs (seeds ``0 .. --train - 1``); the test pairs are seeds 999 .. 1008.

Sinkhorn needs 3,000–13,000 iterations per pair here. OTT's ``Sinkhorn`` re-evaluates the geodesic cost in every
kernel pass of this ``PointCloud`` (about 16 ms an iteration on this CPU), ``SlicedSinkhorn`` with
``steps=(), anderson_memory=0`` runs the same iterations on the cost matrix computed once (about 1.4 ms; it stops
at OTT's iteration with OTT's potentials, a float64 test), so the iteration counts and the ground truth come from
that loop, every start in it. One row times OTT's own ``Sinkhorn`` from zeros on the first test pair.

Prints the mean iterations to 1e-2 / 1e-3 / 1e-4 over the test pairs (the cap counts where a tolerance is never
reached), their ratio to zeros' (below 1: fewer), and the median wall seconds of one pair to 1e-2 and to 1e-4
(prediction included, each solve timed once, compiled ahead of time, methods alternating pair by pair).
"""

import argparse
import os
import time

import jax
import numpy as np
from _warm_starts import iterations_to
from ott.initializers.linear import initializers
from ott.solvers.linear import sinkhorn

import ottsliced as ots
from ottsliced import baselines
from ottsliced.data import sphere
from ottsliced.fitting.regression import GroundTruth

EPSILON = 1e-3
THRESHOLDS = (1e-2, 1e-3, 1e-4)
MAX_ITERATIONS = 30_000
_run = jax.jit(lambda solver, prob: solver(prob))


def ground_truth(batch, plain: ots.SlicedSinkhorn, threshold: float) -> GroundTruth:
  """Converged potentials of every pair from OTT's iterations in the ``SlicedSinkhorn`` loop."""
  solver = plain.replace(threshold=threshold)
  outs = [_run(solver, batch.problem(i)) for i in range(batch.num_pairs)]
  stack = lambda k: jax.numpy.stack([getattr(o, k) for o in outs])  # noqa: E731
  errs = [float(np.asarray(o.errors)[int(ots.num_iterations(o)) - 1]) for o in outs]
  return GroundTruth(
    stack("f"),
    stack("g"),
    stack("converged"),
    jax.numpy.asarray(errs),
    jax.numpy.asarray([int(ots.num_iterations(o)) for o in outs]),
  )


def main(num_train: int, num_test: int, meta_steps: int, num_projections: int, num_demand: int, cache: str) -> None:
  kw = {"epsilon": EPSILON, "num_demand": num_demand}
  train = sphere.supply_demand_pairs(num_train, seed=0, **kw).batch
  test = sphere.supply_demand_pairs(num_test, seed=999, **kw).batch
  theta = ots.directions(jax.random.key(0), train.x.shape[-1], num_projections)
  plain = ots.SlicedSinkhorn(theta, (), anderson_memory=0, threshold=1e-4, max_iterations=MAX_ITERATIONS)
  print(f"train {train.num_pairs} pairs, test {test.num_pairs} pairs, {train.shape}, eps {EPSILON:g}", flush=True)

  t0 = time.perf_counter()
  if cache and os.path.exists(cache):
    with np.load(cache) as z:
      truth, truth_s = GroundTruth(*(jax.numpy.asarray(z[k]) for k in GroundTruth._fields)), float(z["seconds"])
  else:
    truth = ground_truth(train, plain, 1e-4)
    truth_s = time.perf_counter() - t0
    if cache:
      np.savez(cache, seconds=truth_s, **{k: np.asarray(v) for k, v in truth._asdict().items()})
  its = np.asarray(truth.n_iters)
  print(
    f"ground truth to 1e-4: {truth_s:.0f} s, iterations {its.min()}-{its.max()}, converged "
    f"{int(np.asarray(truth.converged).sum())}/{train.num_pairs}",
    flush=True,
  )
  t0 = time.perf_counter()
  ra = ots.fit_ra(train, theta=theta, ridge=0.05, truth=truth, threshold=1e-4, progress=False)
  ra_s = time.perf_counter() - t0 + truth_s
  ra = ra.bind(test.x, test.y)

  t0 = time.perf_counter()
  meta = baselines.fit_meta_ot(
    train,
    hidden=(512, 512, 512),
    steps=meta_steps,
    batch_size=8,
    learning_rate=1e-3,
    rng=jax.random.key(0),
    progress=False,
  )
  meta_s = time.perf_counter() - t0
  curve = meta.losses
  marks = np.unique(np.linspace(0, meta_steps, 6).astype(int))[1:]
  smooth = ", ".join(f"{k}: {curve[max(0, k - max(meta_steps // 20, 1)) : k].mean():.4g}" for k in marks)
  print(f"Meta OT: {meta_steps} steps of 8 pairs in {meta_s:.0f} s; loss (mean of the last 5 %): {smooth}", flush=True)

  starts = {
    "zeros": None,
    "OTT Gaussian": initializers.GaussianInitializer(),
    f"Meta OT ({meta_steps} × 8)": meta.initializer,
    "RA-OT": ra,
  }
  solvers = {name: plain.replace(initializer=ini) for name, ini in starts.items() if name != "RA-OT"}
  solvers["RA-OT"] = ots.SlicedSinkhorn.from_initializer(ra, (), anderson_memory=0, max_iterations=MAX_ITERATIONS)
  solvers["zeros + corrections"] = ots.SlicedSinkhorn(theta, anderson_memory=0, max_iterations=MAX_ITERATIONS)
  solvers["RA-OT + corrections"] = ots.SlicedSinkhorn.from_initializer(
    ra, anderson_memory=0, max_iterations=MAX_ITERATIONS
  )
  solvers["zeros + Anderson (no corrections)"] = ots.SlicedSinkhorn(theta, (), max_iterations=MAX_ITERATIONS)

  counts = {name: [] for name in solvers}
  secs = {name: {t: [] for t in (1e-2, 1e-4)} for name in solvers}
  compiled = {}
  for i in range(test.num_pairs):
    prob = test.problem(i)
    for name, solver in solvers.items():
      for t in (1e-2, 1e-4):
        fixed = solver.replace(threshold=t)
        if (name, t) not in compiled:  # compiled ahead of time: no warm-up solve
          compiled[name, t] = _run.lower(fixed, prob).compile()
        t0 = time.perf_counter()
        out = compiled[name, t](fixed, prob)
        jax.block_until_ready(out.f)
        secs[name][t].append(time.perf_counter() - t0)
      errors = np.asarray(out.errors)
      counts[name].append([int(iterations_to(errors[None], t)[0]) for t in THRESHOLDS])
    print(f"pair {i}: " + ", ".join(f"{k} {v[-1]}" for k, v in counts.items()), flush=True)

  ott_solver = sinkhorn.Sinkhorn(threshold=1e-2, inner_iterations=1, max_iterations=MAX_ITERATIONS)
  ott_run = jax.jit(lambda prob: ott_solver(prob))
  prob = test.problem(0)
  jax.block_until_ready(ott_run(prob).f)
  t0 = time.perf_counter()
  ott_out = ott_run(prob)
  jax.block_until_ready(ott_out.f)
  ott_s = time.perf_counter() - t0
  ott_its = int(iterations_to(np.asarray(ott_out.errors)[None], 1e-2)[0])
  ours_its = counts["zeros"][0][0]
  print(
    f"OTT Sinkhorn from zeros, test pair 0 to 1e-2: {ott_its} iterations in {ott_s:.1f} s "
    f"(the loop: {ours_its} iterations in {secs['zeros'][1e-2][0]:.1f} s)"
  )

  fits = {"RA-OT": (ra_s, num_projections), f"Meta OT ({meta_steps} × 8)": (meta_s, meta.num_params)}
  zeros = np.mean(counts["zeros"], axis=0)
  print(
    "\n| start | iterations to 1e-2 | 1e-3 | 1e-4 | × zeros (1e-2 / 1e-3 / 1e-4) | s to 1e-2 (× zeros) | "
    "s to 1e-4 (× zeros) | parameters | fit s |"
  )
  print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
  z2, z4 = np.median(secs["zeros"][1e-2]), np.median(secs["zeros"][1e-4])
  for name in solvers:
    its = np.mean(counts[name], axis=0)
    ratio = " / ".join(f"{v / z:.2f}" for z, v in zip(zeros, its))
    s2, s4 = np.median(secs[name][1e-2]), np.median(secs[name][1e-4])
    fit_s, params = fits.get(name.split(" + ")[0], (None, 0))
    fit = "–" if fit_s is None else f"{fit_s:.0f}"
    print(
      f"| {name} | {its[0]:.0f} | {its[1]:.0f} | {its[2]:.0f} | {ratio} | {s2:.1f} ({s2 / z2:.2f}) | "
      f"{s4:.1f} ({s4 / z4:.2f}) | {params:,} | {fit} |"
    )


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--train", type=int, default=30, help="training pairs (the same for every method)")
  parser.add_argument("--test", type=int, default=10, help="test pairs (Meta OT's protocol: 10)")
  parser.add_argument("--meta-steps", type=int, default=5000, help="Meta OT Adam steps of 8 pairs")
  parser.add_argument("--num-projections", type=int, default=32, help="L")
  parser.add_argument("--num-demand", type=int, default=10_000, help="demand locations (a smaller one: a smoke run)")
  parser.add_argument("--truth-cache", default="", help="an .npz to keep the training ground truth in (reused)")
  args = parser.parse_args()
  main(args.train, args.test, args.meta_steps, args.num_projections, args.num_demand, args.truth_cache)
