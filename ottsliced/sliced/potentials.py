r"""Exact 1-D optimal transport dual potentials of projected measures.

For each direction :math:`\theta_\ell` the measures are projected to the line,
:math:`s_i=\langle\theta_\ell,x_i\rangle`, :math:`t_j=\langle\theta_\ell,y_j\rangle`,
and the exact dual potentials :math:`(\varphi_\ell,\psi_\ell)` of the 1-D problem
with cost :math:`|s-t|^2` are evaluated at every atom.

Algorithm (fully parallel, no loop over atoms). In sorted order the optimal plan
is the north-west staircase. Let :math:`A=\mathrm{cumsum}(a)`,
:math:`B=\mathrm{cumsum}(b)`. Source atom :math:`i<n-1` is exhausted while the
staircase sits in target column :math:`J_i=\#\{j<m-1: B_j<A_i\}` and target atom
:math:`j<m-1` while it sits in source row :math:`I_j=\#\{i<n-1: A_i\le B_j\}`
(ties: the source moves first). Every staircase cell is tight, so the potentials
telescope:

.. math::

  \varphi_{i+1}-\varphi_i = c(s_{i+1},t_{J_i})-c(s_i,t_{J_i}),\qquad
  \psi_{j+1}-\psi_j = c(s_{I_j},t_{j+1})-c(s_{I_j},t_j),

with :math:`\varphi_0=0`, :math:`\psi_0=c(s_0,t_0)`. One ``searchsorted`` gives
:math:`J`; :math:`I` is the cumulated histogram of :math:`J` (no second search),
and two ``cumsum`` give the potentials. For a Monge cost such as :math:`|s-t|^2` any staircase
dual is feasible, and it is optimal because the plan lives on the staircase.

Atoms of zero weight get 1-D c-transform values: a zero-weight source
:math:`\varphi_i=\min_{j:b_j>0}c(s_i,t_j)-\psi_j`, whose minimiser is one of
the two positive-weight targets around the atom's CDF level,
and a zero-weight target :math:`\psi_j=\min_i c(s_i,t_j)-\varphi_i` over all
sources, whose minimiser is one of two sources found from the staircase
counts; so the pair is feasible on every pair of atoms, zero-weight ones
included. Values on positive-weight atoms never depend on zero-weight atoms,
so padding with zero weights changes nothing.

Finally a gauge constant is removed: :math:`\varphi\leftarrow\varphi-m`,
:math:`\psi\leftarrow\psi+m` with :math:`m` the mean of :math:`\varphi`
(``a``-weighted by default). The pair stays a feasible, optimal dual pair, so
:math:`\langle a,\varphi\rangle+\langle b,\psi\rangle` equals the 1-D OT cost.
"""

import functools
from typing import Literal, Tuple

import jax
import jax.numpy as jnp

from ottsliced._internal import validation
from ottsliced.sliced.projections import SortedProjections, _count_below, _take_rows, sort_projections

__all__ = [
  "Centering",
  "batched_sliced_potentials",
  "check_centering",
  "combined_source_potentials",
  "sliced_potentials",
  "sliced_potentials_sorted",
  "source_potentials_sorted",
]

Centering = Literal["weighted", "mean", "none"]
_CENTERINGS = ("weighted", "mean", "none")


def _ss(sorted_arr: jax.Array, query: jax.Array, side: str = "left") -> jax.Array:
  return jnp.searchsorted(sorted_arr, query, side=side, method="scan")


def _sq(u: jax.Array) -> jax.Array:
  return u * u


def _next_positive(w: jax.Array) -> jax.Array:
  """``[k] -> [k+1]``: smallest index >= j of positive weight, else the last one."""
  k = w.shape[0]
  idx = jnp.where(w > 0, jnp.arange(k), k)
  nxt = jax.lax.cummin(idx, reverse=True)
  last = jnp.max(jnp.where(w > 0, jnp.arange(k), -1))
  nxt = jnp.where(nxt >= k, last, nxt)
  return jnp.concatenate([nxt, last[None]])


def _quantize(w: jax.Array) -> jax.Array:
  """Weights ``[..., k]`` as integer-valued floats summing to about ``2^p`` (``p`` mantissa bits).

  Every partial sum of them is an integer below ``2^(p+1)``, exact in the float type, so
  cumulative levels are exact in any summation order: monotone, equal where the weights
  make them equal, and cheap to compute with an associative scan.
  """
  scale = float(2 ** jnp.finfo(w.dtype).nmant)
  return jnp.round(w * (scale / jnp.sum(w, axis=-1, keepdims=True)))


