"""One evaluation protocol for every initializer task (MNIST, multi-resolution, colour, sphere).

Every method sees the same training pairs, the same test pairs and the same
converged Sinkhorn reference:

- **Plan accuracy without refinement.** A method that predicts a potential
  :math:`\\hat f` (zeros, Gaussian, Sorting, Meta OT, RA-OT, OA-OT) gets the
  same plan recovery, :math:`g=\\mathcal T_b\\hat f`, then
  :math:`f=\\mathcal T_a g` (exact rows and columns up to one half-step), and
  its plan :math:`e^{(f\\oplus g-C)/\\varepsilon}` is compared with the
  reference plan: RMSE, L1 row and column marginal errors, and the relative
  error of the transport cost :math:`\\langle C,P\\rangle`. min-SWGG returns a
  plan directly; the independent coupling :math:`ab^\\top` is the floor.
- **As a Sinkhorn initializer.** One run per method to the tightest
  threshold (``inner_iterations=1``) records the marginal error after every
  iteration, so the iterations to each threshold come from one solve.
- **Amortized plan cost.** Wall time of each method's plan without
  refinement (prediction and the two c-transforms), one pair and batched
  (``plan_timing``). RA-OT and OA-OT are bound to the test supports when they
  are few (:meth:`~ottsliced.SlicedInitializer.bind`: sorted once, as a user
  with a fixed grid would; the binding time is reported, not counted per pair).

Wall time to a tolerance against OTT's solvers is the ``solvers`` task's
(:mod:`ottsliced.experiments.solvers`), not this protocol's.
"""

import dataclasses
import functools
import os
import statistics
import time
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from ott.initializers.linear import initializers
from ott.problems.linear import linear_problem
from tqdm.auto import tqdm

from ottsliced import baselines
from ottsliced.experiments import figures
from ottsliced.experiments.timing import device_name, median_seconds
from ottsliced.fitting.objective import fit_oa
from ottsliced.fitting.regression import GroundTruth, fit_ra, ground_truth
from ottsliced.initializers.sliced_initializer import SlicedInitializer
from ottsliced.problems.batch import ProblemBatch
from ottsliced.solvers.amortized import _c_transforms, amortized_solve_batch
from ottsliced.solvers.batch import solve_batch
from ottsliced.solvers.iterations import final_errors, num_iterations

__all__ = [
  "BaselinesConfig",
  "EvalConfig",
  "MetaOTConfig",
  "ModelConfig",
  "PairPool",
  "PlanTimingConfig",
  "SWGGConfig",
  "evaluate",
  "fit_sliced_models",
  "format_evaluation",
  "mean_std",
  "method_plans",
  "run_protocol",
]


# --------------------------------------------------------------------------- configs
@dataclasses.dataclass(frozen=True)
class PairPool:
  """The pair protocol: one seeded pool of pairs, split into a training and a test part.

  Training pairs are the first ``num_train`` of the first ``train_fraction``
  of the pool, test pairs the first ``num_test`` of the rest. Task data
  configs extend it with their own fields.
  """

  epsilon: float
  seed: int
  pool_pairs: int
  train_fraction: float
  num_train: int
  num_test: int

  def __post_init__(self):
    if not 0 < self.train_fraction < 1:
      raise ValueError(f"train_fraction must be in (0, 1), got {self.train_fraction}")
    split = self.split
    if not (1 <= self.num_train <= split and 1 <= self.num_test <= self.pool_pairs - split):
      raise ValueError(
        f"num_train={self.num_train} and num_test={self.num_test} must fit the {split} / "
        f"{self.pool_pairs - split} split of pool_pairs={self.pool_pairs} (and be >= 1)"
      )

  @property
  def split(self) -> int:
    """Index of the first test pair in the pool."""
    return int(self.pool_pairs * self.train_fraction)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """RA-OT and OA-OT settings."""

  num_projections: int
  ridge: float
  ground_truth_threshold: float
  ground_truth_max_iterations: int
  oa_steps: int
  oa_learning_rate: float
  oa_batch_size: int
  seed: int

  def __post_init__(self):
    if self.num_projections < 1 or self.oa_steps < 1 or self.oa_batch_size < 1:
      raise ValueError("num_projections, oa_steps and oa_batch_size must be >= 1")
    if self.ridge < 0:
      raise ValueError(f"ridge must be >= 0, got {self.ridge}")


