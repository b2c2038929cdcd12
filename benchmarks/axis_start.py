"""The axis start without annealing against the default start, per pair: an experiment toward an in-solve choice.

Run: ``python benchmarks/axis_start.py`` (about 4 minutes on a 2-core CPU). For each case, the suite's 3 pairs
(``ottsliced.experiments.solvers``), to 1e-2, 5 repeats per pair with the two solvers alternated, median ms and
iterations, and one candidate signal: the row L1 error of the axis potential's plan after ``g = T_b f``.

- ``default``: :class:`~ottsliced.SlicedSinkhorn` as shipped (sweeps, the 4-epsilon stage below a fiftieth of the
  mean cost, Newton);
- ``axis``: the same with no sweep and no stage (``annealing.paced_schedule`` patched to zero sweeps while it
  compiles), so Newton starts from :func:`~ottsliced.solvers.sliced_sinkhorn.axis_potential`.
"""

import statistics
import time

import jax
import jax.numpy as jnp
from ott.geometry import pointcloud

from ottsliced.experiments import solvers as bench
from ottsliced.solvers import annealing, sliced_sinkhorn

CASES = (
  {"data": "color", "n": 500, "epsilon": 2e-2, "relative": False},
  {"data": "color", "n": 500, "epsilon": 5e-3, "relative": False},
  {"data": "color", "n": 500, "epsilon": 1e-3, "relative": False},
  {"data": "gmm", "n": 1000, "d": 3, "epsilon": 0.05},
  {"data": "gmm", "n": 1000, "d": 3, "epsilon": 0.02},
  {"data": "gmm", "n": 1000, "d": 3, "epsilon": 0.01},
  {"data": "gmm", "n": 1000, "d": 3, "epsilon": 1e-3},
  {"data": "gmm", "n": 1000, "d": 2, "epsilon": 0.01},
  {"data": "mnist", "n": 28, "epsilon": 1e-3, "relative": False},
)


@jax.jit
def axis_row_error(x, y, a, b, eps):
  """The row L1 error of the plan of ``(f, T_b f)``, ``f`` the axis potential."""
  geom = pointcloud.PointCloud(x, y, epsilon=eps)
  f = sliced_sinkhorn.axis_potential(geom, a, b)
  g = geom.update_potential(f, jnp.zeros_like(b), jnp.log(b), axis=0)
  return jnp.sum(jnp.abs(geom.transport_from_potentials(f, g).sum(1) - a))


def _no_sweeps(scale, eps, *args):
  return jnp.asarray(eps, scale.dtype), jnp.zeros((), jnp.int32), jnp.asarray(0.5, scale.dtype)


def main(repeats: int = 5) -> None:
  tol = jnp.float32(1e-2)
  for spec in CASES:
    case = bench.CaseConfig(**spec)
    pairs = bench.make_pairs(case, 3, case.seed)
    default = bench._ours_method("default", None, 0, 20_000)
    axis = bench._ours_method("axis", None, 0, 20_000)
    for p in pairs:  # compile: the axis variant with the schedule patched
      jax.block_until_ready(default.solve(*default.prepare(p), tol))
    paced, stage = annealing.paced_schedule, annealing.NEWTON_STAGE
    annealing.paced_schedule, annealing.NEWTON_STAGE = _no_sweeps, (stage[0], float("inf"), stage[2])
    try:
      for p in pairs:
        jax.block_until_ready(axis.solve(*axis.prepare(p), tol))
    finally:
      annealing.paced_schedule, annealing.NEWTON_STAGE = paced, stage
    print(case.label())
    for i, p in enumerate(pairs):
      seconds, iterations = {"default": [], "axis": []}, {}
      for rep in range(repeats):
        for m in (default, axis) if rep % 2 else (axis, default):
          args = m.prepare(p)
          t0 = time.perf_counter()
          out = jax.block_until_ready(m.solve(*args, tol))
          seconds[m.name].append(time.perf_counter() - t0)
          iterations[m.name] = int(out[2])
      err = float(axis_row_error(*(jnp.asarray(v) for v in (p.x, p.y, p.a, p.b)), jnp.float32(p.epsilon)))
      cells = [f"{k} {1e3 * statistics.median(v):6.2f} ms ({iterations[k]})" for k, v in seconds.items()]
      print(f"  pair {i}: axis start row error {err:.3f}  " + "  ".join(cells), flush=True)


if __name__ == "__main__":
  main()