def _levels(q: jax.Array) -> jax.Array:
  """Exact normalised cumulative levels of quantized weights ``[..., k]``; the last is exactly 1."""
  c = jax.lax.associative_scan(jnp.add, q, axis=-1)
  return c / c[..., -1:]


def _cdf(w: jax.Array) -> jax.Array:
  return _levels(_quantize(w))


def _one_slice(s, a, t, b, centering: str) -> Tuple[jax.Array, jax.Array]:
  """Dual potentials of one 1-D problem given in sorted order."""
  A, B = _cdf(a), _cdf(b)
  n, m = s.shape[0], t.shape[0]
  # One binary search; every other count comes from it (CPU/GPU gathers are
  # the cost, so avoid repeated searches).
  below = _ss(B, A, side="left")  # [n] #{j: B_j < A_i}
  safe = jnp.minimum(below, m - 1)
  # above = #{j: B_j <= A_i}: skip the run of targets whose level equals A_i.
  rises = jnp.concatenate([B[1:] > B[:-1], jnp.ones((1,), bool)])
  run_end = jax.lax.cummin(jnp.where(rises, jnp.arange(1, m + 1), m + 1), reverse=True)
  above = jnp.where((below < m) & (B[safe] == A), run_end[safe], below)
  # #{i: A_i <= B_j} = #{i: below_i <= j}: a histogram of `below`, cumulated.
  sources_upto = jnp.cumsum(jnp.zeros(m + 1, below.dtype).at[below].add(1))[:m]
  # Staircase: column of each source exhaustion, row of each target exhaustion.
  J = jnp.minimum(below[:-1], m - 1)
  I = jnp.minimum(sources_upto[:-1], n - 1)
  tJ, sI = t[J], s[I]
  dphi = (s[1:] - s[:-1]) * (s[1:] + s[:-1] - 2.0 * tJ)
  dpsi = (t[1:] - t[:-1]) * (t[1:] + t[:-1] - 2.0 * sI)
  zero = jnp.zeros((1,), s.dtype)
  phi = jnp.concatenate([zero, jnp.cumsum(dphi)])
  psi = _sq(s[0] - t[0]) + jnp.concatenate([zero, jnp.cumsum(dpsi)])

  # Zero-weight sources: c-transform over positive-weight targets. The
  # minimiser is the positive target just below or just above the atom's CDF
  # level; on positive sources this reproduces the staircase value.
  nb = _next_positive(b)
  j1, j2 = nb[below], nb[above]
  c1 = _sq(s - t[j1]) - psi[j1]
  c2 = _sq(s - t[j2]) - psi[j2]
  phi = jnp.where(a > 0, phi, jnp.minimum(c1, c2))
  # Zero-weight targets: c-transform of the full phi (all sources), which keeps
  # feasibility on zero-weight pairs too. With k(i) a monotone argmin of
  # source i among positive targets, and p the previous positive target, the
  # minimiser is the last source with k(i) <= p or the one after it.
  k = jnp.where(c1 <= c2, j1, j2)
  prev_b = jax.lax.cummax(jnp.where(b > 0, jnp.arange(m), -1))
  k_upto = jnp.cumsum(jnp.zeros(m, k.dtype).at[k].add(1))  # #{i: k_i <= j}
  i_lo = jnp.where(prev_b >= 0, k_upto[jnp.maximum(prev_b, 0)], 0) - 1
  i_hi = jnp.clip(i_lo + 1, 0, n - 1)
  i_lo = jnp.clip(i_lo, 0, n - 1)
  psi_ct = jnp.minimum(_sq(s[i_lo] - t) - phi[i_lo], _sq(s[i_hi] - t) - phi[i_hi])
  psi = jnp.where(b > 0, psi, psi_ct)

  if centering == "weighted":
    shift = jnp.sum(a * phi) / jnp.sum(a)
  elif centering == "mean":
    shift = jnp.mean(phi)
  else:
    shift = jnp.zeros((), phi.dtype)
  return phi - shift, psi + shift


def check_centering(centering: str) -> None:
  """Raise ``ValueError`` unless ``centering`` is one of ``"weighted"``, ``"mean"``, ``"none"``."""
  if centering not in _CENTERINGS:
    raise ValueError(f"`centering` must be one of {_CENTERINGS}, got {centering!r}.")


