r"""Baselines: min-SWGG plans, Meta OT (OTT's ``MetaInitializer``), sorting applicability.

* **min-SWGG** (Mahey et al., NeurIPS 2023, arXiv 2307.01770): for each of
  ``D`` random directions, the 1-D monotone (north-west corner) coupling of the
  projected, weighted measures is lifted to the original points and its full
  cost :math:`\sum_k \pi_k\, c(x_{i_k}, y_{j_k})` is evaluated; the cheapest
  lifted plan is returned. No training.
* **Meta OT** (Amos et al., ICML 2023): an MLP maps :math:`[a; b]` to the
  source potential :math:`f` of a *fixed* geometry, trained on the negative
  entropic dual objective with OTT's
  :class:`~ott.initializers.neural.meta_initializer.MetaInitializer`. The fitted
  model is exposed as :class:`MetaOTInitializer`, a pytree initializer whose
  children are the MLP parameters, so it can be a ``jax.jit`` argument (OTT's
  own class cannot, see ott-notes §8).
* :func:`sorting_applicable`: whether OTT's ``SortingInitializer`` applies.

North-west corner coupling (no loop over atoms). With sorted weights and
cumulative distributions :math:`A` (``n``) and :math:`B` (``m``), both ending at
exactly 1, merge the ``n + m`` levels into :math:`u_0\le\dots\le u_{n+m-1}` and
put :math:`u_{-1}=0`. Segment :math:`k` carries mass :math:`u_k-u_{k-1}` from
source row :math:`i_k=\#\{i: A_i\le u_{k-1}\}` to target column
:math:`j_k=\#\{j: B_j\le u_{k-1}\}`; for a segment of positive length these are
the exclusive counts of ``A``- and ``B``-levels before position ``k`` in the
merge, so one stable ``argsort`` and one ``cumsum`` give all segments. The last
two levels are both 1, so at most ``n + m - 1`` segments have positive mass, and
zero-weight atoms (padding) never receive any.
"""

import functools
import time
from typing import Any, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from ott.geometry.costs import CostFn
from ott.initializers.linear import initializers
from ott.initializers.neural import meta_initializer
from ott.problems.linear import linear_problem

from ottsliced import _validation
from ottsliced.problems import ProblemBatch

__all__ = [
  "MetaMLP",
  "MetaOTInitializer",
  "MetaOTModel",
  "SWGGResult",
  "fit_meta_ot",
  "min_swgg_plan",
  "min_swgg_plans",
  "sorting_applicable",
]


# --------------------------------------------------------------------------- #
# min-SWGG
# --------------------------------------------------------------------------- #


class SWGGResult(NamedTuple):
  """Output of :func:`min_swgg_plans` (leading ``[B]`` axis) or :func:`min_swgg_plan` (none).

  Attributes:
    plans: the cheapest lifted monotone plan, dense ``[B, n, m]``; its row sums
      are ``a`` and its column sums ``b`` (rescaled to the mass of ``a``).
    cost: its full cost :math:`\\langle C, \\pi\\rangle` under the problem's
      ground cost, ``[B]``.
    direction: the selected unit direction, ``[B, d]``.
  """

  plans: jax.Array
  cost: jax.Array
  direction: jax.Array


_SEARCH_METHOD = "scan"


def _ss(sorted_arr: jax.Array, query: jax.Array, side: str) -> jax.Array:
  return jnp.searchsorted(sorted_arr, query, side=side, method=_SEARCH_METHOD)


def _cdf(w: jax.Array) -> jax.Array:
  """Normalised cumulative weights, last entry exactly 1."""
  c = jnp.cumsum(w)
  c = c / c[-1]
  return c.at[-1].set(1.0)