@dataclasses.dataclass(frozen=True)
class MetaOTConfig:
  """Meta OT (OTT ``MetaInitializer`` with an MLP) trained on the same pairs."""

  enabled: bool
  hidden: Tuple[int, ...]
  steps: int
  batch_size: int
  learning_rate: float
  seed: int


@dataclasses.dataclass(frozen=True)
class SWGGConfig:
  """min-SWGG plan baseline (no training)."""

  enabled: bool
  num_directions: int
  seed: int


@dataclasses.dataclass(frozen=True)
class BaselinesConfig:
  """Which baselines run; zeros always does (it is the reference for ratios)."""

  gaussian: bool
  sorting: bool
  meta_ot: MetaOTConfig
  min_swgg: SWGGConfig


@dataclasses.dataclass(frozen=True)
class PlanTimingConfig:
  """Wall time of each method's amortized plan (no Sinkhorn iteration).

  Attributes:
    single_pairs: test pairs timed one at a time (``B = 1``).
    batch: the first ``batch`` test pairs timed in one call (no new
      compilation when it equals the evaluation's ``chunk_size``).
    repeats: timed calls per cell (median), after one untimed call that compiles.
  """

  single_pairs: int
  batch: int
  repeats: int

  def __post_init__(self):
    if min(self.single_pairs, self.batch, self.repeats) < 1:
      raise ValueError("plan_timing.single_pairs, plan_timing.batch and plan_timing.repeats must be >= 1")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Test protocol."""

  thresholds: Tuple[float, ...]
  max_iterations: int
  reference_threshold: float
  reference_max_iterations: int
  chunk_size: int
  bind_max_supports: int
  plan_timing: PlanTimingConfig

  def __post_init__(self):
    if not self.thresholds or min(self.thresholds) <= 0:
      raise ValueError("thresholds must be a non-empty list of positive numbers")
    if self.chunk_size < 1:
      raise ValueError("chunk_size must be >= 1")


# --------------------------------------------------------------------------- helpers
def mean_std(v: Any, fmt: str = ".3g") -> str:
  """``"mean ± std"`` of an array, ``"–"`` for ``None``."""
  if v is None:
    return "–"
  v = np.asarray(v, dtype=np.float64)
  return f"{v.mean():{fmt}} ± {v.std():.2g}"


def _chunks(num: int, size: int) -> List[np.ndarray]:
  return [np.arange(i, min(i + size, num)) for i in range(0, num, size)]


def _geom(batch: ProblemBatch, x: jax.Array, y: jax.Array):
  return batch.geometry(x, y)


@jax.jit
def _reference_plans(batch: ProblemBatch, f: jax.Array, g: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """Plans ``[B, n, m]`` from potentials and their transport costs ``<C, P>`` ``[B]``."""
  ax, ay = batch.point_axes

  def one(x, y, f, g):
    geom = _geom(batch, x, y)
    plan = geom.transport_from_potentials(f, g)
    return plan, jnp.sum(plan * geom.cost_matrix)

  return jax.vmap(one, in_axes=(ax, ay, 0, 0))(batch.x, batch.y, f, g)


@jax.jit
def _initializer_potentials(batch: ProblemBatch, initializer: Any) -> Tuple[jax.Array, jax.Array]:
  """``(f, g)`` after ``g = T_b f0``, ``f = T_a g`` from any OTT initializer's ``f0``."""
  ax, ay = batch.point_axes

  def one(x, y, a, b):
    prob = linear_problem.LinearProblem(_geom(batch, x, y), a, b)
    f0 = initializer.init_fu(prob, lse_mode=True, rng=jax.random.key(0))
    out, _, _ = _c_transforms(prob, jnp.where(a > 0, f0, 0.0), None, 0, True, 1.0)
    return out.f, out.g

  return jax.vmap(one, in_axes=(ax, ay, 0, 0))(batch.x, batch.y, batch.a, batch.b)