def sliced_potentials_sorted(
  px: SortedProjections,
  py: SortedProjections,
  a: jax.Array,
  b: jax.Array,
  centering: Centering = "weighted",
) -> Tuple[jax.Array, jax.Array]:
  """Sliced potentials from pre-sorted projections (shared-support fast path).

  Args:
    px: sorted source projections, ``values [L, n]``.
    py: sorted target projections, ``values [L, m]``.
    a: source weights ``[n]`` (>= 0, positive total; normalised internally).
    b: target weights ``[m]``.
    centering: gauge fixing, see :func:`sliced_potentials`.

  Returns:
    ``(phi [n, L], psi [m, L])``.
  """
  check_centering(centering)
  a_sorted = a[px.order]  # [L, n]
  b_sorted = b[py.order]  # [L, m]
  one = jax.vmap(lambda s, aa, t, bb: _one_slice(s, aa, t, bb, centering))
  phi, psi = one(px.values, a_sorted, py.values, b_sorted)
  return _take_rows(phi, px.ranks).T, _take_rows(psi, py.ranks).T


def _source_rows(
  px: SortedProjections, py: SortedProjections, a: jax.Array, b: jax.Array, center: bool = True
) -> jax.Array:
  r"""``phi`` in sorted order, ``[L, n]``, in the staircase gauge, exact on positive-weight sources.

  All ``L`` slices at once on ``[L, n]`` arrays: weights quantized once (not per
  slice), gathered in each slice's order, exact levels by an associative scan,
  the staircase column ``J_i = #{j < m-1: B_j < A_i}`` by :func:`_count_below`.
  The increments telescope: :math:`\varphi_r=s_r^2-s_0^2-2\sum_{k<r}(s_{k+1}-s_k)t_{J_k}`,
  so only the second term is accumulated (fewer rounding errors, and a padded
  atom that splits an increment changes the sum by rounding only). With
  ``center``, the ``a``-weighted mean of each slice is removed: the gauge then
  sits on the support, not on the leftmost atom, which may be a far-away padded
  one whose large constant would cost float32 digits.
  """
  s, t = px.values, py.values
  qa = _quantize(a)[px.order]
  A = _levels(qa)
  B = _levels(_quantize(b)[py.order])
  J = jnp.minimum(_count_below(B, A[:, :-1]), t.shape[-1] - 1)
  transported = (s[:, 1:] - s[:, :-1]) * _take_rows(t, J)
  zero = jnp.zeros(s.shape[:-1] + (1,), s.dtype)
  cross = jnp.concatenate([zero, jax.lax.associative_scan(jnp.add, transported, axis=-1)], axis=-1)
  phi = (s * s - s[:, :1] * s[:, :1]) - 2.0 * cross
  if center:
    phi = phi - jnp.sum(qa * phi, axis=-1, keepdims=True) / jnp.sum(qa, axis=-1, keepdims=True)
  return phi


def source_potentials_sorted(
  px: SortedProjections,
  py: SortedProjections,
  a: jax.Array,
  b: jax.Array,
  centering: Centering = "weighted",
) -> jax.Array:
  """The source half of :func:`sliced_potentials_sorted`, for predictions (about 3x less work).

  On every atom of positive weight the values equal ``phi`` of
  :func:`sliced_potentials_sorted`; zero-weight atoms get the staircase's
  interpolation instead of the 1-D c-transform (finite, not a feasible dual
  value). Predictions mask zero-weight atoms (``f = -inf`` there, as in
  Sinkhorn), so the amortized plan and the warm start are unchanged, while
  the target side (``psi``) and the zero-weight c-transforms are skipped.

  Args:
    px: sorted source projections, ``values [L, n]``.
    py: sorted target projections, ``values [L, m]``.
    a: source weights ``[n]``.
    b: target weights ``[m]``.
    centering: ``"weighted"`` or ``"none"``; ``"mean"`` averages over
      zero-weight atoms too, so it needs :func:`sliced_potentials_sorted`.

  Returns:
    ``phi [n, L]``.
  """
  if centering not in ("weighted", "none"):
    raise ValueError(f"source_potentials_sorted supports centering 'weighted' or 'none', got {centering!r}.")
  return _take_rows(_source_rows(px, py, a, b, center=centering == "weighted"), px.ranks).T  # [n, L]


def combined_source_potentials(
  px: SortedProjections, py: SortedProjections, a: jax.Array, b: jax.Array, coef: jax.Array
) -> jax.Array:
  r""":math:`\sum_\ell c_\ell\varphi_\ell` ``[n]`` without forming the ``[n, L]`` features.

  The prediction path of a linear model: ``source_potentials_sorted(px, py, a, b)
  @ coef`` on every positive-weight atom (``"weighted"`` centring), up to float
  rounding, in one pass over ``[L, n]`` arrays and one gather back to atom order.
  With any other centring of the features the result differs by a constant, a
  gauge that neither the plan nor a Sinkhorn warm start sees. Zero-weight atoms
  get finite values that are not dual values; mask them. Target-side potentials :math:`\sum_\ell c_\ell\psi_\ell`
  are the source potentials of the swapped problem, ``(py, px, b, a)``, up to a
  constant.

  Args:
    px: sorted source projections, ``values [L, n]``.
    py: sorted target projections, ``values [L, m]``.
    a: source weights ``[n]``.
    b: target weights ``[m]``.
    coef: ``[L]`` coefficients.

  Returns:
    ``[n]``.
  """
  return jnp.sum(coef[:, None] * _take_rows(_source_rows(px, py, a, b), px.ranks), axis=0)