def _nw_segments(a_sorted: jax.Array, b_sorted: jax.Array) -> Tuple[jax.Array, jax.Array, jax.Array]:
  """North-west corner coupling of two sorted 1-D weighted measures.

  Every segment of the merged levels ends at one level: the ``n`` source
  levels first, then the ``m`` target levels (a target level equal to a source
  level gets mass 0, so ties are counted once).

  Args:
    a_sorted: source weights in sorted order ``[n]`` (>= 0, positive total).
    b_sorted: target weights in sorted order ``[m]``.

  Returns:
    ``(i [n+m], j [n+m], mass [n+m])``: sorted row, sorted column and mass of
    each segment; masses are >= 0 and sum to 1 (normalised weights).
  """
  n, m = a_sorted.shape[0], b_sorted.shape[0]
  A, B = _cdf(a_sorted), _cdf(b_sorted)
  zero = jnp.zeros((1,), A.dtype)
  A0, B0 = jnp.concatenate([zero, A]), jnp.concatenate([zero, B])  # level below index k is A0[k]
  below_b = _ss(B, A, "left")  # [n] #{j: B_j < A_i}: column of the segment ending at A_i
  # [m] #{i: A_i <= B_j} = #{i: below_b[i] <= j}: row of the segment ending at B_j (a histogram, no 2nd search).
  upto_a = jnp.cumsum(jnp.zeros(m + 1, below_b.dtype).at[below_b].add(1))[:m]
  mass_a = A - jnp.maximum(A0[:-1], B0[below_b])
  mass_b = B - jnp.maximum(B0[:-1], A0[upto_a])
  i = jnp.concatenate([jnp.arange(n), jnp.minimum(upto_a, n - 1)])
  j = jnp.concatenate([jnp.minimum(below_b, m - 1), jnp.arange(m)])
  return i, j, jnp.maximum(jnp.concatenate([mass_a, mass_b]), 0.0)


def _pair_costs(xi: jax.Array, yj: jax.Array, cost_fn: Optional[CostFn]) -> jax.Array:
  """``c(xi[k], yj[k])`` for gathered point pairs ``[..., d] -> [...]``."""
  if cost_fn is None:
    return jnp.sum(jnp.square(xi - yj), axis=-1)
  fn = cost_fn
  for _ in range(xi.ndim - 1):
    fn = jax.vmap(fn)
  return fn(xi, yj)


def _project_sort(z: jax.Array, theta: jax.Array) -> jax.Array:
  """``z [n, d]``, ``theta [D, d]`` -> argsort of each projection ``[D, n]``."""
  proj = jnp.matmul(theta, z.T, precision=jax.lax.Precision.HIGHEST)
  return jnp.argsort(proj, axis=-1)


def _lifted_cost(x, y, a, b, ox, oy, cost_fn) -> jax.Array:
  """Full cost of the lifted NW plan for one pair and one direction (orders ``ox [n]``, ``oy [m]``)."""
  i, j, mass = _nw_segments(a[ox], b[oy])
  xi, yj = x[ox[i]], y[oy[j]]
  return jnp.sum(mass * _pair_costs(xi, yj, cost_fn)) * jnp.sum(a)


def _lifted_plan(x, y, a, b, theta, cost_fn) -> Tuple[jax.Array, jax.Array]:
  """Dense lifted NW plan ``[n, m]`` and its cost for one pair and one direction ``theta [d]``."""
  ox, oy = _project_sort(x, theta[None])[0], _project_sort(y, theta[None])[0]
  i, j, mass = _nw_segments(a[ox], b[oy])
  mass = mass * jnp.sum(a)
  rows, cols = ox[i], oy[j]
  plan = jnp.zeros((x.shape[0], y.shape[0]), mass.dtype).at[rows, cols].add(mass)
  return plan, jnp.sum(mass * _pair_costs(x[rows], y[cols], cost_fn))


@functools.partial(jax.jit, static_argnames=("pair_chunk",))
def _min_swgg(batch: ProblemBatch, theta: jax.Array, pair_chunk: Optional[int]) -> SWGGResult:
  cost_fn = batch.cost_fn
  # Shared supports are projected and sorted once per direction for the whole batch.
  ox = _project_sort(batch.x, theta) if batch.shared_x else None
  oy = _project_sort(batch.y, theta) if batch.shared_y else None

  def costs_one(x, y, a, b):
    px = ox if ox is not None else _project_sort(x, theta)
    py = oy if oy is not None else _project_sort(y, theta)
    return jax.vmap(lambda o1, o2: _lifted_cost(x, y, a, b, o1, o2, cost_fn))(px, py)  # [D]

  def costs_chunk(args):
    x, y, a, b = args
    return costs_one(batch.x if x is None else x, batch.y if y is None else y, a, b)

  xs = None if batch.shared_x else batch.x
  ys = None if batch.shared_y else batch.y
  costs = jax.lax.map(costs_chunk, (xs, ys, batch.a, batch.b), batch_size=pair_chunk)  # [B, D]
  best = jnp.argmin(costs, axis=-1)
  direction = theta[best]  # [B, d]

  ax, ay = batch.point_axes
  plans, cost = jax.vmap(lambda x, y, a, b, t: _lifted_plan(x, y, a, b, t, cost_fn), in_axes=(ax, ay, 0, 0, 0))(
    batch.x, batch.y, batch.a, batch.b, direction
  )
  return SWGGResult(plans, cost, direction)


