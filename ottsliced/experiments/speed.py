"""Wall time to a tolerance, prediction included: every start with every solver, one pair and batched.

The question a user asks before keeping an initializer is whether their OT gets
faster, in wall time, than what they would run otherwise: plain Sinkhorn from
zeros, or OTT's accelerated Sinkhorn (Anderson acceleration, momentum,
epsilon scaling). :func:`measure` answers it side by side, in one process:

- **Rows** are ``(start, solver)`` pairs: every start (zeros, Gaussian, Meta OT,
  RA-OT, OA-OT, ...) with plain Sinkhorn, and the starts named in
  ``accelerated_starts`` with each accelerated solver (a warm start combines
  with them).
- **Iterations** per pair to each tolerance come from one solve of every test
  pair per row (``inner_iterations=1``; the error trace gives every tolerance).
- **Wall time** is that of :func:`ottsliced.solve_batch` (OTT's Sinkhorn, each
  pair stopping at its own iteration count, prediction and sorting of unbound
  supports included) to each tolerance: for one pair (``B = 1``, on
  ``single_pairs`` test pairs, each timed) and for a batch of ``batch`` pairs
  (divided by ``batch``). Every call is compiled and warmed up first; then the
  calls of all rows run in turn, ``repeats`` times (interleaved, so that a
  slow spell of the machine hits every row alike), and each cell is a median.
  The noise column is the median, over cells, of the interquartile range of
  the repeats divided by their median.
"""

import dataclasses
import time
from typing import Any, Dict, List, Optional, Tuple

import jax
import numpy as np
from ott.solvers.linear import acceleration
from tqdm.auto import tqdm

from ottsliced.initializers.sliced_initializer import SlicedInitializer
from ottsliced.problems.batch import ProblemBatch
from ottsliced.sliced.directions import directions
from ottsliced.solvers.batch import solve_batch
from ottsliced.solvers.sliced_sinkhorn import DEFAULT_STEPS, SlicedSinkhorn

__all__ = [
  "FITTED_NAMES",
  "SpeedConfig",
  "correction_directions",
  "format_speed",
  "measure",
  "sliced_solver",
  "solvers",
]


FITTED_NAMES = {"regression": "regression-fitted", "sweeps": "sweep-fitted"}


@dataclasses.dataclass(frozen=True)
class SpeedConfig:
  """What :func:`measure` times.

  Attributes:
    thresholds: the timed tolerances (L1 marginal error), e.g. ``[1e-2, 1e-3]``.
    single_pairs: test pairs timed one at a time (``B = 1``).
    batch: the first ``batch`` test pairs timed in one call.
    repeats: interleaved repeats per cell (medians).
    anderson_memory: OTT's ``AndersonAcceleration(memory=...)``; 0 skips it.
    momentum: OTT's ``Momentum(value=...)``, a fixed over-relaxation; 0 skips it.
    epsilon_scaling: ``(init, decay)`` of OTT's epsilon scheduler; empty skips it.
    accelerated_starts: starts run with every accelerated solver too.
    sliced_solver: also run those starts with :class:`ottsliced.SlicedSinkhorn`:
      without corrections (OTT's iterations, errors read for free), with the
      guarded corrections of ``sliced_steps``, and with them followed by
      Anderson acceleration of memory ``anderson_memory`` (when not 0).
    sliced_steps: the corrections' step sizes.
    counted_thresholds: tighter tolerances whose iterations are counted (from
      the same solves), not timed, e.g. ``[1e-4]``.
    fitted_corrections: ``K`` > 0 also runs the accelerated starts with ``K``
      corrections whose per-direction coefficients are fitted on the training
      pairs (:func:`ottsliced.fitting.corrections.fit_correction_steps`), with and
      without Anderson; 0 skips them.
    fitted_methods: how those coefficients are fitted, one row pair each:
      ``"regression"`` (of the potential error left) and/or ``"sweeps"``
      (through the next iterations, differentiated).
  """

  thresholds: Tuple[float, ...]
  single_pairs: int
  batch: int
  repeats: int
  anderson_memory: int
  momentum: float
  epsilon_scaling: Tuple[float, ...]
  accelerated_starts: Tuple[str, ...]
  sliced_solver: bool = True
  sliced_steps: Tuple[float, ...] = DEFAULT_STEPS
  counted_thresholds: Tuple[float, ...] = ()
  fitted_corrections: int = 0
  fitted_methods: Tuple[str, ...] = ("regression",)

  def __post_init__(self):
    if not self.fitted_methods or not set(self.fitted_methods) <= {"regression", "sweeps"}:
      raise ValueError("speed.fitted_methods must list 'regression' and/or 'sweeps'")
    if not self.thresholds or min(self.thresholds) <= 0:
      raise ValueError("speed.thresholds must be a non-empty list of positive numbers")
    if self.counted_thresholds and min(self.counted_thresholds) <= 0:
      raise ValueError("speed.counted_thresholds must be positive numbers")
    if min(self.single_pairs, self.batch, self.repeats) < 1:
      raise ValueError("speed.single_pairs, speed.batch and speed.repeats must be >= 1")
    if self.fitted_corrections < 0:
      raise ValueError("speed.fitted_corrections must be >= 0 (0 skips)")
    if self.anderson_memory < 0 or self.momentum < 0:
      raise ValueError("speed.anderson_memory and speed.momentum must be >= 0 (0 skips)")
    if self.epsilon_scaling and (len(self.epsilon_scaling) != 2 or self.epsilon_scaling[0] < 1):
      raise ValueError("speed.epsilon_scaling must be [] or [init >= 1, decay in (0, 1]]")


