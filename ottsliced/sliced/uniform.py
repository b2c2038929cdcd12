"""1-D OT potentials between uniform measures (attention rows): closed-form staircase, no weight quantisation."""

from typing import Tuple

import jax
import jax.numpy as jnp

from ottsliced.sliced.projections import _ordered_int_keys

__all__ = ["uniform_source_potentials"]


_SMALL_SORT = 32  # rows up to this length: ranks by comparing all pairs (XLA:CPU's sort is slow on short rows)


def _invalid_last(v: jax.Array, valid: jax.Array) -> jax.Array:
  """Invalid entries replaced by a finite value above every valid one (they sort last)."""
  top = jnp.max(jnp.where(valid, v, -jnp.inf))
  top = jnp.where(jnp.isfinite(top), top, 0.0)
  return jnp.where(valid, v, top + 1.0 + jnp.abs(top))


def _sort_with_order(v: jax.Array) -> Tuple[jax.Array, jax.Array, jax.Array]:
  """``(sorted values, order, rank)`` of a row ``[n]``: ``sorted = v[order]``, ``v = sorted[rank]``.

  Short rows: each entry's rank by comparing all pairs (stable), the order by
  comparing ranks with positions; no sort and no scatter (both slow on XLA:CPU
  for many short rows: 0.5x the time of one sort and one scatter at n = 16).
  Longer rows: one integer sort of the order-preserving integer image of the
  floats with the index packed into its ``ceil(log2 n)`` low bits; values
  that agree in all other bits (relative difference below ``2**(log2 n - 23)``
  in float32) may come out in index order instead of value order, which moves
  a potential by that difference times a projection. Exact values are gathered.
  """
  n = v.shape[-1]
  idx = jnp.arange(n, dtype=jnp.int32)
  if n <= _SMALL_SORT:
    before = (v[None, :] < v[:, None]) | ((v[None, :] == v[:, None]) & (idx[None, :] < idx[:, None]))
    rank = jnp.sum(before, axis=-1, dtype=jnp.int32)
    order = jnp.sum(jnp.where(rank[None, :] == idx[:, None], idx[None, :], 0), axis=-1, dtype=jnp.int32)
    return v[order], order, rank
  wide = v.dtype.itemsize == 8
  itype = jnp.int64 if wide else jnp.int32
  w = v if v.dtype.itemsize in (4, 8) else v.astype(jnp.float32)  # bfloat16 / float16: compare as float32
  keys = _ordered_int_keys(w, itype)
  low = max(1, (n - 1).bit_length())
  packed = jnp.sort(((keys >> low) << low) | idx.astype(itype))
  order = (packed & ((1 << low) - 1)).astype(jnp.int32)
  rank = jnp.zeros_like(idx).at[order].set(idx, unique_indices=True)
  return v[order], order, rank


_ALL_PAIRS = 64  # rows up to this length: uniform potentials by all-pairs counts (no sort, no gather)


def _unique_keys(v: jax.Array, valid: jax.Array) -> jax.Array:
  """Integer keys ``[..., n]`` in ``v``'s order, invalid entries last, distinct within a row.

  The order-preserving integer image of the floats with the index packed into
  its ``ceil(log2 n)`` low bits (as :func:`_sort_with_order`): values that agree
  in all other bits (relative difference below ``2**(log2 n - 23)`` in float32)
  are ordered by index.
  """
  n = v.shape[-1]
  itype = jnp.int64 if v.dtype.itemsize == 8 else jnp.int32
  low = max(1, (n - 1).bit_length())
  keys = _ordered_int_keys(v if v.dtype.itemsize in (4, 8) else v.astype(jnp.float32), itype)
  keys = jnp.where(valid, keys, jnp.iinfo(itype).max)
  return ((keys >> low) << low) | jnp.arange(n, dtype=itype)


def _ranks_all_pairs(keys: jax.Array) -> jax.Array:
  """Rank ``[..., n]`` (int32) of each entry in its row of distinct keys: ``n`` fused compare-adds, no sort."""
  rank = jnp.zeros(keys.shape, jnp.int32)
  for j in range(keys.shape[-1]):
    rank = rank + (keys[..., j : j + 1] < keys).astype(jnp.int32)
  return rank


def _select_sum(values: jax.Array, keys: jax.Array, wanted: jax.Array) -> jax.Array:
  """``out[..., i] = sum_l values[..., l] [keys[..., l] == wanted[..., i]]``, unrolled over ``l``."""
  out = jnp.zeros(wanted.shape, values.dtype)
  for l in range(values.shape[-1]):
    out = out + jnp.where(keys[..., l : l + 1] == wanted, values[..., l : l + 1], 0)
  return out


@jax.custom_vjp
def _pick(values: jax.Array, ranks: jax.Array, wanted: jax.Array) -> jax.Array:
  """``values`` at the entry whose rank is ``wanted``: ``[..., m], [..., m], [..., n] -> [..., n]``."""
  return _select_sum(values, ranks, wanted)


def _pick_fwd(values, ranks, wanted):
  return _select_sum(values, ranks, wanted), (ranks, wanted)


def _pick_bwd(res, cotangent):
  ranks, wanted = res  # the transpose is the same fused loop with the roles swapped
  return _select_sum(cotangent, wanted, ranks), None, None


_pick.defvjp(_pick_fwd, _pick_bwd)


def _sum_ranked_below(ranks: jax.Array, u: jax.Array, above: bool = False) -> jax.Array:
  """``out[..., i] = sum_j u[..., j] [ranks[..., j] < ranks[..., i]]`` (``>`` with ``above``), unrolled over ``j``."""
  out = jnp.zeros(u.shape, u.dtype)
  for j in range(u.shape[-1]):
    before = ranks[..., j : j + 1] > ranks if above else ranks[..., j : j + 1] < ranks
    out = out + jnp.where(before, u[..., j : j + 1], 0)
  return out