def _swgg_directions(rng: Optional[jax.Array], dim: int, num: int, dtype: Any) -> jax.Array:
  """``num`` unit directions; direction ``k`` depends on ``(rng, k)`` only (a larger ``num`` extends the set)."""
  rng = jax.random.key(0) if rng is None else rng
  keys = jax.vmap(lambda k: jax.random.fold_in(rng, k))(jnp.arange(num))
  z = jax.vmap(lambda k: jax.random.normal(k, (dim,), dtype=dtype))(keys)
  return z / jnp.linalg.norm(z, axis=-1, keepdims=True)


def _check_directions(num_directions: int, directions: Optional[jax.Array], dim: int) -> None:
  if directions is not None:
    shape = tuple(np.shape(directions))
    if len(shape) != 2 or shape[0] < 1 or shape[1] != dim:
      raise ValueError(f"`directions` must be a [D, {dim}] array with D >= 1, got shape {shape}.")
    return
  if int(num_directions) < 1:
    raise ValueError(f"`num_directions` must be >= 1, got {num_directions}.")


def min_swgg_plans(
  batch: ProblemBatch,
  *,
  num_directions: int = 200,
  rng: Optional[jax.Array] = None,
  directions: Optional[jax.Array] = None,
  pair_chunk: Optional[int] = 16,
) -> SWGGResult:
  """min-SWGG: the cheapest lifted 1-D monotone plan over random directions, per pair.

  For every pair and every direction, both point clouds are projected and
  sorted, the north-west corner coupling of the weighted 1-D measures (at most
  ``n + m - 1`` cells; ``n != m`` and zero weights allowed) is lifted to the
  original points and its full cost under ``batch.cost_fn`` (``None``: squared
  Euclidean) is evaluated. The plan of the cheapest direction is returned
  densely; only that one ``[n, m]`` plan per pair is ever materialised.

  Directions are shared by all pairs. Direction ``k`` is drawn from
  ``fold_in(rng, k)``, so a larger ``num_directions`` with the same ``rng``
  adds directions and never increases the cost.

  Args:
    batch: the problems (epsilon is ignored: min-SWGG is unregularised).
    num_directions: number of random unit directions ``D`` (static).
    rng: PRNG key of the directions (``None``: ``jax.random.key(0)``).
    directions: explicit directions ``[D, d]`` (unit or not), instead of
      ``num_directions`` and ``rng``.
    pair_chunk: pairs evaluated together (``lax.map`` batch size; memory is
      about ``pair_chunk * D * (n + m) * (2d + 4)`` words). ``None``: all.

  Returns:
    :class:`SWGGResult` with ``plans [B, n, m]``, ``cost [B]``, ``direction [B, d]``.
  """
  if not isinstance(batch, ProblemBatch):
    raise ValueError(f"`batch` must be a ProblemBatch, got {type(batch).__name__}.")
  _check_directions(num_directions, directions, batch.dim)
  if pair_chunk is not None and int(pair_chunk) < 1:
    raise ValueError(f"`pair_chunk` must be >= 1 or None, got {pair_chunk}.")
  dtype = jnp.result_type(batch.x.dtype, float)
  if directions is None:
    theta = _swgg_directions(rng, batch.dim, int(num_directions), dtype)
  else:
    theta = jnp.asarray(directions, dtype)
    theta = theta / jnp.linalg.norm(theta, axis=-1, keepdims=True)
  chunk = None if pair_chunk is None else min(int(pair_chunk), batch.num_pairs)
  return _min_swgg(batch, theta, chunk)