def solvers(cfg: SpeedConfig) -> Dict[str, Dict[str, Any]]:
  """The solvers as :func:`ottsliced.solve_batch` keyword arguments, plain Sinkhorn first.

  ``"sliced": (steps, memory)`` rows are :class:`SlicedSinkhorn` runs;
  ``steps="fitted:<method>"`` takes each start's coefficients fitted by that method.
  """
  out: Dict[str, Dict[str, Any]] = {"Sinkhorn": {}}
  if cfg.anderson_memory:
    out[f"Anderson (m={cfg.anderson_memory})"] = {
      "anderson": acceleration.AndersonAcceleration(memory=cfg.anderson_memory)
    }
  if cfg.momentum:
    out[f"momentum ({cfg.momentum:g})"] = {"momentum": acceleration.Momentum(value=cfg.momentum)}
  if cfg.epsilon_scaling:
    init, decay = cfg.epsilon_scaling
    out[f"ε-scaling ({init:g}, {decay:g})"] = {"epsilon_scaling": (float(init), float(decay))}
  if cfg.sliced_solver:
    steps = tuple(cfg.sliced_steps)
    names = ", ".join(f"{s:g}" for s in steps)
    out["ottsliced loop, no correction"] = {"sliced": ((), 0)}
    out[f"sliced corrections ({names})"] = {"sliced": (steps, 0)}
    if cfg.anderson_memory:
      out[f"sliced corrections ({names}) + Anderson (m={cfg.anderson_memory})"] = {
        "sliced": (steps, cfg.anderson_memory)
      }
    for method in cfg.fitted_methods if cfg.fitted_corrections else ():
      name = f"{FITTED_NAMES[method]} corrections (K={cfg.fitted_corrections})"
      out[name] = {"sliced": (f"fitted:{method}", 0)}
      if cfg.anderson_memory:
        out[f"{name} + Anderson (m={cfg.anderson_memory})"] = {"sliced": (f"fitted:{method}", cfg.anderson_memory)}
  return out


def sliced_solver(ini: Any, steps: Any, memory: int, test: ProblemBatch, theta: Any) -> SlicedSinkhorn:
  """:class:`SlicedSinkhorn` from the start ``ini``: on a sliced model's directions and supports, else on ``theta``.

  ``steps``: step sizes or ``[K, L]`` coefficients (see :class:`SlicedSinkhorn`).
  """
  if isinstance(ini, SlicedInitializer):
    return SlicedSinkhorn.from_initializer(ini, steps, anderson_memory=memory)
  solver = SlicedSinkhorn(theta, steps, initializer=ini, anderson_memory=memory)
  return solver.bind(test.y) if test.shared_y and len(steps) else solver