def _predicted_potentials(batch: ProblemBatch, initializer: Any) -> Tuple[jax.Array, jax.Array]:
  """``(f, g)`` of a method's plan without refinement: the amortized path for our models, else the initializer's."""
  if isinstance(initializer, SlicedInitializer):
    out = amortized_solve_batch(batch, initializer)
    return out.f, out.g
  return _initializer_potentials(batch, initializer)


def _plan_metrics(
  batch: ProblemBatch, plans: jax.Array, p_ref: jax.Array, cost: jax.Array, cost_ref: jax.Array
) -> Dict[str, np.ndarray]:
  rows = jnp.sum(jnp.abs(plans.sum(-1) - batch.a), axis=-1)
  cols = jnp.sum(jnp.abs(plans.sum(-2) - batch.b), axis=-1)
  return {
    "rmse": np.asarray(jnp.sqrt(jnp.mean((plans - p_ref) ** 2, axis=(-2, -1)))),
    "row_l1": np.asarray(rows),
    "col_l1": np.asarray(cols),
    "cost_rel_err": np.asarray(jnp.abs(cost / cost_ref - 1.0)),
  }


def _iterations_to(errors: np.ndarray, thresholds: Tuple[float, ...]) -> Dict[str, np.ndarray]:
  """Iterations until the marginal error first drops below each threshold (``inner_iterations=1``).

  ``errors`` is OTT's ``[B, max_iterations]`` trace (``-1`` after the stop);
  a pair that never gets below a threshold counts ``max_iterations`` and is
  reported in ``not_converged``.
  """
  out = {}
  for t in thresholds:
    below = (errors >= 0) & (errors < t)
    hit = below.any(axis=1)
    out[f"{t:g}"] = np.where(hit, below.argmax(axis=1) + 1, errors.shape[1])
    out[f"{t:g}_not_converged"] = int((~hit).sum())
  return out


# --------------------------------------------------------------------------- protocol
def fit_sliced_models(
  train: ProblemBatch, model_cfg: ModelConfig, progress: bool = False
) -> Tuple[Dict[str, Dict[str, Any]], GroundTruth]:
  """RA-OT and OA-OT fitted on ``train`` with a task config's ``model`` settings (same directions).

  Returns:
    ``{"RA-OT": {...}, "OA-OT": {...}}`` (each: ``initializer``, ``fit_s``,
    ``params``) and the ground truth RA-OT regressed on (reused by callers).
  """
  rng = jax.random.key(model_cfg.seed)
  t0 = time.perf_counter()
  truth = ground_truth(
    train,
    threshold=model_cfg.ground_truth_threshold,
    max_iterations=model_cfg.ground_truth_max_iterations,
    progress=progress,
  )
  ra = fit_ra(
    train,
    num_projections=model_cfg.num_projections,
    ridge=model_cfg.ridge,
    rng=rng,
    threshold=model_cfg.ground_truth_threshold,
    max_iterations=model_cfg.ground_truth_max_iterations,
    progress=progress,
    truth=truth,
  )
  fitted = {"RA-OT": {"initializer": ra, "fit_s": time.perf_counter() - t0, "params": model_cfg.num_projections}}
  t0 = time.perf_counter()
  oa = fit_oa(
    train,
    theta=ra.theta,
    steps=model_cfg.oa_steps,
    learning_rate=model_cfg.oa_learning_rate,
    batch_size=model_cfg.oa_batch_size,
    rng=rng,
    progress=progress,
  )
  fitted["OA-OT"] = {"initializer": oa, "fit_s": time.perf_counter() - t0, "params": model_cfg.num_projections}
  return fitted, truth


