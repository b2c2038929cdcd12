r"""min-SWGG (Mahey et al., NeurIPS 2023, arXiv 2307.01770): the best lifted 1-D monotone plan over random directions.

For each of ``D`` random directions, the 1-D monotone (north-west corner)
coupling of the projected, weighted measures is lifted to the original points
and its full cost :math:`\sum_k \pi_k\, c(x_{i_k}, y_{j_k})` is evaluated; the
cheapest lifted plan is returned. No training.

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
from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry.costs import CostFn

from ottsliced import sliced
from ottsliced._internal import validation
from ottsliced.problems.batch import ProblemBatch

__all__ = ["SWGGResult", "min_swgg_plan", "min_swgg_plans"]


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
  return sliced.argsort_rows(proj)


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
  xs = validation.check_points("x", x)
  validation.check_weights("a", a, xs[:1])
  batch = ProblemBatch(x, y, jnp.asarray(a)[None], jnp.asarray(b)[None], 1.0, cost_fn)
  out = min_swgg_plans(batch, num_directions=num_directions, rng=rng, directions=directions, pair_chunk=None)
  return SWGGResult(out.plans[0], out.cost[0], out.direction[0])