def correction_directions(starts: Dict[str, Any], test: ProblemBatch) -> Any:
  """The directions the corrections use: the first sliced model's, else 16 fixed ones."""
  models = [m for m in starts.values() if isinstance(m, SlicedInitializer)]
  return models[0].theta if models else directions(jax.random.key(0), test.x.shape[-1], 16)


def _rows(
  starts: Dict[str, Any], cfg: SpeedConfig, test: ProblemBatch, fitted_steps: Dict[str, Any]
) -> List[Tuple[str, str, Any, Dict[str, Any]]]:
  theta = correction_directions(starts, test)
  rows = []
  for solver, kw in solvers(cfg).items():
    for start, ini in starts.items():
      if solver == "Sinkhorn" or start in cfg.accelerated_starts:
        if "sliced" in kw:
          steps, memory = kw["sliced"]
          if isinstance(steps, str):
            steps = fitted_steps.get(steps.split(":", 1)[1], {}).get(start)
            if steps is None:
              continue
          rows.append((start, solver, None, {"solver": sliced_solver(ini, steps, memory, test, theta)}))
        else:
          rows.append((start, solver, ini, kw))
  return rows


def _iterations_to(errors: np.ndarray, thresholds: Tuple[float, ...]) -> Dict[str, np.ndarray]:
  out = {}
  for t in thresholds:
    below = (errors >= 0) & (errors < t)
    hit = below.any(axis=1)
    out[f"{t:g}"] = np.where(hit, below.argmax(axis=1) + 1, errors.shape[1])
    out[f"{t:g}_not_converged"] = int((~hit).sum())
  return out


def _seconds(fn) -> float:
  t0 = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - t0