@jax.custom_vjp
def _prefix_by_rank(ranks: jax.Array, u: jax.Array) -> jax.Array:
  """Exclusive prefix sums of ``u`` in rank order, returned in atom order ``[..., n]``."""
  return _sum_ranked_below(ranks, u)


def _prefix_fwd(ranks, u):
  return _sum_ranked_below(ranks, u), ranks


def _prefix_bwd(ranks, cotangent):
  return None, _sum_ranked_below(ranks, cotangent, above=True)


_prefix_by_rank.defvjp(_prefix_fwd, _prefix_bwd)


def _uniform_potentials_all_pairs(s, t, s_valid, t_valid, n_v, m_v) -> jax.Array:
  r""":func:`uniform_source_potentials` on ``[..., n]`` rows by all-pairs counts (uncentred).

  With ranks :math:`r_i` of the sources and :math:`\tau_i=t_{(J_{r_i})}`,
  :math:`\tau^-_i=t_{(J_{r_i-1})}` (0 at rank 0) the matched targets, the
  telescoped sum :math:`\sum_{k<r_i}(s_{(k+1)}-s_{(k)})t_{(J_k)}` is
  :math:`s_i\tau^-_i+\sum_{j:r_j<r_i}s_j(\tau^-_j-\tau_j)`: four loops of
  ``n`` (or ``m``) fused compare-selects over the rows, each vectorised over
  every row of the batch; the transposes (custom VJPs) are the same loops.
  """
  m = t.shape[-1]
  rs = _ranks_all_pairs(_unique_keys(s, s_valid))
  rt = _ranks_all_pairs(_unique_keys(t, t_valid))

  def column(r):
    return jnp.clip(((r + 1) * m_v + n_v - 1) // n_v - 1, 0, jnp.minimum(m_v - 1, m - 1))

  tau = _pick(t, rt, column(rs))
  tau_before = jnp.where(rs > 0, _pick(t, rt, column(rs - 1)), 0.0)
  cross = s * tau_before + _prefix_by_rank(rs, s * (tau_before - tau))
  return s * s - 2.0 * cross


def _uniform_potentials_sorted(s, t, s_valid, t_valid, n_v, m_v) -> jax.Array:
  """One row ``[n]`` by sorting (long rows), uncentred up to the constant :math:`s_{(0)}^2`."""
  n, m = s.shape[-1], t.shape[-1]
  s_sorted, _, rank = _sort_with_order(_invalid_last(s, s_valid))
  t_sorted, _, _ = _sort_with_order(_invalid_last(t, t_valid))
  r = jnp.arange(n - 1)
  J = jnp.clip(((r + 1) * m_v + n_v - 1) // n_v - 1, 0, jnp.minimum(m_v - 1, m - 1))
  transported = (s_sorted[1:] - s_sorted[:-1]) * t_sorted[J]
  cross = jnp.concatenate([jnp.zeros((1,), s.dtype), jnp.cumsum(transported)])
  return (s_sorted * s_sorted - 2.0 * cross)[rank]


def uniform_source_potentials(s: jax.Array, t: jax.Array, s_valid: jax.Array, t_valid: jax.Array) -> jax.Array:
  r"""Source potentials of 1-D problems between *uniform* measures on the valid atoms.

  The case of attention: weights :math:`1/n_v` on the ``n_v`` valid sources,
  :math:`1/m_v` on the ``m_v`` valid targets, zero elsewhere. The staircase
  column of the ``r``-th sorted source is then a closed form in integers,
  :math:`J_r=\min(\lceil (r+1)m_v/n_v\rceil-1,\,m_v-1)`, so no weight
  quantisation, level scan or search is needed. Rows of up to 64 atoms: ranks,
  matched targets and the telescoped sums by all-pairs counts over the whole
  batch at once (no sort, no gather: XLA:CPU sorts short rows slowly); longer
  rows: two sorts, gathers and one cumulative sum per row. Values equal
  :func:`source_potentials_sorted`'s (``"weighted"`` centring) on valid atoms;
  invalid atoms get finite values that are not dual values. Differentiable in
  ``s`` and ``t``.

  Args:
    s: source projections ``[..., n]`` (any leading batch dimensions: slices, heads, examples).
    t: target projections ``[..., m]``.
    s_valid: ``[..., n]`` boolean, at least one ``True`` per row.
    t_valid: ``[..., m]`` boolean, at least one ``True`` per row.

  Returns:
    ``phi [..., n]`` (cost :math:`|s-t|^2`), centred to mean zero over the valid sources.
  """
  n, m = s.shape[-1], t.shape[-1]
  n_v = jnp.maximum(jnp.sum(s_valid, axis=-1, keepdims=True, dtype=jnp.int32), 1)
  m_v = jnp.maximum(jnp.sum(t_valid, axis=-1, keepdims=True, dtype=jnp.int32), 1)
  if max(n, m) <= _ALL_PAIRS:
    phi = _uniform_potentials_all_pairs(s, t, s_valid, t_valid, n_v, m_v)
  else:
    batch = s.shape[:-1]
    rows = [v.reshape(-1, v.shape[-1]) for v in (s, t, s_valid, t_valid, n_v, m_v)]
    phi = jax.vmap(_uniform_potentials_sorted)(*rows[:4], rows[4][:, 0], rows[5][:, 0]).reshape(batch + (n,))
  return phi - jnp.sum(jnp.where(s_valid, phi, 0.0), axis=-1, keepdims=True) / n_v