def _fit_methods(train: ProblemBatch, model_cfg: ModelConfig, base: BaselinesConfig, progress: bool):
  methods: Dict[str, Dict[str, Any]] = {"zeros": {"initializer": initializers.DefaultInitializer(), "fit_s": 0.0}}
  notes: Dict[str, str] = {}
  if base.gaussian:
    methods["Gaussian"] = {"initializer": initializers.GaussianInitializer(), "fit_s": 0.0}
  if base.sorting:
    ok, why = baselines.sorting_applicable(train)
    if ok:
      methods["Sorting"] = {"initializer": initializers.SortingInitializer(vectorized_update=True), "fit_s": 0.0}
    notes["Sorting"] = why
  if base.meta_ot.enabled:
    m = base.meta_ot
    try:
      meta = baselines.fit_meta_ot(
        train,
        hidden=m.hidden,
        steps=m.steps,
        batch_size=m.batch_size,
        learning_rate=m.learning_rate,
        rng=jax.random.key(m.seed),
        progress=progress,
      )
      methods["Meta OT"] = {"initializer": meta.initializer, "fit_s": meta.train_seconds, "params": meta.num_params}
    except ValueError as err:
      notes["Meta OT"] = f"not applicable: {err}"
  fitted, _ = fit_sliced_models(train, model_cfg, progress)
  methods.update(fitted)
  return methods, notes


def bind_to_supports(
  model: SlicedInitializer, batch: ProblemBatch, max_supports: int
) -> Tuple[SlicedInitializer, float]:
  """``model`` bound to the distinct supports of ``batch`` when there are at most ``max_supports`` per side.

  Returns the (possibly unchanged) model and the seconds the binding took (sorting the supports once).
  """
  x, y = batch.supports()
  few = lambda z: z.ndim == 2 or z.shape[0] <= max_supports  # noqa: E731
  bx, by = (x if few(x) else None), (y if few(y) else None)
  if bx is None and by is None:
    return model, 0.0
  t0 = time.perf_counter()
  bound = model.bind(bx, by) if not (bx is not None and by is bx) else model.bind(bx)
  jax.block_until_ready(bound.support)
  return bound, time.perf_counter() - t0


def evaluate(
  train: ProblemBatch,
  test: ProblemBatch,
  model_cfg: ModelConfig,
  base: BaselinesConfig,
  ev: EvalConfig,
  *,
  progress: bool = True,
) -> Dict[str, Any]:
  """Fit every method on ``train`` and evaluate it on ``test`` (see the module docstring).

  Returns:
    A JSON-serialisable dict: ``methods`` (per method: fit seconds, per-pair
    plan metrics, iterations to each threshold, amortized plan wall times), ``reference``
    (the converged solves' marginal errors and iterations), ``notes`` (why a
    baseline was skipped), and the fitted models under ``models`` (not
    serialised by the runner: pop it before writing).
  """
  methods, notes = _fit_methods(train, model_cfg, base, progress)
  for m in methods.values():
    if isinstance(m["initializer"], SlicedInitializer):
      m["initializer"], m["bind_s"] = bind_to_supports(m["initializer"], test, ev.bind_max_supports)
  num = test.num_pairs
  chunks = _chunks(num, ev.chunk_size)
  tmin = min(ev.thresholds)
  ref_kw = {"threshold": ev.reference_threshold, "max_iterations": ev.reference_max_iterations}
  run_kw = {"threshold": tmin, "inner_iterations": 1, "max_iterations": ev.max_iterations}

  plan_rows: Dict[str, List[Dict[str, np.ndarray]]] = {k: [] for k in [*methods, "min-SWGG", "independent"]}
  ref_err, ref_iters, ref_conv, errors = [], [], [], {k: [] for k in methods}
  swgg_key = jax.random.key(base.min_swgg.seed)
  bar = tqdm(chunks, desc="evaluate", disable=not progress)
  for idx in bar:
    part = test.take(idx)
    ref = solve_batch(part, None, **ref_kw)
    ref_conv.append(np.asarray(ref.converged))
    ref_err.append(np.asarray(final_errors(ref)))
    ref_iters.append(np.asarray(num_iterations(ref)))
    p_ref, c_ref = _reference_plans(part, ref.f, ref.g)
    for name, m in methods.items():
      ini = m["initializer"]
      plans, cost = _reference_plans(part, *_predicted_potentials(part, ini))
      plan_rows[name].append(_plan_metrics(part, plans, p_ref, cost, c_ref))
      errors[name].append(np.asarray(solve_batch(part, ini, **run_kw).errors))
    fixed_plans = {"independent": jnp.einsum("bi,bj->bij", part.a, part.b)}
    if base.min_swgg.enabled:
      sw = baselines.min_swgg_plans(part, num_directions=base.min_swgg.num_directions, rng=swgg_key)
      fixed_plans["min-SWGG"] = sw.plans
    cost_matrices = _cost_matrices(part)
    for name, plans in fixed_plans.items():
      cost = jnp.sum(plans * cost_matrices, axis=(-2, -1))
      plan_rows[name].append(_plan_metrics(part, plans, p_ref, cost, c_ref))

  result: Dict[str, Any] = {"methods": {}, "notes": notes}
  cat = lambda rows: {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}  # noqa: E731
  for name in [*methods, "min-SWGG", "independent"]:
    if not plan_rows[name]:
      continue
    entry: Dict[str, Any] = {"plan": cat(plan_rows[name])}
    if name in methods:
      entry["fit_s"] = methods[name]["fit_s"]
      entry["bind_s"] = methods[name].get("bind_s", 0.0)
      entry["params"] = methods[name].get("params", 0)
      entry["iterations"] = _iterations_to(np.concatenate(errors[name]), ev.thresholds)
    result["methods"][name] = entry
  zeros_iters = result["methods"]["zeros"]["iterations"]
  for name in methods:
    it = result["methods"][name]["iterations"]
    it["ratio_to_zeros"] = {f"{t:g}": float(zeros_iters[f"{t:g}"].mean() / it[f"{t:g}"].mean()) for t in ev.thresholds}
  result["reference"] = {
    "final_marginal_error": np.concatenate(ref_err),
    "iterations": np.concatenate(ref_iters),
    "converged": int(np.concatenate(ref_conv).sum()),
  }
  _time_plans(result, methods, test, ev.plan_timing)
  result["models"] = {k: m["initializer"] for k, m in methods.items()}
  result["device"] = device_name()
  result["jax"] = jax.__version__
  result["num_train"] = train.num_pairs
  result["num_test"] = num
  result["shape"] = list(test.shape)
  return result


