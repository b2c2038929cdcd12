r"""Mini-batch couplings for conditional flow matching, all jittable.

Couplings pair a source batch ``x0 [B, d]`` with a target batch ``x1 [B, d]``
and return index arrays ``(i0, i1)``; the flow-matching pairs are
``(x0[i0], x1[i1])``:

- ``"independent"``: the batches as drawn (``i0 = i1 = arange(B)``); since the
  two batches are independent, this is an exact draw from :math:`a b^\top`.
- ``"exact"``: the exact OT plan of the batch (POT's ``ot.emd`` on the host
  through :func:`jax.pure_callback`; uniform weights give a permutation).
- ``"sinkhorn"``: OTT's Sinkhorn at a stated epsilon.
- ``"sliced"``: the same problem solved by :class:`~ottsliced.SlicedSinkhorn` from
  zeros (training-free sliced corrections ``sliced_steps``, then Anderson
  acceleration, the error read every iteration for free) to the same
  threshold; :func:`select_sliced_steps` picks the steps of a task by timing
  candidates on sample batches (in 2-D at epsilon = 2 it picks none).
- ``"ra"`` / ``"oa"``: a fitted :class:`~ottsliced.SlicedInitializer` (RA-OT or
  OA-OT, fitted once on a few mini-batches by :func:`fit_flow_couplings`), then
  the amortized plan of :func:`ottsliced.amortized_solve` (prediction, two c-transforms and
  ``refine_iterations`` Sinkhorn iterations) gives ``(f, g)`` and the plan
  :math:`P_{ij}=\exp((f_i+g_j-C_{ij})/\varepsilon)` (OTT's
  ``transport_from_potentials``).

Pairs are drawn from the plan by ``sample``: ``"multinomial"`` draws one
target per source row, :math:`j\sim P_{i\cdot}/\sum_j P_{ij}` (every source
point is used once; the row conditional only depends on ``g``);
``"joint"`` draws ``B`` cells of the flattened plan with replacement
(torchcfm's ``OTPlanSampler``, the authors' protocol); ``"argmax"`` takes the
most likely target of each row.
"""

import functools
import time
from typing import Any, Callable, Dict, Literal, Mapping, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

from ottsliced.fitting.objective import fit_oa
from ottsliced.fitting.regression import fit_ra
from ottsliced.initializers.sliced_initializer import SlicedInitializer
from ottsliced.problems.batch import ProblemBatch
from ottsliced.sliced.directions import directions
from ottsliced.solvers.iterations import sinkhorn_sweeps
from ottsliced.solvers.sliced_sinkhorn import DEFAULT_STEPS, SlicedSinkhorn
from ottsliced.solvers.step_selection import StepSelection, select_steps

__all__ = [
  "COUPLINGS",
  "SAMPLE_MODES",
  "Coupling",
  "FlowCouplings",
  "Pairing",
  "SampleMode",
  "couple",
  "coupling_time_ms",
  "coupling_times_ms",
  "draw_pairs",
  "exact_permutation",
  "fit_flow_couplings",
  "select_sliced_steps",
]

Coupling = Literal["independent", "exact", "sinkhorn", "sliced", "ra", "oa"]
SampleMode = Literal["multinomial", "joint", "argmax"]
COUPLINGS: Tuple[str, ...] = ("independent", "exact", "sinkhorn", "sliced", "ra", "oa")
SAMPLE_MODES: Tuple[str, ...] = ("multinomial", "joint", "argmax")


class Pairing(NamedTuple):
  """Indices of the drawn pairs: the flow-matching pairs are ``(x0[i0], x1[i1])``.

  Attributes:
    i0: source indices ``[B]`` (int32).
    i1: target indices ``[B]`` (int32).
  """

  i0: jax.Array
  i1: jax.Array