def min_swgg_plan(
  x: jax.Array,
  y: jax.Array,
  a: jax.Array,
  b: jax.Array,
  *,
  num_directions: int = 200,
  rng: Optional[jax.Array] = None,
  directions: Optional[jax.Array] = None,
  cost_fn: Optional[CostFn] = None,
) -> SWGGResult:
  """:func:`min_swgg_plans` for one pair.

  Args:
    x: source points ``[n, d]``.
    y: target points ``[m, d]``.
    a: source weights ``[n]`` (>= 0, positive total).
    b: target weights ``[m]``.
    num_directions: number of random unit directions.
    rng: PRNG key of the directions.
    directions: explicit directions ``[D, d]`` instead.
    cost_fn: ground cost (``None``: squared Euclidean).

  Returns:
    :class:`SWGGResult` with ``plans [n, m]``, ``cost []``, ``direction [d]``.
  """
  xs = _validation.check_points("x", x)
  _validation.check_weights("a", a, xs[:1])
  batch = ProblemBatch(x, y, jnp.asarray(a)[None], jnp.asarray(b)[None], 1.0, cost_fn)
  out = min_swgg_plans(batch, num_directions=num_directions, rng=rng, directions=directions, pair_chunk=None)
  return SWGGResult(out.plans[0], out.cost[0], out.direction[0])


# --------------------------------------------------------------------------- #
# Meta OT
# --------------------------------------------------------------------------- #


class MetaMLP(nn.Module):
  """Meta OT's potential network: ``concat([a, b]) -> f`` with ReLU hidden layers.

  Attributes:
    hidden: hidden layer widths, e.g. ``(1024, 1024, 1024)``.
    num_outputs: ``n``, the number of source atoms.
  """

  hidden: Tuple[int, ...]
  num_outputs: int

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """``z [..., n + m] -> f [..., n]``."""
    for width in self.hidden:
      z = nn.relu(nn.Dense(width)(z))
    return nn.Dense(self.num_outputs)(z)


@jax.tree_util.register_pytree_node_class
class MetaOTInitializer(initializers.DefaultInitializer):
  r"""Meta OT's fitted MLP as a jit-friendly OTT Sinkhorn initializer.

  ``init_fu`` returns :math:`\hat f = \mathrm{MLP}([a; b])` (OTT convention),
  ``init_gv`` zeros (Sinkhorn's first update computes :math:`g` from
  :math:`\hat f`). Valid only on the fixed geometry it was trained on (shapes are
  checked, coordinates cannot be).

  A pytree: the children are the MLP parameters, the (hashable) flax module and
  the support sizes are static, so new parameters never retrace a jitted
  function taking it as an argument (e.g. :func:`ottsliced.solve_batch`).

  Args:
    params: flax parameters of ``module``.
    module: the :class:`MetaMLP`.
    num_b: number of target atoms ``m``.
  """

  def __init__(self, params: Any, module: MetaMLP, num_b: int):
    super().__init__()
    self.params = params
    self.module = module
    self.num_b = int(num_b)

  @property
  def shape(self) -> Tuple[int, int]:
    """``(n, m)`` of the fixed geometry."""
    return self.module.num_outputs, self.num_b

  def predict_f(self, a: jax.Array, b: jax.Array) -> jax.Array:
    """``f [..., n]`` from ``a [..., n]`` and ``b [..., m]`` (any leading batch axes)."""
    n, m = self.shape
    if a.shape[-1] != n or b.shape[-1] != m:
      raise ValueError(
        f"this Meta OT model was trained on a fixed geometry with (n, m) = {(n, m)}, got weights of sizes "
        f"{(a.shape[-1], b.shape[-1])}."
      )
    return self.module.apply({"params": self.params}, jnp.concatenate([a, b], axis=-1))

  def init_fu(  # noqa: D102
    self, ot_prob: linear_problem.LinearProblem, lse_mode: bool, rng: Optional[jax.Array] = None
  ) -> jax.Array:
    del rng
    f = self.predict_f(ot_prob.a, ot_prob.b)
    return f if lse_mode else ot_prob.geom.scaling_from_potential(f)

  def tree_flatten(self):  # noqa: D102
    return (self.params,), (self.module, self.num_b)

  @classmethod
  def tree_unflatten(cls, aux, children):  # noqa: D102
    return cls(children[0], *aux)

  def __repr__(self) -> str:
    n, m = self.shape
    return f"MetaOTInitializer(hidden={self.module.hidden}, n={n}, m={m})"