@jax.jit
def _cost_matrices(batch: ProblemBatch) -> jax.Array:
  ax, ay = batch.point_axes
  fn = lambda x, y: _geom(batch, x, y).cost_matrix  # noqa: E731
  return jax.vmap(fn, in_axes=(ax, ay), axis_size=batch.a.shape[0])(batch.x, batch.y)


def _time_plans(result: Dict[str, Any], methods: Dict[str, Any], test: ProblemBatch, cfg: PlanTimingConfig):
  """Wall time of each method's amortized plan (no Sinkhorn iteration), one pair and batched."""
  single = [test.take([i]) for i in range(min(cfg.single_pairs, test.num_pairs))]
  batched = test.take(np.arange(min(cfg.batch, test.num_pairs)))
  for name, m in methods.items():
    ini = m["initializer"]
    per_pair = [median_seconds(functools.partial(_predicted_potentials, p, ini), cfg.repeats) for p in single]
    whole = median_seconds(functools.partial(_predicted_potentials, batched, ini), cfg.repeats)
    result["methods"][name]["inference_ms"] = {
      "single": 1e3 * statistics.median(per_pair),
      "batched_per_pair": 1e3 * whole / batched.num_pairs,
    }


def run_protocol(
  train: ProblemBatch, test: ProblemBatch, config: Any, out_dir: str, title: str, progress: bool = True
) -> Dict[str, Any]:
  """:func:`evaluate` with a task config's ``model``, ``baselines`` and ``evaluation``, plus the iterations chart.

  Returns:
    :func:`evaluate`'s result with ``figures = {"iterations": <png path>}``.
  """
  result = evaluate(train, test, config.model, config.baselines, config.evaluation, progress=progress)
  path = os.path.join(out_dir, "iterations.png")
  figures.iterations_bar_chart(result["methods"], config.evaluation.thresholds, path, title=title)
  result["figures"] = {"iterations": path}
  return result


