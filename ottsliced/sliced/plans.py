r"""Sliced OT plans: the 1-D monotone couplings of projected measures, lifted to the atoms and kept sparse.

For a direction :math:`\theta`, the optimal 1-D coupling between
:math:`\sum_i a_i\delta_{\langle\theta,x_i\rangle}` and
:math:`\sum_j b_j\delta_{\langle\theta,y_j\rangle}` (any convex cost of the
difference) is the monotone, north-west corner coupling of the sorted
projections. It has at most ``n + m - 1`` cells and, read on the original
indices, is a coupling of ``a`` and ``b`` (the *lifted* plan; min-SWGG keeps the
cheapest one, SROT regularises toward their average).

North-west corner coupling (no loop over atoms). With sorted weights and
cumulative distributions :math:`A` (``n``) and :math:`B` (``m``), both ending at
exactly 1, merge the ``n + m`` levels into :math:`u_0\le\dots\le u_{n+m-1}` and
put :math:`u_{-1}=0`. Segment :math:`k` carries mass :math:`u_k-u_{k-1}` from
source row :math:`i_k=\#\{i: A_i\le u_{k-1}\}` to target column
:math:`j_k=\#\{j: B_j\le u_{k-1}\}`; every segment ends at one level, so one
``searchsorted`` and one histogram give all of them. The last two levels are
both 1, so at most ``n + m - 1`` segments have positive mass, and zero-weight
atoms (padding) never receive any.
"""

from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp

from ottsliced.sliced.projections import sort_projections

__all__ = ["SlicedPlan", "monotone_coupling", "sliced_plan"]


class SlicedPlan(NamedTuple):
  """The average of ``L`` lifted 1-D monotone plans, as ``L * (n + m)`` cells (a sparse ``[n, m]`` matrix).

  Repeated ``(row, col)`` cells add up; cells of zero mass are padding of the
  fixed size, so the arrays have a static shape under ``jit`` and ``vmap``.

  Attributes:
    rows: ``[L * (n + m)]`` source index of each cell.
    cols: ``[L * (n + m)]`` target index of each cell.
    mass: ``[L * (n + m)]`` its mass (>= 0): row sums ``a``, column sums ``b``
      rescaled to the mass of ``a``.
  """

  rows: jax.Array
  cols: jax.Array
  mass: jax.Array

  def todense(self, n: int, m: int) -> jax.Array:
    """The plan as a dense ``[n, m]`` matrix."""
    return jnp.zeros((n, m), self.mass.dtype).at[self.rows, self.cols].add(self.mass)


def _cdf(w: jax.Array) -> jax.Array:
  """Normalised cumulative weights, last entry exactly 1."""
  c = jnp.cumsum(w)
  c = c / c[-1]
  return c.at[-1].set(1.0)


def monotone_coupling(a_sorted: jax.Array, b_sorted: jax.Array) -> Tuple[jax.Array, jax.Array, jax.Array]:
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
  below_b = jnp.searchsorted(
    B, A, side="left", method="scan"
  )  # [n] #{j: B_j < A_i}: column of the segment ending at A_i
  # [m] #{i: A_i <= B_j} = #{i: below_b[i] <= j}: row of the segment ending at B_j (a histogram, no 2nd search).
  upto_a = jnp.cumsum(jnp.zeros(m + 1, below_b.dtype).at[below_b].add(1))[:m]
  mass_a = A - jnp.maximum(A0[:-1], B0[below_b])
  mass_b = B - jnp.maximum(B0[:-1], A0[upto_a])
  i = jnp.concatenate([jnp.arange(n), jnp.minimum(upto_a, n - 1)])
  j = jnp.concatenate([jnp.minimum(below_b, m - 1), jnp.arange(m)])
  mass = jnp.maximum(jnp.concatenate([mass_a, mass_b]), 0.0)
  # XLA's parallel cumsum need not repeat a level exactly after a zero weight: a zero-weight atom could get
  # round-off mass (1e-17), which SROT's potentials would then inflate. It gets none.
  return i, j, jnp.where((a_sorted[i] > 0) & (b_sorted[j] > 0), mass, 0.0)


def sliced_plan(x: jax.Array, y: jax.Array, a: jax.Array, b: jax.Array, theta: jax.Array) -> SlicedPlan:
  """The average over directions ``theta [L, d]`` of the lifted monotone plans between ``(x, a)`` and ``(y, b)``.

  One sort of each cloud per direction, then :func:`monotone_coupling`; no
  ``[n, m]`` array is formed. Ties in a projection are broken by the sort's
  order; zero-weight atoms get no mass.

  Args:
    x: source points ``[n, d]``.
    y: target points ``[m, d]``.
    a: source weights ``[n]`` (>= 0, positive total).
    b: target weights ``[m]`` (>= 0, positive total).
    theta: directions ``[L, d]``.

  Returns:
    :class:`SlicedPlan` with ``L * (n + m)`` cells; its total mass is ``sum(a)``.
  """
  x, y, a, b, theta = (jnp.asarray(v) for v in (x, y, a, b, theta))
  ox, oy = sort_projections(x, theta).order, sort_projections(y, theta).order  # [L, n], [L, m]

  def one(o1, o2):
    i, j, mass = monotone_coupling(a[o1], b[o2])
    return o1[i], o2[j], mass

  rows, cols, mass = jax.vmap(one)(ox, oy)
  scale = jnp.sum(a) / theta.shape[0]
  return SlicedPlan(rows.reshape(-1), cols.reshape(-1), (mass * scale).reshape(-1))