def measure(
  test: ProblemBatch,
  starts: Dict[str, Any],
  cfg: SpeedConfig,
  *,
  max_iterations: int,
  chunk_size: int = 10,
  progress: bool = True,
  fitted_steps: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
  """Iterations and wall time of every ``(start, solver)`` row (see the module docstring).

  Args:
    test: the test pairs.
    starts: ``{name: OTT initializer}``; ``"zeros"`` (``None`` or the default
      initializer) is the reference of every ratio and must be present.
    cfg: what to time.
    max_iterations: Sinkhorn's cap.
    chunk_size: test pairs per call when counting iterations.
    progress: progress bars.
    fitted_steps: ``{method: {start: [K, L] coefficients}}`` for the
      fitted-corrections rows (``cfg.fitted_corrections``, ``cfg.fitted_methods``),
      fitted from that start on the directions of :func:`correction_directions`;
      starts without are skipped.

  Returns:
    ``{"rows": [{"start", "solver", "iterations": {t: [B]}, "single_s": {t: [k]},
    "batched_s": {t: float}}], "noise": float, "single_pairs": k, "batch": B}``,
    seconds per pair.
  """
  if "zeros" not in starts:
    raise ValueError("`starts` needs a 'zeros' entry (the reference of the ratios).")
  rows = _rows(starts, cfg, test, fitted_steps or {})
  counted = tuple(t for t in cfg.counted_thresholds if t not in cfg.thresholds)
  tmin = min(cfg.thresholds + counted)
  common = {"inner_iterations": 1, "max_iterations": max_iterations}
  results = []
  for start, solver, ini, kw in tqdm(rows, desc="speed: iterations", disable=not progress):
    errors = []
    for i in range(0, test.num_pairs, chunk_size):
      part = test.take(np.arange(i, min(i + chunk_size, test.num_pairs)))
      errors.append(np.asarray(solve_batch(part, ini, threshold=tmin, **common, **kw).errors))
    iters = _iterations_to(np.concatenate(errors), cfg.thresholds + counted)
    results.append({"start": start, "solver": solver, "iterations": iters})

  singles = [test.take([i]) for i in range(min(cfg.single_pairs, test.num_pairs))]
  batched = test.take(np.arange(min(cfg.batch, test.num_pairs)))
  calls = []  # (row index, threshold, "single" k or "batched", fn)
  for r, (_, _, ini, kw) in enumerate(rows):
    for t in cfg.thresholds:
      run = lambda part, ini=ini, kw=kw, t=t: solve_batch(part, ini, threshold=t, **common, **kw)  # noqa: E731
      calls += [(r, t, k, lambda p=part, run=run: run(p)) for k, part in enumerate(singles)]
      calls.append((r, t, "batched", lambda run=run: run(batched)))
  for call in tqdm(calls, desc="speed: compile", disable=not progress):
    jax.block_until_ready(call[3]())
  times: Dict[Tuple[int, float, Any], List[float]] = {c[:3]: [] for c in calls}
  for _ in tqdm(range(cfg.repeats), desc="speed: interleaved repeats", disable=not progress):
    for r, t, k, fn in calls:
      times[(r, t, k)].append(_seconds(fn))
  spreads = []
  for r, res in enumerate(results):
    res["single_s"], res["batched_s"] = {}, {}
    for t in cfg.thresholds:
      key = f"{t:g}"
      res["single_s"][key] = np.asarray([np.median(times[(r, t, k)]) for k in range(len(singles))])
      res["batched_s"][key] = float(np.median(times[(r, t, "batched")])) / batched.num_pairs
      for k in [*range(len(singles)), "batched"]:
        v = np.asarray(times[(r, t, k)])
        q1, q3 = np.percentile(v, [25, 75])
        spreads.append((q3 - q1) / np.median(v))
  return {
    "rows": results,
    "noise": float(np.median(spreads)),
    "single_pairs": len(singles),
    "batch": batched.num_pairs,
    "thresholds": [float(t) for t in cfg.thresholds],
    "counted_thresholds": [float(t) for t in counted],
  }


def format_speed(speed: Dict[str, Any], plan_ms: Dict[str, Dict[str, float]]) -> str:
  """The speed table (Markdown), ratios to plain Sinkhorn from zeros, and the amortized plans' cost."""
  thresholds = speed["thresholds"]
  counted = speed.get("counted_thresholds", [])
  rows = speed["rows"]
  ref = next(r for r in rows if r["start"] == "zeros" and r["solver"] == "Sinkhorn")
  b = speed["batch"]
  lines = [
    f"**Wall time to the tolerance, prediction included** (`solve_batch`, each pair stopping at its own iteration "
    f"count): ms for one pair (mean over {speed['single_pairs']} pairs of the median of the repeats) and ms per pair "
    f"in a batch of {b}; ratios to plain Sinkhorn from zeros (below 1: faster). Noise: median interquartile range "
    f"of the repeats, {100 * speed['noise']:.0f} % of the median. A pair that does not reach the tolerance "
    f"(diverged, or stopped at the cap) counts at the cap in the mean iterations; it stops early in the timings "
    f"when it diverges.",
    "",
    "| start | solver | "
    + " | ".join(f"iters to {t:g} | ms 1 pair (×) | ms/pair B={b} (×)" for t in thresholds)
    + "".join(f" | iters to {t:g} (not timed)" for t in counted)
    + " |",
    "|---|---|" + "---:|---:|---:|" * len(thresholds) + "---:|" * len(counted),
  ]
  for r in rows:
    cells = []
    for t in thresholds:
      k = f"{t:g}"
      it = np.asarray(r["iterations"][k])
      nc = r["iterations"][f"{k}_not_converged"]
      s1, s0 = float(np.mean(r["single_s"][k])), float(np.mean(ref["single_s"][k]))
      bb, b0 = r["batched_s"][k], ref["batched_s"][k]
      cap = f" ({nc} not converged)" if nc else ""
      cells.append(f"{it.mean():.1f}{cap} | {1e3 * s1:.2f} ({s1 / s0:.2f}) | {1e3 * bb:.2f} ({bb / b0:.2f})")
    for t in counted:
      k = f"{t:g}"
      nc = r["iterations"][f"{k}_not_converged"]
      it0 = np.asarray(ref["iterations"][k]).mean()
      it = np.asarray(r["iterations"][k]).mean()
      cells.append(f"{it:.1f} ({it0 / it:.1f}× fewer)" + (f" ({nc} not converged)" if nc else ""))
    lines.append(f"| {r['start']} | {r['solver']} | " + " | ".join(cells) + " |")
  if plan_ms:
    lines += ["", "Amortized plan, no Sinkhorn iteration (prediction + two c-transforms; accuracy in the table above):"]
    for name, ms in plan_ms.items():
      lines.append(f"- {name}: {ms['single']:.2f} ms for one pair, {ms['batched_per_pair']:.2f} ms per pair batched.")
  return "\n".join(lines)