def sliced_potentials(
  x: jax.Array,
  y: jax.Array,
  a: jax.Array,
  b: jax.Array,
  theta: jax.Array,
  centering: Centering = "weighted",
) -> Tuple[jax.Array, jax.Array]:
  r"""Exact 1-D OT dual potentials of every projection, at every atom.

  For each direction ``theta[l]`` this solves the 1-D OT problem between the
  projected measures with cost :math:`|s-t|^2` and returns its dual potentials
  evaluated at the atoms. The result is the feature matrix of the amortized
  model, :math:`\hat f=\Phi\alpha`.

  Pure and parallel (sort, cumsum, searchsorted, gather), compiled once per
  shape; it can be called inside ``jit`` and ``vmap`` (the value checks then
  fall to the caller, shapes are still checked). Zero-weight (and padded) atoms get the feasible 1-D c-transform values.

  Args:
    x: source points ``[n, d]``.
    y: target points ``[m, d]``.
    a: source weights ``[n]``, >= 0 with a positive total (normalised inside).
    b: target weights ``[m]``, >= 0 with a positive total (normalised inside).
    theta: directions ``[L, d]``.
    centering: ``"weighted"`` (default) subtracts :math:`m=\sum_i a_i\varphi_i`
      per slice from ``phi`` and adds it to ``psi``, which is insensitive to
      zero-weight atoms and padding; ``"mean"`` uses the plain mean of ``phi``
      over all atoms (the authors' choice); ``"none"`` keeps the staircase
      gauge :math:`\varphi=0` at the leftmost source atom.

  Returns:
    ``(phi [n, L], psi [m, L])``, a feasible optimal dual pair per slice:
    ``phi[i, l] + psi[j, l] <= (s_i - t_j)^2`` and
    ``a @ phi + b @ psi`` equals the 1-D OT cost of each slice.
  """
  xs = validation.check_points("x", x)
  ys = validation.check_points("y", y)
  ts = validation.check_points("theta", theta)
  if not (xs[-1] == ys[-1] == ts[-1]):
    raise ValueError(f"dimension mismatch: x has d={xs[-1]}, y has d={ys[-1]}, theta has d={ts[-1]}; all must agree.")
  validation.check_weights("a", a, xs[:1])
  validation.check_weights("b", b, ys[:1])
  check_centering(centering)
  return _sliced_potentials_compiled(*map(jnp.asarray, (x, y, a, b, theta)), centering)


@functools.partial(jax.jit, static_argnames="centering")
def _sliced_potentials_compiled(x, y, a, b, theta, centering: Centering) -> Tuple[jax.Array, jax.Array]:
  """The traced part of :func:`sliced_potentials`: one compilation per shape, not one dispatch per op."""
  return sliced_potentials_sorted(sort_projections(x, theta), sort_projections(y, theta), a, b, centering)


def batched_sliced_potentials(
  x: jax.Array,
  y: jax.Array,
  a: jax.Array,
  b: jax.Array,
  theta: jax.Array,
  centering: Centering = "weighted",
) -> Tuple[jax.Array, jax.Array]:
  """Sliced potentials of a batch of pairs, sorting a shared support once.

  Args:
    x: source points, ``[B, n, d]`` or ``[n, d]`` when shared by all pairs.
    y: target points, ``[B, m, d]`` or ``[m, d]`` when shared by all pairs.
    a: source weights ``[B, n]``.
    b: target weights ``[B, m]``.
    theta: directions ``[L, d]``.
    centering: see :func:`sliced_potentials`.

  Returns:
    ``(phi [B, n, L], psi [B, m, L])``. No input checks: this is the traced
    building block used by the batch APIs, which validate their inputs.
  """
  sort = lambda z: sort_projections(z, theta)  # noqa: E731
  px = sort(x) if x.ndim == 2 else jax.vmap(sort)(x)
  py = sort(y) if y.ndim == 2 else jax.vmap(sort)(y)
  axes = (None if x.ndim == 2 else 0, None if y.ndim == 2 else 0, 0, 0)
  fn = lambda px, py, a, b: sliced_potentials_sorted(px, py, a, b, centering)  # noqa: E731
  return jax.vmap(fn, in_axes=axes)(px, py, a, b)
