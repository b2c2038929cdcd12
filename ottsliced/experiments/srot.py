r"""SROT against exact OT: where the sliced reference plan buys accuracy, and at what wall time.

SROT (:class:`~ottsliced.SROT`, arXiv 2604.23944) solves
:math:`\min_P \langle C,P\rangle + \varepsilon\,\mathrm{KL}(P\|Q)` with the
reference :math:`Q = (1-s)\,Q_\theta + s\,a\otimes b`; entropic OT is
:math:`Q = a\otimes b`. Its point is a plan closer to the unregularised one at
the same :math:`\varepsilon`. This task measures that against the exact plan.

Protocol, for every case (a family of cloud pairs), pair and epsilon:

- **Cases**: Gaussian-mixture pairs in each of ``gmm_dims``
  (:func:`ottsliced.data.clouds.gaussian_mixture_pair`), colour transfer (the
  ``num_points``-colour k-means palettes of two random crops of scikit-image
  photographs, RGB points, cluster frequencies as weights) and digits
  (scikit-learn's 8x8 digits resampled to a ``digits_side`` grid, pixel
  centres as points, intensities as weights). With ``drop_zero_weights`` the
  atoms of weight 0 (blank pixels, empty k-means clusters) are removed;
  otherwise they stay with weight 0.
  Squared Euclidean cost, no rescaling.
- **Epsilon**: relative to the pair's mean cost (the unweighted mean of its
  ``[n, m]`` cost matrix, OTT's ``relative_epsilon="mean"``).
- **Exact OT**: POT's network simplex ``ot.emd`` in float64 (the ``flow``
  extra). Its plan :math:`P^\star` may not be unique; the cost is.
- **Methods**: OTT's ``Sinkhorn`` (entropic OT), :class:`~ottsliced.SROT` at
  every ``(smoothing, num_directions)`` of the config, and the sliced plan
  :math:`Q_\theta` alone (:func:`ottsliced.sliced.sliced_plan`, no epsilon) with
  the same directions as SROT. All with the same ``threshold`` (L1 error of the
  source marginal), ``max_iterations`` and ``inner_iterations``.
- **Metrics** per pair: relative cost gap :math:`(\langle C,P\rangle -
  \mathrm{OT})/\mathrm{OT}` (the primary metric; in float64 on the host, of
  the dense plan rounded to an exact coupling by :func:`round_to_coupling`, so
  no gap is negative by more than rounding: a plan within ``threshold`` of its
  marginals could otherwise undercut OT by about ``threshold * max C``), plan
  L1 error :math:`\|P - P^\star\|_1` (same rounded plan), the raw plan's
  marginal L1 error, iterations, converged, and wall time: median over ``repeats`` calls of the
  jit-compiled solve (``block_until_ready``), after one untimed call that also
  compiles (epsilon is an argument, so one compilation per case and method).
- **Entropic OT at equal wall time**: for each SROT run, the smallest gap of a
  *converged* entropic run on the same pair (over ``relative_epsilons`` and
  the finer ``entropic_extra_epsilons``) whose median time is at most SROT's.
  SROT is worth its cost where its gap is below that number.

Summaries are medians over the pairs. ``float64: true`` runs the solvers
under ``jax.enable_x64(True)`` (inside the task only).
"""

import dataclasses
import functools
import os
import statistics
import time
from typing import Any, Dict, List, Literal, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn
from tqdm.auto import tqdm

from ottsliced.data import clouds, color, images
from ottsliced.experiments import figures
from ottsliced.experiments.timing import device_name, median_seconds
from ottsliced.sliced import directions, sliced_plan
from ottsliced.solvers.srot import SROT

__all__ = [
  "Case",
  "Config",
  "DataConfig",
  "Pair",
  "SolverConfig",
  "exact_plan",
  "format_table",
  "make_cases",
  "round_to_coupling",
  "run",
]