def _emd_host(x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
  import ot

  x0, x1 = np.asarray(x0, np.float64), np.asarray(x1, np.float64)
  n = x0.shape[0]
  w = np.full(n, 1.0 / n)
  plan = ot.emd(w, w, ot.dist(x0, x1), numItermax=10_000_000)
  return np.argmax(plan, axis=1).astype(np.int32)


def exact_permutation(x0: jax.Array, x1: jax.Array) -> jax.Array:
  """The exact OT assignment ``perm [B]`` (``x0[i]`` goes to ``x1[perm[i]]``), jittable.

  Squared Euclidean cost, uniform weights, POT's ``ot.emd`` in float64 on the
  host through :func:`jax.pure_callback` (the plan of equal-size uniform
  measures is a permutation matrix, a vertex found by the network simplex).

  Args:
    x0: ``[B, d]`` source points.
    x1: ``[B, d]`` target points.

  Returns:
    ``[B]`` int32 permutation.
  """
  out = jax.ShapeDtypeStruct((x0.shape[0],), jnp.int32)
  return jax.pure_callback(_emd_host, out, x0, x1, vmap_method="sequential")


def _inverse_cdf(key: jax.Array, logits: jax.Array, num: int) -> jax.Array:
  """``num`` draws from ``softmax(logits)`` over the last axis of a 1-D ``logits`` (inverse CDF)."""
  cdf = jnp.cumsum(jax.nn.softmax(logits))
  u = jax.random.uniform(key, (num,), cdf.dtype) * cdf[-1]
  return jnp.minimum(jnp.searchsorted(cdf, u, side="right"), logits.shape[0] - 1)


def draw_pairs(key: jax.Array, f: jax.Array, g: jax.Array, cost: jax.Array, epsilon: Any, sample: str) -> Pairing:
  r"""``B`` pairs drawn from :math:`P=\exp((f\oplus g-C)/\varepsilon)`, jittable.

  Draws use the inverse CDF (one uniform per pair), not Gumbel noise on every
  cell of the plan.

  Args:
    key: PRNG key.
    f: ``[B]`` source potential (only used by ``"joint"``).
    g: ``[m]`` target potential.
    cost: ``[B, m]`` cost matrix.
    epsilon: entropic regularisation.
    sample: ``"multinomial"`` (one target per row, ``i0 = arange(B)``),
      ``"joint"`` (``B`` cells of the flattened plan, with replacement) or
      ``"argmax"`` (the most likely target of each row).

  Returns:
    :class:`Pairing`.
  """
  num, m = cost.shape
  rows = jnp.arange(num, dtype=jnp.int32)
  cond = (g[None, :] - cost) / epsilon  # row conditionals up to a per-row constant
  if sample == "argmax":
    return Pairing(rows, jnp.argmax(cond, axis=1).astype(jnp.int32))
  if sample == "multinomial":
    cdf = jnp.cumsum(jax.nn.softmax(cond, axis=1), axis=1)
    u = jax.random.uniform(key, (num, 1), cdf.dtype) * cdf[:, -1:]
    j = jnp.minimum(jnp.sum(cdf <= u, axis=1), m - 1)
    return Pairing(rows, j.astype(jnp.int32))
  flat = _inverse_cdf(key, (f[:, None] / epsilon + cond).reshape(-1), num)
  return Pairing((flat // m).astype(jnp.int32), (flat % m).astype(jnp.int32))


def _amortized_potentials(x0, x1, model, refine_iterations):
  """The amortized plan's potentials, lean: prediction, ``g = T_b f``, ``f = T_a g``, then the sweeps.

  The same potentials as :func:`ottsliced.amortized_solve` (uniform weights), without the marginal-error
  check and the transport cost that a coupling step does not use.
  """
  n, m = x0.shape[0], x1.shape[0]
  a, b = jnp.full(n, 1.0 / n, x0.dtype), jnp.full(m, 1.0 / m, x1.dtype)
  geom = pointcloud.PointCloud(x0, x1, epsilon=model.epsilon)
  f, _, _ = model.predict_from_projections(*model.projections(x0, x1), a, b, model.epsilon, x0)
  g = geom.update_potential(f, jnp.zeros_like(b), jnp.log(b), axis=0)
  f = geom.update_potential(jnp.zeros_like(a), g, jnp.log(a), axis=1)
  return sinkhorn_sweeps(geom, a, b, f, g, refine_iterations)


def _uniform_problem(x0, x1, epsilon):
  """OTT's problem on ``x0``, ``x1`` with uniform weights (squared Euclidean cost)."""
  n, m = x0.shape[0], x1.shape[0]
  geom = pointcloud.PointCloud(x0, x1, epsilon=epsilon)
  return linear_problem.LinearProblem(geom, jnp.full(n, 1.0 / n, x0.dtype), jnp.full(m, 1.0 / m, x1.dtype))


def _sinkhorn_potentials(x0, x1, epsilon, threshold, max_iterations):
  solver = sinkhorn.Sinkhorn(threshold=threshold, max_iterations=max_iterations, implicit_diff=None)
  out = solver(_uniform_problem(x0, x1, epsilon))
  return out.f, out.g


def _sliced_solver(dim, dtype, threshold, max_iterations, num_directions, steps=DEFAULT_STEPS):
  """The ``"sliced"`` coupling's solver: ``num_directions`` seeded directions (key 0)."""
  theta = directions(jax.random.key(0), dim, num_directions, dtype=dtype)
  return SlicedSinkhorn(theta, steps, threshold=threshold, max_iterations=max_iterations)


def _sliced_sinkhorn_potentials(x0, x1, epsilon, threshold, max_iterations, num_directions, steps):
  solver = _sliced_solver(x0.shape[1], x0.dtype, threshold, max_iterations, num_directions, steps)
  out = solver(_uniform_problem(x0, x1, epsilon))
  return out.f, out.g


_STATIC = ("kind", "sample", "refine_iterations", "sinkhorn_max_iterations", "sliced_directions", "sliced_steps")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _couple(
  x0,
  x1,
  key,
  model,
  epsilon,
  kind,
  sample,
  refine_iterations,
  sinkhorn_threshold,
  sinkhorn_max_iterations,
  sliced_directions=16,
  sliced_steps=DEFAULT_STEPS,
):
  num = x0.shape[0]
  rows = jnp.arange(num, dtype=jnp.int32)
  if kind == "independent":
    return Pairing(rows, rows)
  if kind == "exact":
    perm = exact_permutation(x0, x1)
    if sample == "joint":
      i0 = jax.random.randint(key, (num,), 0, num).astype(jnp.int32)
      return Pairing(i0, perm[i0])
    return Pairing(rows, perm)
  if kind == "sinkhorn":
    f, g = _sinkhorn_potentials(x0, x1, epsilon, sinkhorn_threshold, sinkhorn_max_iterations)
  elif kind == "sliced":
    f, g = _sliced_sinkhorn_potentials(
      x0, x1, epsilon, sinkhorn_threshold, sinkhorn_max_iterations, sliced_directions, sliced_steps
    )
  else:
    f, g = _amortized_potentials(x0, x1, model, refine_iterations)
    epsilon = model.epsilon
  cost = pointcloud.PointCloud(x0, x1, epsilon=epsilon).cost_matrix
  return draw_pairs(key, f, g, cost, epsilon, sample)


def couple(
  kind: Coupling,
  x0: jax.Array,
  x1: jax.Array,
  key: jax.Array,
  *,
  model: Optional[SlicedInitializer] = None,
  epsilon: Optional[float] = None,
  sample: SampleMode = "multinomial",
  refine_iterations: int = 1,
  sinkhorn_threshold: float = 1e-3,
  sinkhorn_max_iterations: int = 2000,
  sliced_directions: int = 16,
  sliced_steps: Sequence[float] = DEFAULT_STEPS,
) -> Pairing:
  r"""Draw ``B`` pairs from a coupling of the batches ``x0``, ``x1`` (jit-compiled).

  Usable inside your own ``jax.jit`` (``kind``, ``sample`` and the iteration
  counts are static; ``model`` is a pytree argument, so a new ``alpha`` does
  not recompile). Squared Euclidean cost, uniform weights.

  Args:
    kind: ``"independent"``, ``"exact"``, ``"sinkhorn"``, ``"sliced"``, ``"ra"`` or ``"oa"``.
    x0: source batch ``[B, d]``.
    x1: target batch ``[B, d]`` (same ``B``).
    key: PRNG key for the draw.
    model: the fitted :class:`~ottsliced.SlicedInitializer` (``"ra"``/``"oa"``;
      its fitted epsilon is used).
    epsilon: Sinkhorn's epsilon (``"sinkhorn"`` and ``"sliced"``; absolute, on
      the raw squared Euclidean cost).
    sample: ``"multinomial"`` (one draw per source row), ``"joint"`` (``B``
      draws from the flattened plan) or ``"argmax"``.
    refine_iterations: Sinkhorn iterations after the amortized prediction
      and its two c-transforms (``"ra"``/``"oa"``). The default 1 gives the
      row conditionals of the authors' final plan (two c-transforms, then
      row and column rescaling).
    sinkhorn_threshold: Sinkhorn's marginal-error threshold (``"sliced"`` too).
    sinkhorn_max_iterations: Sinkhorn's iteration cap (``"sliced"`` too).
    sliced_directions: number of directions of the ``"sliced"`` solver's
      corrections (seeded, key 0). The flow configs use 4.
    sliced_steps: the ``"sliced"`` solver's correction steps (static; ``()``:
      no correction, Anderson only). :func:`select_sliced_steps` chooses them
      per task; in 2-D at epsilon = 2 the corrections save at most one
      iteration and cost more (``benchmarks/flow_corrections.py`` at commit 301e8bd).

  Returns:
    A :class:`Pairing` of ``[B]`` int32 index arrays. ``"multinomial"`` and
    ``"argmax"`` return ``i0 = arange(B)``; ``"exact"`` then returns the
    optimal permutation in ``i1``.
  """
  if kind not in COUPLINGS:
    raise ValueError(f"unknown coupling {kind!r}; choose one of {COUPLINGS}.")
  if sample not in SAMPLE_MODES:
    raise ValueError(f"unknown sample mode {sample!r}; choose one of {SAMPLE_MODES}.")
  if np.ndim(x0) != 2 or np.shape(x0) != np.shape(x1):
    raise ValueError(f"`x0` and `x1` must both be [B, d] with the same shape, got {np.shape(x0)} and {np.shape(x1)}.")
  if kind in ("ra", "oa"):
    if not isinstance(model, SlicedInitializer):
      raise ValueError(f"coupling {kind!r} needs `model`, a fitted SlicedInitializer (see fit_flow_couplings).")
    if model.dim != np.shape(x0)[1]:
      raise ValueError(f"`model` was fitted on d={model.dim} points, the batches have d={np.shape(x0)[1]}.")
  if kind in ("sinkhorn", "sliced") and (epsilon is None or not float(epsilon) > 0):
    raise ValueError(f"coupling {kind!r} needs a positive `epsilon`, got {epsilon!r}.")
  if int(refine_iterations) < 0:
    raise ValueError(f"`refine_iterations` must be >= 0, got {refine_iterations}.")
  if int(sliced_directions) < 1:
    raise ValueError(f"`sliced_directions` must be >= 1, got {sliced_directions}.")
  steps = _steps_tuple(sliced_steps)
  eps = 1.0 if epsilon is None else float(epsilon)
  model = model if kind in ("ra", "oa") else None
  return _couple(
    x0,
    x1,
    key,
    model,
    eps,
    kind,
    sample,
    int(refine_iterations),
    float(sinkhorn_threshold),
    int(sinkhorn_max_iterations),
    int(sliced_directions),
    steps,
  )


def _steps_tuple(steps: Sequence[float]) -> Tuple[float, ...]:
  """``sliced_steps`` as a hashable tuple of floats (a static argument), checked."""
  if np.ndim(steps) != 1:
    raise ValueError(f"`sliced_steps` must be a list of step sizes (empty: no correction), got {steps!r}.")
  out = tuple(float(v) for v in steps)
  if not all(np.isfinite(out)):
    raise ValueError(f"`sliced_steps` must be finite, got {out}.")
  return out


def select_sliced_steps(
  x0s: Sequence[jax.Array],
  x1s: Sequence[jax.Array],
  *,
  epsilon: float,
  sinkhorn_threshold: float = 1e-3,
  sinkhorn_max_iterations: int = 2000,
  sliced_directions: int = 16,
  candidates: Sequence[Sequence[float]] = (DEFAULT_STEPS, DEFAULT_STEPS[:1], ()),
  repeats: int = 5,
) -> StepSelection:
  """The ``"sliced"`` coupling's steps for a task: the fastest candidate on sample batches.

  :func:`ottsliced.solvers.step_selection.select_steps` on the uniform-weight
  problems ``(x0s[k], x1s[k])`` with the coupling's own solver (same
  directions, threshold and cap). Pass the choice on to :func:`couple` as
  ``sliced_steps=selection.candidates[selection.best]["steps"]``.

  Args:
    x0s: sample source batches, each ``[B, d]``.
    x1s: sample target batches, each ``[B, d]``.
    epsilon: the coupling's epsilon.
    sinkhorn_threshold: its threshold.
    sinkhorn_max_iterations: its iteration cap.
    sliced_directions: its number of directions.
    candidates: step tuples to try (``()``: no correction).
    repeats: timed calls per candidate and batch.

  Returns:
    A :class:`~ottsliced.solvers.step_selection.StepSelection` whose candidates are
    ``{"steps": ...}`` dictionaries.
  """
  if len(x0s) != len(x1s) or not len(x0s):
    raise ValueError(f"need as many source as target batches (>= 1), got {len(x0s)} and {len(x1s)}.")
  if epsilon is None or not float(epsilon) > 0:
    raise ValueError(f"`epsilon` must be positive, got {epsilon!r}.")
  x0 = jnp.asarray(x0s[0])
  solver = _sliced_solver(
    x0.shape[1], x0.dtype, float(sinkhorn_threshold), int(sinkhorn_max_iterations), int(sliced_directions)
  )
  probs = [_uniform_problem(jnp.asarray(a), jnp.asarray(b), float(epsilon)) for a, b in zip(x0s, x1s)]
  return select_steps(probs, solver, [{"steps": _steps_tuple(c)} for c in candidates], repeats=repeats)


class FlowCouplings(NamedTuple):
  """The amortized couplings fitted on mini-batches.

  Attributes:
    ra: RA-OT model (ridge regression on Sinkhorn potentials).
    oa: OA-OT model (semi-dual maximisation).
    ra_seconds: RA-OT pre-training wall time (batches, ground truth, fit).
    oa_seconds: OA-OT pre-training wall time (batches, features, steps).
  """

  ra: Optional[SlicedInitializer]
  oa: Optional[SlicedInitializer]
  ra_seconds: float
  oa_seconds: float


def fit_flow_couplings(
  sample_source: Callable[[jax.Array, int], jax.Array],
  sample_target: Callable[[jax.Array, int], jax.Array],
  key: jax.Array,
  *,
  num_batches: int = 50,
  batch_size: int = 512,
  num_projections: int = 32,
  ra_epsilon: Optional[float] = 2.0,
  ridge: float = 1e-3,
  ra_threshold: float = 1e-5,
  oa_epsilon: Optional[float] = 0.1,
  oa_steps: int = 5000,
  oa_learning_rate: float = 1e-3,
  progress: bool = False,
) -> FlowCouplings:
  r"""Fit RA-OT and OA-OT once on ``num_batches`` independent mini-batch pairs.

  Each training pair is ``(x0, x1)`` with ``x0 = sample_source(key, B)`` and
  ``x1 = sample_target(key', B)``, uniform weights, squared Euclidean cost.

  Args:
    sample_source: ``(key, num) -> [num, d]``.
    sample_target: ``(key, num) -> [num, d]``.
    key: PRNG key (batches and directions).
    num_batches: ``M``.
    batch_size: ``B`` of the training pairs.
    num_projections: ``L``.
    ra_epsilon: RA-OT epsilon (``None``: skip RA-OT).
    ridge: RA-OT ridge :math:`\lambda`.
    ra_threshold: Sinkhorn threshold of the RA-OT ground truth.
    oa_epsilon: OA-OT epsilon (``None``: skip OA-OT).
    oa_steps: OA-OT steps ``T``.
    oa_learning_rate: OA-OT peak learning rate.
    progress: progress bars.

  Returns:
    :class:`FlowCouplings`.
  """
  if num_batches < 1 or batch_size < 1:
    raise ValueError(f"`num_batches` and `batch_size` must be >= 1, got {num_batches}, {batch_size}.")
  kb, kd = jax.random.split(key)
  t0 = time.perf_counter()

  @jax.jit
  def batches(k):
    keys = jax.random.split(k, 2 * num_batches)
    x = jax.vmap(lambda kk: sample_source(kk, batch_size))(keys[:num_batches])
    y = jax.vmap(lambda kk: sample_target(kk, batch_size))(keys[num_batches:])
    return x, y

  x, y = batches(kb)
  x, y = jax.block_until_ready((x, y))
  t_batches = time.perf_counter() - t0
  w = jnp.full((num_batches, batch_size), 1.0 / batch_size, x.dtype)
  ra = oa = None
  ra_s = oa_s = 0.0
  if ra_epsilon is not None:
    t0 = time.perf_counter()
    ra = fit_ra(
      ProblemBatch(x, y, w, w, ra_epsilon),
      num_projections=num_projections,
      ridge=ridge,
      rng=kd,
      threshold=ra_threshold,
      progress=progress,
    )
    ra_s = t_batches + time.perf_counter() - t0
  if oa_epsilon is not None:
    t0 = time.perf_counter()
    oa = fit_oa(
      ProblemBatch(x, y, w, w, oa_epsilon),
      num_projections=num_projections,
      steps=oa_steps,
      learning_rate=oa_learning_rate,
      rng=kd,
      progress=progress,
    )
    oa_s = t_batches + time.perf_counter() - t0
  return FlowCouplings(ra, oa, ra_s, oa_s)


def coupling_time_ms(
  kind: Coupling,
  x0: jax.Array,
  x1: jax.Array,
  key: jax.Array,
  *,
  repeats: int = 10,
  **couple_kwargs: Any,
) -> float:
  """Median wall time (ms) of :func:`couple` on ``x0``, ``x1``, after a warm-up call.

  Each call gets a fresh key and is synchronised with ``block_until_ready``.
  """
  return coupling_times_ms({kind: (kind, couple_kwargs)}, x0, x1, key, repeats=repeats)[kind]


def coupling_times_ms(
  calls: Mapping[str, Tuple[Coupling, Mapping[str, Any]]],
  x0: jax.Array,
  x1: jax.Array,
  key: jax.Array,
  *,
  repeats: int = 10,
) -> Dict[str, float]:
  """Median wall times (ms) of several couplings timed side by side on the same batches.

  The calls alternate within each repeat (``a, b, a, b, ...``), so a change of
  machine load hits all of them alike; each is warmed up (compiled) first, and
  each call gets a fresh key and is synchronised with ``block_until_ready``.

  Args:
    calls: ``name -> (kind, couple_kwargs)``.
    x0: source batch ``[B, d]``.
    x1: target batch ``[B, d]``.
    key: PRNG key (``fold_in(key, repeat)`` per repeat).
    repeats: calls per coupling.

  Returns:
    ``name -> median ms``.
  """
  if repeats < 1:
    raise ValueError(f"`repeats` must be >= 1, got {repeats}.")
  for kind, kw in calls.values():
    jax.block_until_ready(couple(kind, x0, x1, key, **kw))
  times: Dict[str, list] = {name: [] for name in calls}
  for r in range(repeats):
    k = jax.random.fold_in(key, r)
    for name, (kind, kw) in calls.items():
      t0 = time.perf_counter()
      jax.block_until_ready(couple(kind, x0, x1, k, **kw))
      times[name].append(time.perf_counter() - t0)
  return {name: 1e3 * float(np.median(t)) for name, t in times.items()}