class MetaOTModel(NamedTuple):
  """A fitted Meta OT model (:func:`fit_meta_ot`).

  Attributes:
    initializer: :class:`MetaOTInitializer`, usable in
      ``Sinkhorn(initializer=...)`` and :func:`ottsliced.solve_batch`.
    meta_initializer: OTT's ``MetaInitializer`` holding the trained state (not
      a valid jit argument: close over it).
    losses: training loss per step ``[steps]`` (mean :math:`-J` over the mini-batch).
    train_seconds: wall time of the training loop, compilation included.
    compile_seconds: wall time of the first chunk (compilation + its steps).
  """

  initializer: MetaOTInitializer
  meta_initializer: meta_initializer.MetaInitializer
  losses: np.ndarray
  train_seconds: float
  compile_seconds: float

  @property
  def num_params(self) -> int:
    """Number of trained parameters."""
    return int(sum(np.size(p) for p in jax.tree_util.tree_leaves(self.initializer.params)))

  def predict_f(self, a: jax.Array, b: jax.Array) -> jax.Array:
    """Predicted source potentials ``f [B, n]`` from ``a [B, n]``, ``b [B, m]`` (OTT convention)."""
    return _predict(self.initializer, jnp.asarray(a), jnp.asarray(b))


@jax.jit
def _predict(initializer: MetaOTInitializer, a: jax.Array, b: jax.Array) -> jax.Array:
  return initializer.predict_f(a, b)


def _check_meta_args(batch: Any, hidden: Sequence[int], steps: int, batch_size: int, learning_rate: float) -> None:
  if not isinstance(batch, ProblemBatch):
    raise ValueError(f"`batch` must be a ProblemBatch, got {type(batch).__name__}.")
  if not (batch.shared_x and batch.shared_y):
    raise ValueError(
      "Meta OT needs one fixed geometry: its MLP maps the weights [a; b] of a fixed support to f, so every pair "
      "must share the same source and target points (a ProblemBatch with 2-D x and y). Resample data on "
      "different grids to one grid first (e.g. multi-resolution images); Meta OT is not applicable to per-pair "
      "supports such as colour palettes or point clouds that move."
    )
  hidden = tuple(hidden)
  if not hidden or any(int(h) < 1 for h in hidden):
    raise ValueError(f"`hidden` must be a non-empty sequence of positive widths, got {hidden}.")
  if int(steps) < 1:
    raise ValueError(f"`steps` must be >= 1, got {steps}.")
  if int(batch_size) < 1:
    raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
  if not (np.isfinite(learning_rate) and learning_rate > 0):
    raise ValueError(f"`learning_rate` must be a positive float, got {learning_rate}.")


