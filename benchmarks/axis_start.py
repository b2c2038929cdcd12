"""Where Newton should start without sweeps: the axis start against the annealed start, per pair, with its signal.

Run: ``python benchmarks/axis_start.py`` (about 6 minutes on a 2-core CPU). This is the data behind
:data:`ottsliced.solvers.sliced_sinkhorn.AXIS_START_MAX_ROW_ERROR`. For each case, 3 pairs at two seeds (the suite's,
0, and 77), to 1e-2, 7 repeats per pair with the two solvers alternated, one line per pair::

  signal  axis/annealed  annealed ms  axis ms  (iterations)  case

- ``signal``: the row L1 error of the axis potential's plan after ``g = T_b f`` (the solver's check);
- ``annealed``: :class:`~ottsliced.SlicedSinkhorn` never taking the axis start in place of the sweeps (the
  threshold patched to -1 while it compiles): sweeps, the stage below a fiftieth of the mean cost, Newton;
- ``axis``: always taking it (threshold patched to +inf): Newton from the axis start, no sweep, no stage.

Pairs whose signal is above 1.2 are skipped (the axis start loses there). The shipped threshold takes the axis
start where ``signal`` is at most 0.75.
"""

import statistics
import time

import jax
import jax.numpy as jnp
from ott.geometry import pointcloud
from side_by_side import compiled_with

from ottsliced.experiments import solvers as bench
from ottsliced.solvers import newton, sliced_sinkhorn

CASES = []
for _seed in (0, 77):
  CASES += [{"data": "color", "n": 500, "epsilon": e, "relative": False, "seed": _seed} for e in (5e-3, 2e-3, 1e-3)]
  CASES += [{"data": "photos", "n": 28, "epsilon": e, "relative": False, "seed": _seed} for e in (1e-2, 3e-3, 1e-3)]
  CASES += [{"data": "multires", "epsilon": e, "relative": False, "seed": _seed} for e in (3e-3, 1e-3)]
  CASES += [{"data": "mnist", "n": 28, "epsilon": e, "relative": False, "seed": _seed} for e in (3e-3, 1e-3)]
  CASES += [{"data": "flow", "n": 1024, "epsilon": e, "seed": _seed} for e in (1e-2, 3e-3)]
  CASES += [{"data": "gmm", "n": 1000, "d": d, "epsilon": e, "seed": _seed} for d in (2, 3) for e in (1e-2, 3e-3)]


@jax.jit
def axis_row_error(x, y, a, b, eps):
  """The solver's signal: the row L1 error of the plan of ``(f, T_b f)``, ``f`` the axis potential."""
  geom = pointcloud.PointCloud(x, y, epsilon=eps)
  f = sliced_sinkhorn.axis_potential(geom, a, b)
  if f is None:
    return jnp.asarray(jnp.inf, x.dtype)
  _, rows = newton.column_update_rows(geom.cost_matrix, b, f, eps)
  return jnp.sum(jnp.where(a > 0, jnp.abs(rows - a), 0.0))


def _compiled(name, threshold, pairs, tol):
  method = bench._ours_method(name, None, 0, 20_000)
  return compiled_with(sliced_sinkhorn, {"AXIS_START_MAX_ROW_ERROR": threshold}, method, pairs, tol)


def main(repeats: int = 7, max_signal: float = 1.2) -> None:
  tol = jnp.float32(1e-2)
  for spec in CASES:
    case = bench.CaseConfig(**spec)
    pairs = bench.make_pairs(case, 3, case.seed)
    methods = [_compiled("annealed", -1.0, pairs, tol), _compiled("axis", float("inf"), pairs, tol)]
    for i, p in enumerate(pairs):
      signal = float(axis_row_error(*(jnp.asarray(v) for v in (p.x, p.y, p.a, p.b)), jnp.float32(p.epsilon)))
      if not signal <= max_signal:
        continue
      seconds, iterations = {m.name: [] for m in methods}, {}
      for rep in range(repeats):
        for m in methods if rep % 2 else methods[::-1]:
          args = m.prepare(p)
          t0 = time.perf_counter()
          out = jax.block_until_ready(m.solve(*args, tol))
          seconds[m.name].append(time.perf_counter() - t0)
          iterations[m.name] = int(out[2])
      old, new = (statistics.median(seconds[m.name]) for m in methods)
      print(
        f"{signal:.3f} {new / old:5.2f} {1e3 * old:7.2f} {1e3 * new:7.2f} "
        f"({iterations['annealed']}/{iterations['axis']})  {case.label()} seed {case.seed} pair {i}",
        flush=True,
      )


if __name__ == "__main__":
  main()
