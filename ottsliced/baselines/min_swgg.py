r"""min-SWGG (Mahey et al., NeurIPS 2023, arXiv 2307.01770): the best lifted 1-D monotone plan over random directions.

For each of ``D`` random directions, the 1-D monotone (north-west corner)
coupling of the projected, weighted measures is lifted to the original points
and its full cost :math:`\sum_k \pi_k\, c(x_{i_k}, y_{j_k})` is evaluated; the
cheapest lifted plan is returned. No training.

The north-west corner coupling is :func:`ottsliced.sliced.monotone_coupling`.
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
  i, j, mass = sliced.monotone_coupling(a[ox], b[oy])
  xi, yj = x[ox[i]], y[oy[j]]
  return jnp.sum(mass * _pair_costs(xi, yj, cost_fn)) * jnp.sum(a)


def _lifted_plan(x, y, a, b, theta, cost_fn) -> Tuple[jax.Array, jax.Array]:
  """Dense lifted NW plan ``[n, m]`` and its cost for one pair and one direction ``theta [d]``."""
  ox, oy = _project_sort(x, theta[None])[0], _project_sort(y, theta[None])[0]
  i, j, mass = sliced.monotone_coupling(a[ox], b[oy])
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