def fit_meta_ot(
  batch: ProblemBatch,
  *,
  hidden: Sequence[int] = (1024, 1024, 1024),
  steps: int = 5000,
  batch_size: int = 1,
  learning_rate: float = 1e-3,
  rng: Optional[jax.Array] = None,
  progress: bool = True,
  chunk_steps: int = 100,
) -> MetaOTModel:
  r"""Train Meta OT (Amos et al. 2023) on the pairs of a fixed-geometry batch.

  The MLP (:class:`MetaMLP`, ReLU) maps :math:`[a; b]` to :math:`f`; OTT's
  ``MetaInitializer`` provides the loss (:math:`-J(f)`, the entropic dual with
  :math:`g=\mathcal T_b f`) and the jitted update, with
  ``optax.chain(clip_by_global_norm(1.0), adam(learning_rate))``. Each step draws
  ``batch_size`` training pairs uniformly with replacement (seeded). Steps run
  in jitted ``lax.scan`` chunks of ``chunk_steps`` (one dispatch per chunk).

  Args:
    batch: training pairs on one shared support (2-D ``x`` and ``y``).
    hidden: hidden widths (paper: three layers of 1024).
    steps: number of Adam steps.
    batch_size: pairs per step.
    learning_rate: Adam learning rate.
    rng: PRNG key for the initial parameters and the mini-batches (``None``: key 0).
    progress: show a tqdm progress bar.
    chunk_steps: steps per compiled chunk.

  Returns:
    A :class:`MetaOTModel`.

  Raises:
    ValueError: per-pair supports (Meta OT needs one fixed geometry) or bad arguments.
  """
  _check_meta_args(batch, hidden, steps, batch_size, learning_rate)
  if int(chunk_steps) < 1:
    raise ValueError(f"`chunk_steps` must be >= 1, got {chunk_steps}.")
  steps, batch_size, chunk_steps = int(steps), int(batch_size), min(int(chunk_steps), int(steps))
  n, m = batch.shape
  geom = batch.geometry(batch.x, batch.y)
  module = MetaMLP(hidden=tuple(int(h) for h in hidden), num_outputs=n)
  rng = jax.random.key(0) if rng is None else rng
  rng_init, rng_data = jax.random.split(rng)
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(learning_rate))
  mi = meta_initializer.MetaInitializer(geom, module, opt=opt, rng=rng_init)
  idx = jax.random.randint(rng_data, (steps, batch_size), 0, batch.num_pairs)

  @jax.jit
  def run_chunk(state, ids, a_all, b_all):
    def body(state, i):
      loss, _, state = mi.update_impl(state, a_all[i], b_all[i])
      return state, loss

    return jax.lax.scan(body, state, ids)

  bar = None
  if progress:
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc="Meta OT", unit="step")
  state, losses, done = mi.state, [], 0
  start = time.perf_counter()
  compile_seconds = 0.0
  try:
    while done < steps:
      num = min(chunk_steps, steps - done)
      state, chunk_losses = run_chunk(state, idx[done : done + num], batch.a, batch.b)
      chunk_losses = np.asarray(chunk_losses)  # blocks: honest timings and progress
      if done == 0:
        compile_seconds = time.perf_counter() - start
      losses.append(chunk_losses)
      done += num
      if bar is not None:
        bar.update(num)
        bar.set_postfix(loss=f"{float(chunk_losses[-1]):.4g}")
  finally:
    if bar is not None:
      bar.close()
  train_seconds = time.perf_counter() - start
  mi.state = state
  return MetaOTModel(
    initializer=MetaOTInitializer(state.params, module, m),
    meta_initializer=mi,
    losses=np.concatenate(losses),
    train_seconds=train_seconds,
    compile_seconds=compile_seconds,
  )


# --------------------------------------------------------------------------- #
# Sorting initializer
# --------------------------------------------------------------------------- #


def sorting_applicable(batch: ProblemBatch) -> Tuple[bool, str]:
  """Whether OTT's ``SortingInitializer`` (DualSort, Thornton & Cuturi 2022) applies to ``batch``.

  DualSort needs a square dense cost matrix (``n == m``) and assumes the
  identity is the optimal assignment; it ignores the weights.

  Args:
    batch: the problems.

  Returns:
    ``(applicable, reason)``: ``(False, why)`` when ``n != m``; otherwise
    ``(True, note)``, the note saying when it degenerates (a shared support
    ``x == y`` gives exactly zeros, since ``C_ii = 0``; zero weights are ignored).
  """
  if not isinstance(batch, ProblemBatch):
    raise ValueError(f"`batch` must be a ProblemBatch, got {type(batch).__name__}.")
  n, m = batch.shape
  if n != m:
    return False, (
      f"SortingInitializer needs a square cost matrix (n == m), got n={n}, m={m}; it also assumes the "
      "identity is the optimal assignment."
    )
  notes = ["square cost matrix; DualSort assumes the identity is the optimal assignment and ignores the weights"]
  same = batch.shared_x and batch.shared_y and _validation.is_concrete(batch.x, batch.y)
  if same and bool(jnp.array_equal(batch.x, batch.y)):
    notes.append("on this shared support (x == y, C_ii = 0) it returns exactly zeros, i.e. the default initializer")
  if _validation.is_concrete(batch.a, batch.b) and bool(jnp.any(batch.a == 0) | jnp.any(batch.b == 0)):
    notes.append("zero-weight atoms (padding) are treated as real atoms by the assignment")
  return True, "; ".join(notes) + "."
