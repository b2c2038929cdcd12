"""Do sliced corrections pay in flow-matching couplings? Iterations and side-by-side wall times at epsilon = 2.

Run: ``python benchmarks/flow_corrections.py`` (about a minute on the 2-core CPU). On the flow configs' batches
(N(0, I) source; 8 Gaussians, moons and S-curve targets; uniform weights, squared Euclidean cost, epsilon 2,
threshold 1e-3) at B = 128, 256, 512, prints

* iterations: OTT's Sinkhorn read every iteration (``inner_iterations=1``), the training-free corrected solver
  (4 directions, the flow configs' ``sliced_directions``) without and with Anderson (memory 2), the same with
  ``stop_after_rejection=True`` (no correction after one the line search rejected), and the same loop with no
  correction (``steps=()``, Anderson only);
* wall ms of the whole coupling (solve + multinomial draw), the calls alternating 40 times each on the same
  batch: OTT's Sinkhorn as the flow runner calls it (``couple("sinkhorn")``), the ``sliced`` coupling, and the
  loop with no correction, with each one's ratio to OTT's Sinkhorn;
* the steps :func:`ottsliced.flow_matching.select_sliced_steps` picks on 3 other batches of the same size
  (what the flow configs' ``sliced_steps: auto`` does before training).
"""

import time

import jax
import numpy as np
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

from ottsliced import SlicedSinkhorn, directions
from ottsliced import flow_matching as fm

EPSILON, THRESHOLD, NUM_DIRECTIONS, REPEATS = 2.0, 1e-3, 4, 40
TOY_KW = {"scale": 5.0, "variance": 0.1, "moons_noise": 0.2, "scurve_noise": 0.1}


def _problem(x0, x1):
  return linear_problem.LinearProblem(pointcloud.PointCloud(x0, x1, epsilon=EPSILON))


def _solvers():
  theta = directions(jax.random.key(0), 2, NUM_DIRECTIONS)
  return {
    "corrections, no Anderson": SlicedSinkhorn(theta, threshold=THRESHOLD, anderson_memory=0),
    "corrections + Anderson": SlicedSinkhorn(theta, threshold=THRESHOLD),
    "stop after rejection": SlicedSinkhorn(theta, threshold=THRESHOLD, stop_after_rejection=True),
    "no correction (Anderson)": SlicedSinkhorn(theta, (), threshold=THRESHOLD),
  }


def _iterations(out) -> int:
  return int(np.sum(np.asarray(out.errors) != -1)) * int(out.inner_iterations)


def _loop_coupling(solver):
  @jax.jit
  def couple(x0, x1, key):
    prob = _problem(x0, x1)
    out = solver(prob)
    return fm.draw_pairs(key, out.f, out.g, prob.geom.cost_matrix, EPSILON, "multinomial")

  return couple


def main() -> None:
  solvers = _solvers()
  plain = jax.jit(lambda p: sinkhorn.Sinkhorn(threshold=THRESHOLD, inner_iterations=1)(p))
  loop = _loop_coupling(solvers["no correction (Anderson)"])
  for toy in ("8gaussians", "moons", "scurve"):
    for size in (128, 256, 512):
      k0, k1, kc = jax.random.split(jax.random.key(size), 3)
      x0, x1 = fm.sample_toy("gaussian", k0, size, **TOY_KW), fm.sample_toy(toy, k1, size, **TOY_KW)
      prob = _problem(x0, x1)
      its = {"Sinkhorn": _iterations(plain(prob))}
      its.update({name: _iterations(jax.jit(s.__call__)(prob)) for name, s in solvers.items()})
      calls = {
        "Sinkhorn": lambda k, x0=x0, x1=x1: fm.couple(
          "sinkhorn", x0, x1, k, epsilon=EPSILON, sinkhorn_threshold=THRESHOLD
        ),
        "sliced": lambda k, x0=x0, x1=x1: fm.couple(
          "sliced", x0, x1, k, epsilon=EPSILON, sinkhorn_threshold=THRESHOLD, sliced_directions=NUM_DIRECTIONS
        ),
        "no correction": lambda k, x0=x0, x1=x1: loop(x0, x1, k),
      }
      for call in calls.values():
        jax.block_until_ready(call(kc))
      times = {name: [] for name in calls}
      for r in range(REPEATS):
        k = jax.random.fold_in(kc, r)
        for name, call in calls.items():
          t0 = time.perf_counter()
          jax.block_until_ready(call(k))
          times[name].append(time.perf_counter() - t0)
      ms = {name: 1e3 * float(np.median(t)) for name, t in times.items()}
      cells = ", ".join(f"{n} {v:.2f} ({v / ms['Sinkhorn']:.2f})" for n, v in ms.items())
      keys = jax.random.split(jax.random.fold_in(kc, 1), 6)
      sel = fm.select_sliced_steps(
        [fm.sample_toy("gaussian", k, size, **TOY_KW) for k in keys[:3]],
        [fm.sample_toy(toy, k, size, **TOY_KW) for k in keys[3:]],
        epsilon=EPSILON,
        sinkhorn_threshold=THRESHOLD,
        sliced_directions=NUM_DIRECTIONS,
      )
      picked = list(sel.candidates[sel.best]["steps"])
      print(f"{toy:10s} B={size:4d}  iterations {its}\n{'':17s}ms (x OTT Sinkhorn): {cells}", flush=True)
      print(f"{'':17s}select_sliced_steps picks {picked} ({np.round(sel.ms, 3).tolist()} ms)", flush=True)


if __name__ == "__main__":
  main()