Kind = Literal["gmm", "color", "digits"]


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The cases and their pairs.

  Attributes:
    kinds: which case families run: ``gmm`` (one case per ``gmm_dims``), ``color``, ``digits``.
    gmm_dims: dimensions of the Gaussian-mixture cases.
    gmm_components: mixture components per side.
    num_points: atoms per side of the Gaussian mixtures and colours per palette.
    color_images: scikit-image photographs the crops come from (empty: all).
    color_crop_size: crop side in pixels (at least ``num_points`` pixels).
    color_kmeans_n_init: k-means restarts per palette.
    digits_side: grid side of the digits (``digits_side ** 2`` atoms per side).
    num_pairs: pairs per case.
    seed: seed of the pairs (mixtures: ``seed + k``; crops and digits: one draw).
    drop_zero_weights: remove the atoms of weight 0 (empty k-means clusters, blank pixels) from every pair;
      pairs then differ in size (one compilation each).
  """

  kinds: Tuple[Kind, ...]
  gmm_dims: Tuple[int, ...]
  gmm_components: int
  num_points: int
  color_images: Tuple[str, ...]
  color_crop_size: int
  color_kmeans_n_init: int
  digits_side: int
  num_pairs: int
  seed: int
  drop_zero_weights: bool

  def __post_init__(self):
    if not self.kinds or len(set(self.kinds)) != len(self.kinds):
      raise ValueError(f"kinds must be a non-empty list without repeats, got {list(self.kinds)}")
    if "gmm" in self.kinds and (not self.gmm_dims or min(self.gmm_dims) < 1):
      raise ValueError(f"gmm_dims must be a non-empty list of dimensions >= 1, got {list(self.gmm_dims)}")
    if self.num_points < 2 or self.num_pairs < 1 or self.gmm_components < 1 or self.color_kmeans_n_init < 1:
      raise ValueError("num_points must be >= 2; num_pairs, gmm_components and color_kmeans_n_init >= 1")
    if self.color_crop_size**2 < self.num_points:
      raise ValueError(f"a {self.color_crop_size}-pixel crop has fewer pixels than num_points={self.num_points}")
    if self.digits_side < 2:
      raise ValueError(f"digits_side must be >= 2, got {self.digits_side}")


@dataclasses.dataclass(frozen=True)
class SolverConfig:
  """The epsilon grid and the solvers' settings.

  Attributes:
    relative_epsilons: epsilon / mean cost, every method.
    entropic_extra_epsilons: epsilon / mean cost, entropic OT only (finer values for the equal-time comparison).
    smoothings: SROT's ``s`` values, in ``[0, 1)`` (``s = 1`` is entropic OT, measured as such).
    num_directions: SROT's ``L`` values (every pair of ``smoothings`` x ``num_directions`` runs).
    direction_seed: PRNG seed of the directions (shared by SROT and the sliced plan of the same ``L``).
    threshold: L1 error of the source marginal to stop at, every solver.
    max_iterations: iteration cap, every solver.
    inner_iterations: iterations between error checks, every solver.
  """

  relative_epsilons: Tuple[float, ...]
  entropic_extra_epsilons: Tuple[float, ...]
  smoothings: Tuple[float, ...]
  num_directions: Tuple[int, ...]
  direction_seed: int
  threshold: float
  max_iterations: int
  inner_iterations: int

  def __post_init__(self):
    if not self.relative_epsilons or min(self.relative_epsilons + self.entropic_extra_epsilons) <= 0:
      raise ValueError("relative_epsilons must be a non-empty list of positive numbers (and the extras positive)")
    if not self.smoothings or not all(0.0 <= s < 1.0 for s in self.smoothings):
      raise ValueError(
        f"smoothings must be in [0, 1), got {list(self.smoothings)} (s = 1 is entropic OT, measured as such)"
      )
    if not self.num_directions or min(self.num_directions) < 1:
      raise ValueError(f"num_directions must be a non-empty list of integers >= 1, got {list(self.num_directions)}")
    if not self.threshold > 0 or self.inner_iterations < 1 or self.max_iterations < self.inner_iterations:
      raise ValueError("need threshold > 0 and 1 <= inner_iterations <= max_iterations")


@dataclasses.dataclass(frozen=True)
class Config:
  """The SROT accuracy task.

  Attributes:
    data: the cases.
    solver: epsilons and solver settings.
    repeats: timed calls per measurement (median), after one untimed call.
    float64: run the solvers in float64 (``jax.enable_x64`` inside the task).
    figure: write ``gaps.png``.
  """

  data: DataConfig
  solver: SolverConfig
  repeats: int
  float64: bool
  figure: bool

  def __post_init__(self):
    if self.repeats < 1:
      raise ValueError(f"repeats must be >= 1, got {self.repeats}")


class Pair(NamedTuple):
  """One OT problem, float64 host arrays.

  Attributes:
    x: source points ``[n, d]``.
    y: target points ``[m, d]``.
    a: source weights ``[n]`` (sum 1, zeros allowed).
    b: target weights ``[m]`` (sum 1, zeros allowed).
  """

  x: np.ndarray
  y: np.ndarray
  a: np.ndarray
  b: np.ndarray


class Case(NamedTuple):
  """A family of pairs of one shape.

  Attributes:
    name: label, e.g. ``"gmm d=8"``.
    kind: ``gmm``, ``color`` or ``digits``.
    pairs: the problems.
  """

  name: str
  kind: str
  pairs: List[Pair]


def _pair(x: Any, y: Any, a: Any, b: Any) -> Pair:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return Pair(np.asarray(x, np.float64), np.asarray(y, np.float64), a / a.sum(), b / b.sum())


def _drop_zeros(pair: Pair) -> Pair:
  ia, ib = pair.a > 0, pair.b > 0
  return Pair(pair.x[ia], pair.y[ib], pair.a[ia], pair.b[ib])


def make_cases(cfg: DataConfig, progress: bool = True) -> List[Case]:
  """The cases of ``cfg``, in the order of ``kinds`` (``gmm``: one case per dimension)."""
  cases = _make_cases(cfg, progress)
  if cfg.drop_zero_weights:
    cases = [c._replace(pairs=[_drop_zeros(p) for p in c.pairs]) for c in cases]
  return cases


def _make_cases(cfg: DataConfig, progress: bool) -> List[Case]:
  cases = []
  for kind in cfg.kinds:
    if kind == "gmm":
      for dim in cfg.gmm_dims:
        pairs = [
          _pair(*clouds.gaussian_mixture_pair(cfg.seed + k, cfg.num_points, dim, components=cfg.gmm_components))
          for k in range(cfg.num_pairs)
        ]
        cases.append(Case(f"gmm d={dim}", kind, pairs))
    elif kind == "color":
      imgs = color.load_images(list(cfg.color_images) or None)
      crops = color.random_crops(imgs, 2 * cfg.num_pairs, cfg.color_crop_size, seed=cfg.seed)
      pals = [
        color.palette(c, cfg.num_points, seed=cfg.seed, n_init=cfg.color_kmeans_n_init)
        for c in tqdm(crops, desc="palettes (k-means)", disable=not progress)
      ]
      pairs = [
        _pair(pals[2 * k].points, pals[2 * k + 1].points, pals[2 * k].weights, pals[2 * k + 1].weights)
        for k in range(cfg.num_pairs)
      ]
      cases.append(Case(f"colour ({cfg.num_points} colours)", kind, pairs))
    else:
      weights = images.load_digits(cfg.digits_side)
      grid = images.grid_points(cfg.digits_side)
      idx = np.random.default_rng(cfg.seed).choice(len(weights), size=2 * cfg.num_pairs, replace=False)
      pairs = [_pair(grid, grid, weights[idx[2 * k]], weights[idx[2 * k + 1]]) for k in range(cfg.num_pairs)]
      cases.append(Case(f"digits ({cfg.digits_side}x{cfg.digits_side} grid)", kind, pairs))
  return cases


def _ot():
  try:
    import ot
  except ImportError as err:  # pragma: no cover - exercised without the extra
    raise ImportError("the exact OT plans of the srot task need POT: pip install 'ottsliced[flow]'") from err
  return ot


def exact_plan(cost: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """An optimal plan ``[n, m]`` of the float64 problem (POT's network simplex; unique cost, maybe not plan).

  Raises:
    RuntimeError: the simplex stopped before optimality.
  """
  plan, log = _ot().emd(a, b, cost, numItermax=50_000_000, log=True)
  if log.get("result_code", 1) != 1:
    raise RuntimeError(f"POT's emd did not reach optimality: {log.get('warning')}")
  return np.asarray(plan, np.float64)


@functools.partial(jax.jit, static_argnames=("threshold", "max_iterations", "inner_iterations"))
def _entropic(x, y, a, b, epsilon, *, threshold: float, max_iterations: int, inner_iterations: int):
  geom = pointcloud.PointCloud(x, y, epsilon=epsilon)
  solver = sinkhorn.Sinkhorn(threshold=threshold, max_iterations=max_iterations, inner_iterations=inner_iterations)
  return solver(linear_problem.LinearProblem(geom, a, b))


@functools.partial(jax.jit, static_argnames=("smoothing", "threshold", "max_iterations", "inner_iterations"))
def _srot(
  x, y, a, b, epsilon, theta, *, smoothing: float, threshold: float, max_iterations: int, inner_iterations: int
):
  geom = pointcloud.PointCloud(x, y, epsilon=epsilon)
  solver = SROT(
    smoothing=smoothing,
    directions=theta,
    threshold=threshold,
    max_iterations=max_iterations,
    inner_iterations=inner_iterations,
  )
  return solver(linear_problem.LinearProblem(geom, a, b))


_sliced = jax.jit(sliced_plan)


class _Run(NamedTuple):
  """One method at one epsilon on one pair (host values)."""

  gap: float
  plan_l1: float
  marginal_error: float
  iterations: int
  converged: bool
  seconds: float
  check: float  # |<C, P> from the solver's own transport_cost - <C, P> on the host| / OT (SROT only, else 0)


def round_to_coupling(plan: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """The nearest-by-construction coupling of ``a`` and ``b`` (Altschuler, Weed and Rigollet 2017, Algorithm 2).

  Scales rows, then columns, down to their marginals and adds the missing mass as a rank-one plan; the result
  has marginals ``a`` and ``b`` exactly and differs from ``plan`` by at most twice its marginal L1 error.

  Args:
    plan: ``[n, m]`` non-negative plan with marginals close to ``a`` and ``b``.
    a: ``[n]`` source weights (sum 1).
    b: ``[m]`` target weights (sum 1).

  Returns:
    ``[n, m]`` coupling of ``a`` and ``b``.
  """
  rows = plan.sum(1)
  plan = plan * np.minimum(np.divide(a, rows, out=np.ones_like(a), where=rows > 0), 1.0)[:, None]
  cols = plan.sum(0)
  plan = plan * np.minimum(np.divide(b, cols, out=np.ones_like(b), where=cols > 0), 1.0)[None, :]
  err_a, err_b = a - plan.sum(1), b - plan.sum(0)
  missing = err_a.sum()
  return plan if missing <= 0 else plan + np.outer(err_a, err_b) / missing


def _measure(fn, plan_of, pair: Pair, cost: np.ndarray, exact: np.ndarray, ot_cost: float, repeats: int) -> _Run:
  """Call ``fn`` once (compiles on the first use), read its plan, then time ``repeats`` more calls.

  The gap and the plan error are those of the plan rounded to an exact coupling (:func:`round_to_coupling`),
  so no plan beats the exact cost by its marginal error; the raw plan's marginal error is kept.
  """
  out = jax.block_until_ready(fn())
  raw, iterations, converged, own_cost = plan_of(out)
  seconds = median_seconds(fn, repeats, warmup=False)
  marginal_error = float(np.abs(raw.sum(1) - pair.a).sum() + np.abs(raw.sum(0) - pair.b).sum())
  plan = round_to_coupling(raw, pair.a, pair.b)
  check = 0.0 if own_cost is None else abs(own_cost - float(np.sum(raw * cost))) / ot_cost
  gap = (float(np.sum(plan * cost)) - ot_cost) / ot_cost
  return _Run(gap, float(np.abs(plan - exact).sum()), marginal_error, iterations, converged, seconds, check)


def _ott_plan(out) -> Tuple[np.ndarray, int, bool, None]:
  return np.asarray(out.matrix, np.float64), int(out.n_iters), bool(out.converged), None


def _srot_plan(out) -> Tuple[np.ndarray, int, bool, float]:
  return np.asarray(out.matrix, np.float64), int(out.n_iters), bool(out.converged), float(out.transport_cost)


def _method_key(method: str, smoothing: Optional[float] = None, num_directions: Optional[int] = None) -> str:
  if method == "entropic":
    return "entropic"
  if method == "sliced":
    return f"sliced L={num_directions}"
  return f"SROT s={smoothing:g} L={num_directions}"


def _empty(method: str, relative_epsilon: Optional[float], **extra: Any) -> Dict[str, Any]:
  fields = ("gap", "plan_l1", "marginal_error", "iterations", "converged", "seconds", "transport_cost_check")
  return {"method": method, "relative_epsilon": relative_epsilon, **extra, **{f: [] for f in fields}}


def _append(entry: Dict[str, Any], run: _Run) -> None:
  entry["gap"].append(run.gap)
  entry["plan_l1"].append(run.plan_l1)
  entry["marginal_error"].append(run.marginal_error)
  entry["iterations"].append(run.iterations)
  entry["converged"].append(run.converged)
  entry["seconds"].append(run.seconds)
  entry["transport_cost_check"].append(run.check)


def _equal_time(runs: List[Dict[str, Any]]) -> None:
  """Add ``entropic_equal_time_gap`` / ``_epsilon`` (per pair, ``None`` where no entropic run was as fast)."""
  entropic = [r for r in runs if r["method"] == "entropic"]
  for r in runs:
    if r["method"] != "srot":
      continue
    gaps, epsilons = [], []
    for k, t in enumerate(r["seconds"]):
      fast = [e for e in entropic if e["converged"][k] and e["seconds"][k] <= t]
      best = min(fast, key=lambda e: e["gap"][k], default=None)
      gaps.append(None if best is None else best["gap"][k])
      epsilons.append(None if best is None else best["relative_epsilon"])
    r["entropic_equal_time_gap"] = gaps
    r["entropic_equal_time_epsilon"] = epsilons


def _median(values: Sequence[Any]) -> Optional[float]:
  """Median over pairs; ``None`` if a pair has no value."""
  if not values or any(v is None for v in values):
    return None
  return float(statistics.median(values))


def _summarise(runs: List[Dict[str, Any]]) -> None:
  for r in runs:
    r["summary"] = {
      "gap": _median(r["gap"]),
      "plan_l1": _median(r["plan_l1"]),
      "iterations": _median(r["iterations"]),
      "seconds": _median(r["seconds"]),
      "all_converged": all(r["converged"]),
    }
    if "entropic_equal_time_gap" in r:
      r["summary"]["entropic_equal_time_gap"] = _median(r["entropic_equal_time_gap"])


def _sliced_plan_of(out: Any, n: int, m: int) -> Tuple[np.ndarray, int, bool, None]:
  return np.asarray(out.todense(n, m), np.float64), 0, True, None


def _run_pair(
  pair: Pair,
  runs: Dict[str, Dict[str, Any]],
  cfg: Config,
  thetas: Dict[int, jax.Array],
  eps_all: Sequence[float],
  dtype: Any,
) -> Dict[str, Any]:
  """Exact OT, then every method on one pair; appends to ``runs`` and returns the pair's facts."""
  s = cfg.solver
  kw = {"threshold": s.threshold, "max_iterations": s.max_iterations, "inner_iterations": s.inner_iterations}
  x, y, a, b = (jnp.asarray(v, dtype) for v in pair)
  n, m = len(pair.a), len(pair.b)
  cost = np.sum((pair.x[:, None, :] - pair.y[None, :, :]) ** 2, axis=-1)
  t0 = time.perf_counter()
  exact = exact_plan(cost, pair.a, pair.b)
  emd_seconds = time.perf_counter() - t0
  ot_cost, mean_cost = float(np.sum(exact * cost)), float(cost.mean())
  measure = functools.partial(_measure, pair=pair, cost=cost, exact=exact, ot_cost=ot_cost, repeats=cfg.repeats)
  for eps in eps_all:
    fn = functools.partial(_entropic, x, y, a, b, jnp.asarray(eps * mean_cost, dtype), **kw)
    _append(runs[f"entropic@{eps}"], measure(fn, _ott_plan))
  for sm in s.smoothings:
    for L in s.num_directions:
      for eps in s.relative_epsilons:
        fn = functools.partial(_srot, x, y, a, b, jnp.asarray(eps * mean_cost, dtype), thetas[L], smoothing=sm, **kw)
        _append(runs[f"srot {sm} {L}@{eps}"], measure(fn, _srot_plan))
  for L in s.num_directions:
    fn = functools.partial(_sliced, x, y, a, b, thetas[L])
    _append(runs[f"sliced {L}"], measure(fn, functools.partial(_sliced_plan_of, n=n, m=m)))
  return {"n": n, "m": m, "exact_cost": ot_cost, "mean_cost": mean_cost, "emd_seconds": emd_seconds}


def _run_case(case: Case, cfg: Config, dtype: Any, progress: bool) -> Dict[str, Any]:
  s = cfg.solver
  dim = case.pairs[0].x.shape[1]
  key = jax.random.key(s.direction_seed)
  thetas = {L: directions(key, dim, L, dtype) for L in s.num_directions}
  eps_all = sorted(set(s.relative_epsilons) | set(s.entropic_extra_epsilons), reverse=True)
  runs: Dict[str, Dict[str, Any]] = {}
  for eps in eps_all:
    runs[f"entropic@{eps}"] = _empty("entropic", eps, grid=eps in s.relative_epsilons)
  for sm in s.smoothings:
    for L in s.num_directions:
      for eps in s.relative_epsilons:
        runs[f"srot {sm} {L}@{eps}"] = _empty("srot", eps, smoothing=sm, num_directions=L)
  for L in s.num_directions:
    runs[f"sliced {L}"] = _empty("sliced", None, num_directions=L)
  pairs_info = [
    _run_pair(pair, runs, cfg, thetas, eps_all, dtype)
    for pair in tqdm(case.pairs, desc=case.name, disable=not progress)
  ]
  out = list(runs.values())
  _equal_time(out)
  _summarise(out)
  for r in out:
    r["label"] = _method_key(r["method"], r.get("smoothing"), r.get("num_directions"))
  return {"name": case.name, "kind": case.kind, "dim": dim, "pairs": pairs_info, "runs": out}


def run(config: Config, out_dir: str, progress: bool = True) -> Dict[str, Any]:
  """Build the cases, solve every pair exactly and with each method, compare; write ``gaps.png``."""
  _ot()  # fail before any work when POT is missing
  cases = make_cases(config.data, progress)
  if config.float64:
    with jax.enable_x64(True):
      results = [_run_case(c, config, jnp.float64, progress) for c in cases]
  else:
    results = [_run_case(c, config, jnp.float32, progress) for c in cases]
  metrics: Dict[str, Any] = {"device": device_name(), "cases": results, "figures": {}}
  if config.figure:
    path = os.path.join(out_dir, "gaps.png")
    figures.plot_gap_curves(_figure_series(results), path)
    metrics["figures"]["gaps"] = path
  return metrics


def _figure_series(cases: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
  """Per case: ``{label: (relative epsilons, median gaps, median seconds)}`` curves and sliced levels."""
  out: Dict[str, Dict[str, Any]] = {}
  for case in cases:
    curves: Dict[str, Tuple[List[float], List[float], List[float]]] = {}
    levels: Dict[str, Tuple[float, float]] = {}
    for r in case["runs"]:
      g, t = r["summary"]["gap"], r["summary"]["seconds"]
      if r["method"] == "sliced":
        levels[r["label"]] = (g, t)
        continue
      e, gs, ts = curves.setdefault(r["label"], ([], [], []))
      e.append(r["relative_epsilon"])
      gs.append(g)
      ts.append(t)
    out[case["name"]] = {"curves": curves, "levels": levels}
  return out


def _fmt_gap(v: Optional[float]) -> str:
  if v is None:
    return "—"
  return f"{v:.3g}"


def _fmt_ms(v: Optional[float]) -> str:
  if v is None:
    return "—"
  ms = 1e3 * v
  return f"{ms:.2g}" if ms < 10 else f"{ms:.0f}"


def _row_runs(case: Dict[str, Any]) -> List[Tuple[str, Dict[float, Dict[str, Any]]]]:
  """``(label, {relative epsilon: run})`` per method, entropic first, then SROT, then the sliced plans."""
  rows: Dict[str, Dict[float, Dict[str, Any]]] = {}
  for r in case["runs"]:
    rows.setdefault(r["label"], {})[r["relative_epsilon"]] = r
  order = {"entropic": 0, "srot": 1, "sliced": 2}
  return sorted(rows.items(), key=lambda kv: order[next(iter(kv[1].values()))["method"]])


def format_table(metrics: Dict[str, Any]) -> str:
  """Two Markdown tables: cost gaps (with entropic OT at equal time), then time, iterations and plan error."""
  cfg = metrics["config"]
  s, d = cfg["solver"], cfg["data"]
  grid = list(s["relative_epsilons"])
  head = "| case | method | " + " | ".join(f"ε = {e:g}·mean" for e in grid) + " |"
  rule = "|---|---|" + "---:|" * len(grid)
  precision = "float64" if cfg["float64"] else "float32"
  lines = [
    f"### SROT against exact OT: relative cost gap (⟨C,P⟩ − OT) / OT, median over {d['num_pairs']} pair(s)",
    "",
    f"Squared Euclidean cost, ε relative to the pair's mean cost, {precision}, every solver to an L1 marginal "
    f"error < {s['threshold']:g} (at most {s['max_iterations']} iterations), plans rounded to exact couplings, "
    "OT by POT's `emd`. SROT cells: gap [best gap of a "
    "converged entropic OT run on the same pair taking at most SROT's time, any ε of "
    f"{', '.join(f'{e:g}' for e in sorted(set(grid) | set(s['entropic_extra_epsilons']), reverse=True))} × mean; "
    "— if on some pair none was as fast]. The sliced plan Q_θ has no ε (same value in every column). "
    "`*`: some pair did not converge.",
    "",
    head,
    rule,
  ]
  timing = [
    "",
    f"### Wall time (ms, median over {cfg['repeats']} calls, median over pairs) · iterations · plan L1 error "
    "‖P − P*‖₁ against POT's exact plan",
    "",
    f"Device: {metrics.get('device', '?')}. Entropic OT at the finer ε only used for the comparison above: "
    + (
      "; ".join(
        f"{case['name']}: "
        + ", ".join(
          f"{r['relative_epsilon']:g} → {_fmt_gap(r['summary']['gap'])} in {_fmt_ms(r['summary']['seconds'])} ms"
          + ("" if r["summary"]["all_converged"] else "*")
          for r in case["runs"]
          if r["method"] == "entropic" and not r["grid"]
        )
        for case in metrics["cases"]
      )
      if s["entropic_extra_epsilons"]
      else "none"
    )
    + ".",
    "",
    head,
    rule,
  ]
  for case in metrics["cases"]:
    first = True
    for label, by_eps in _row_runs(case):
      name = case["name"] if first else ""
      first = False
      gaps, times = [], []
      for e in grid:
        r = by_eps.get(e, by_eps.get(None))
        if r is None:
          gaps.append("")
          times.append("")
          continue
        sm = r["summary"]
        star = "" if sm["all_converged"] else "*"
        cell = _fmt_gap(sm["gap"]) + star
        if r["method"] == "srot":
          cell += f" [{_fmt_gap(sm['entropic_equal_time_gap'])}]"
        gaps.append(cell)
        iters = "" if r["method"] == "sliced" else f" · {sm['iterations']:.0f} it"
        times.append(f"{_fmt_ms(sm['seconds'])}{iters} · {sm['plan_l1']:.2f}{star}")
      lines.append(f"| {name} | {label} | " + " | ".join(gaps) + " |")
      timing.append(f"| {name} | {label} | " + " | ".join(times) + " |")
  worst = max(
    (max(r["transport_cost_check"]) for c in metrics["cases"] for r in c["runs"] if r["method"] == "srot"),
    default=0.0,
  )
  timing += ["", f"SROT's own `transport_cost` matches ⟨C, P⟩ of its dense plan to {worst:.1g} (relative to OT)."]
  return "\n".join(lines + timing)