def method_plans(
  test: ProblemBatch,
  num_pairs: int,
  models: Dict[str, Any],
  reference_threshold: float,
  swgg: Optional[SWGGConfig] = None,
) -> Tuple[ProblemBatch, Dict[str, np.ndarray]]:
  """The first ``num_pairs`` test pairs and their plans ``[k, n, m]`` for figures.

  Converged Sinkhorn, the fitted methods (Meta OT, RA-OT, OA-OT when present)
  and, with ``swgg``, min-SWGG.
  """
  part = test.take(np.arange(min(num_pairs, test.num_pairs)))
  ref = solve_batch(part, None, threshold=reference_threshold)
  plans = {"Sinkhorn": np.asarray(_reference_plans(part, ref.f, ref.g)[0])}
  for name in ("Meta OT", "RA-OT", "OA-OT"):
    if name not in models:
      continue
    ini = models[name]
    plans[name] = np.asarray(_reference_plans(part, *_predicted_potentials(part, ini))[0])
  if swgg is not None and swgg.enabled:
    sw = baselines.min_swgg_plans(part, num_directions=swgg.num_directions, rng=jax.random.key(swgg.seed))
    plans["min-SWGG"] = np.asarray(sw.plans)
  return part, plans


# --------------------------------------------------------------------------- tables
def format_evaluation(metrics: Dict[str, Any], title: str) -> str:
  """Two Markdown tables: plan accuracy, and Sinkhorn initialisation (iterations, times)."""
  ms = metrics["methods"]
  thresholds = [float(t) for t in metrics["config"]["evaluation"]["thresholds"]]
  lines = [
    title,
    "",
    f"{metrics['num_train']} training pairs, {metrics['num_test']} test pairs, "
    f"n x m = {metrics['shape'][0]} x {metrics['shape'][1]}; device {metrics['device']}, jax {metrics['jax']}. "
    "Mean ± std over test pairs.",
    "",
    "**Amortized plan, no refinement** (potential methods: g = T_b f̂, f = T_a g):",
    "",
    "| method | plan RMSE | L1 rows | L1 columns | rel. cost error | fit s | params | inference ms/pair (1 / batch) |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
  ]
  bound = [f"{k} {e['bind_s']:.2f} s" for k, e in ms.items() if e.get("bind_s")]
  for name, e in ms.items():
    p, inf = e["plan"], e.get("inference_ms")
    timing = f"{inf['single']:.2f} / {inf['batched_per_pair']:.3f}" if inf else "–"
    lines.append(
      f"| {name} | {mean_std(p['rmse'])} | {mean_std(p['row_l1'])} | {mean_std(p['col_l1'])} | "
      f"{mean_std(p['cost_rel_err'])} | {e.get('fit_s', 0.0):.1f} | {e.get('params', 0):,} | {timing} |"
    )
  if bound:
    lines += ["", "Bound to the test supports (sorted once, not counted per pair): " + ", ".join(bound) + "."]
  lines += [
    "",
    "**As a Sinkhorn initializer** (inner_iterations=1): iterations to the marginal error and ratio to zeros:",
    "",
    "| method | " + " | ".join(f"iters to {t:g} | ×zeros" for t in thresholds) + " |",
    "|---|" + "---:|---:|" * len(thresholds),
  ]
  for name, e in ms.items():
    if "iterations" not in e:
      continue
    cells = []
    for t in thresholds:
      k = f"{t:g}"
      nc = e["iterations"][f"{k}_not_converged"]
      flag = f" ({nc} capped)" if nc else ""
      cells.append(f"{mean_std(e['iterations'][k])}{flag} | {e['iterations']['ratio_to_zeros'][k]:.2f}x")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  ref = metrics["reference"]
  lines += [
    "",
    f"Reference: Sinkhorn to {metrics['config']['evaluation']['reference_threshold']:g} "
    f"({ref['converged']}/{metrics['num_test']} converged, {mean_std(ref['iterations'])} iterations).",
  ]
  for k, v in metrics.get("notes", {}).items():
    lines.append(f"- {k}: {v}")
  return "\n".join(lines)
