r"""Attention weights: row softmax, Sinkhorn (doubly stochastic) and sliced-amortized.

Doubly-stochastic attention (Sinkformer) reads the logits
:math:`S_{ij}=\langle q_i,k_j\rangle/\sqrt{d}` as minus an OT cost,
:math:`c_{ij}=-S_{ij}`, at :math:`\varepsilon=1`, between the query weights
:math:`a` (uniform over the valid queries) and the key weights :math:`b`
(uniform over the valid keys). With dual potentials :math:`(f,g)` the plan is
:math:`P_{ij}=a_ib_j\exp(f_i+g_j+S_{ij})` and the attention matrix is
:math:`A=P/a_i`. When :math:`f` is the row c-transform of :math:`g`,

.. math::

  A_{ij}=\mathrm{softmax}_j\big(S_{ij}+g_j+\log b_j\big),

a row softmax with one bias per key: rows sum to 1 exactly, and columns sum to
:math:`n_{\rm valid}\,b_j` when :math:`g` is the Sinkhorn potential. The three
modes differ only in where :math:`g` comes from:

* ``softmax``: :math:`g=0` (the usual attention, not doubly stochastic);
* ``sinkhorn``: ``K`` log-domain Sinkhorn iterations from :math:`f=0`, each a
  column then a row c-transform (OTT's order), the last row transform being the
  softmax above; ``K = 1`` normalises the columns of the kernel, then the rows;
* ``sliced``: :math:`g=T(\hat f)`, the column c-transform of a predicted
  potential :math:`\hat f=\Phi\alpha-\tfrac{1}{2\sqrt d}|q|^2`. :math:`\Phi` holds
  the exact 1-D OT potentials (cost :math:`|s-t|^2`) of the queries and keys
  projected on ``L`` directions (:mod:`ottsliced.sliced`); the last term is exact:
  :math:`-\langle q,k\rangle/\sqrt d=\tfrac{1}{2\sqrt d}(|q-k|^2-|q|^2-|k|^2)`, and
  the key term is absorbed by the c-transform. Two passes over the logits (one
  column, one row), against one for ``softmax`` and ``2K`` for ``sinkhorn``.

Two implementations give the same matrices: ``domain="log"`` (the default:
log-sum-exp passes, as Sinkformer and OTT's ``lse_mode``; exact and safe to
train at any logit scale) and ``domain="kernel"`` (one ``exp`` pass, then
matrix-vector products with renormalised scalings, 2-3x faster on CPU; equal to
the log domain while column and row sums stay above ``tiny ** 0.3`` (3e-12 in
float32: logit spreads up to about 25), beyond which it degrades to finite,
row-exact matrices with larger column errors, see ``_kernel_domain``). Train in
the log domain: a network trained in the kernel domain reached such spreads
and its gradients overflowed (the MNIST point-set task, ``configs/attention_sets.yaml``).

Masks follow flax (``True`` = attend). A query is valid when it may attend to
some key, a key when some query may attend to it; invalid tokens get zero weight
(padding changes nothing on valid tokens) and a fully masked query row gets
uniform weights, as in flax. Everything stays finite: masked logits are a large
negative number, never ``-inf``, so gradients through padding are zero, not NaN.
"""

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ottsliced import sliced

__all__ = [
  "DOMAINS",
  "MODES",
  "TokenWeights",
  "attention_logits",
  "column_marginal_error",
  "potential_from_features",
  "predicted_potential",
  "semi_dual",
  "sinkhorn_potential",
  "sinkhorn_weights",
  "sliced_features",
  "sliced_weights",
  "softmax_weights",
  "token_weights",
  "transported_attention",
  "transported_weights",
]

MODES = ("softmax", "sinkhorn", "sliced")
DOMAINS = ("kernel", "log")


class TokenWeights(NamedTuple):
  """Marginals of the attention problem, from the mask.

  Attributes:
    mask: ``[..., n, m]`` boolean, broadcast to the logits' shape, or ``None`` (attend everywhere).
    a: query weights ``[..., n]``, uniform over valid queries (zero elsewhere).
    b: key weights ``[..., m]``, uniform over valid keys.
  """

  mask: Optional[jax.Array]
  a: jax.Array
  b: jax.Array


def _negative(dtype) -> jax.Array:
  # Large but finite: two of them still add up to a finite number.
  return jnp.asarray(jnp.finfo(dtype).min / 4, dtype)


def attention_logits(query: jax.Array, key: jax.Array) -> jax.Array:
  r""":math:`S=\langle q,k\rangle/\sqrt d` per head.

  Args:
    query: ``[batch..., n, heads, d]`` (flax's layout).
    key: ``[batch..., m, heads, d]``.

  Returns:
    ``[batch..., heads, n, m]``.
  """
  query = query / jnp.sqrt(query.shape[-1]).astype(query.dtype)
  return jnp.einsum("...qhd,...khd->...hqk", query, key)


def token_weights(logits: jax.Array, mask: Optional[jax.Array] = None) -> TokenWeights:
  """Uniform weights on the valid queries and keys of a flax-style mask.

  Args:
    logits: ``[..., n, m]``.
    mask: boolean, broadcastable to ``logits.shape`` (``True`` = attend), or ``None``.

  Returns:
    :class:`TokenWeights`.
  """
  if mask is None:
    n, m = logits.shape[-2:]
    a = jnp.full(logits.shape[:-1], 1.0 / n, logits.dtype)
    return TokenWeights(None, a, jnp.full(logits.shape[:-2] + (m,), 1.0 / m, logits.dtype))
  mask = jnp.broadcast_to(jnp.asarray(mask, bool), logits.shape)
  rows = jnp.any(mask, axis=-1).astype(logits.dtype)
  cols = jnp.any(mask, axis=-2).astype(logits.dtype)
  a = rows / jnp.maximum(jnp.sum(rows, axis=-1, keepdims=True), 1.0)
  b = cols / jnp.maximum(jnp.sum(cols, axis=-1, keepdims=True), 1.0)
  return TokenWeights(mask, a, b)


def _safe_log(w: jax.Array) -> jax.Array:
  return jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), _negative(w.dtype))


def _masked(logits: jax.Array, mask: Optional[jax.Array]) -> jax.Array:
  if mask is None:
    return logits
  return jnp.where(mask, logits, _negative(logits.dtype))


def _check_domain(domain: str) -> None:
  if domain not in DOMAINS:
    raise ValueError(f"`domain` must be one of {DOMAINS}, got {domain!r}.")


# Log domain: the reference (Sinkformer's and OTT's lse mode), never under- or overflows.


def _column_transform(masked: jax.Array, log_a: jax.Array, f: jax.Array, b: jax.Array) -> jax.Array:
  r""":math:`g_j=-\log\sum_i a_i e^{f_i+S_{ij}}` ``[..., m]``, zero on invalid keys."""
  g = -jax.nn.logsumexp(masked + (log_a + f)[..., :, None], axis=-2)
  return jnp.where(b > 0, g, 0.0)


def _row_transform(masked: jax.Array, log_b: jax.Array, g: jax.Array, a: jax.Array) -> jax.Array:
  r""":math:`f_i=-\log\sum_j b_j e^{g_j+S_{ij}}` ``[..., n]``, zero on invalid queries."""
  f = -jax.nn.logsumexp(masked + (log_b + g)[..., None, :], axis=-1)
  return jnp.where(a > 0, f, 0.0)


def _sinkhorn_potential(masked: jax.Array, w: TokenWeights, f: jax.Array, num_iterations: int) -> jax.Array:
  """``f`` after ``num_iterations`` log-domain Sinkhorn iterations (column then row transform), ``[..., n]``."""
  log_a, log_b = _safe_log(w.a), _safe_log(w.b)

  def iteration(_, f):
    return _row_transform(masked, log_b, _column_transform(masked, log_a, f, w.b), w.a)

  return jax.lax.fori_loop(0, num_iterations, iteration, f)


class _Transport(NamedTuple):
  r"""The transported attention :math:`A_{ij}=K_{ij}v_j/\sum_kK_{ik}v_k` in factors (see :func:`_transport`)."""

  kernel: jax.Array  # K [..., n, m]
  column_scaling: jax.Array  # v [..., m]


def _transport(masked: jax.Array, w: TokenWeights, f: jax.Array) -> _Transport:
  r"""Column transform :math:`g=T(f)` and the row softmax with key bias ``g + log b``, with one ``exp`` pass.

  With :math:`z_{ij}=S_{ij}+f_i` and :math:`M_j=\max_i z_{ij}`, the kernel
  :math:`K_{ij}=e^{z_{ij}-M_j}` has column sums :math:`c_j=\sum_ia_iK_{ij}\ge
  a_{i^*}` (no underflow), :math:`g_j=-M_j-\log c_j`, and the attention is
  :math:`A_{ij}=\mathrm{softmax}_j(S_{ij}+g_j+\log b_j)=K_{ij}v_j/r_i` with
  :math:`v_j=b_j/c_j` and :math:`r_i=\sum_jK_{ij}v_j` (the :math:`e^{f_i}`
  cancels in the row). A row whose every entry sits more than
  :math:`B=-0.3\log(\mathrm{tiny})` (26 in float32) below its column's maximum
  would underflow; it is lifted to :math:`B` below (its own normalisation does
  not depend on :math:`f_i`, and its share of any column sum stays below
  :math:`e^{-B}`, under float rounding), so the result equals the log domain's
  at any logit scale. The maxima are constants for autodiff (the result does
  not depend on them). Passes over ``[n, m]``: a column max, a row max, the
  ``exp`` with the column sums; the row sums come with the value product.
  """
  b = jnp.where(jnp.any(w.b > 0, axis=-1, keepdims=True), w.b, 1.0)  # no valid key at all: every key
  z = masked + f[..., :, None]
  col_max = jax.lax.stop_gradient(jnp.max(z, axis=-2))
  reach = -0.3 * float(np.log(jnp.finfo(masked.dtype).tiny))
  # max_j (z_ij - M_j) over valid keys, as z plus a per-key offset (no [n, m] temporary: 15 % faster on XLA:CPU).
  offset = jnp.where(b > 0, -col_max, _negative(z.dtype))
  deficit = jax.lax.stop_gradient(jnp.max(z + offset[..., None, :], axis=-1))
  # <= 0 on valid keys (max(deficit, -reach) at most); the cap only touches keys of weight 0.
  exponent = z - col_max[..., None, :] - jnp.minimum(deficit + reach, 0.0)[..., :, None]
  kernel = jnp.exp(jnp.minimum(exponent, 0.0))
  col = jnp.sum(w.a[..., :, None] * kernel, axis=-2)
  return _Transport(kernel, b / jnp.where(b > 0, col, 1.0))


def _log_domain(masked: jax.Array, w: TokenWeights, f: jax.Array, num_iterations: int) -> jax.Array:
  """``num_iterations - 1`` Sinkhorn iterations from ``f``, a column transform, the row softmax."""
  tr = _transport(masked, w, _sinkhorn_potential(masked, w, f, num_iterations - 1))
  scaled = tr.kernel * tr.column_scaling[..., None, :]
  return scaled / jnp.sum(scaled, axis=-1, keepdims=True)


# Kernel domain: one exp pass, then matrix-vector products.


def _normalised(v: jax.Array) -> jax.Array:
  return v / jnp.max(v, axis=-1, keepdims=True)


def _kernel_domain(masked: jax.Array, w: TokenWeights, f: jax.Array, num_iterations: int) -> jax.Array:
  r"""The same matrix from :math:`E=e^{S-\max_j S}` and scalings :math:`u=a\,e^{f+\max_j S}`, :math:`v=b\,e^{g}`.

  Scalings are renormalised to max 1 (the matrix only sees ratios). The result
  equals the log domain's (to float rounding) whenever every column sum
  :math:`u^\top E` and row sum :math:`Ev` of a valid token stays above
  ``tiny ** 0.3`` (about 3e-12 in float32, i.e. logit or potential spreads up to
  about 25; the gradient's ``1 / sum**2`` terms then stay finite): terms lost
  to underflow are relatively below 1e-20. Beyond,
  a column sum is clamped at that floor and a row whose sum falls below it
  takes its softmax row: finite, rows still sum to 1, columns less exact (the
  column error shows it); ``domain="log"`` is exact there. No branch: a
  ``lax.cond`` fallback cost XLA:CPU a copy of the matrix (+40 % time).
  """
  floor = jnp.finfo(masked.dtype).tiny ** 0.3
  row_max = jnp.max(masked, axis=-1)
  kernel = jnp.exp(masked - row_max[..., None])  # masked entries 0; a fully masked row is uniform

  def column(u):
    col = jnp.maximum(jnp.einsum("...i,...ij->...j", u, kernel), floor)
    return _normalised(w.b / jnp.where(w.b > 0, col, 1.0))  # b = 0: no 0 / tiny**2 in the gradient

  def row(v):
    return jnp.einsum("...ij,...j->...i", kernel, v)

  def iteration(_, u):
    return _normalised(w.a / jnp.where(w.a > 0, jnp.maximum(row(column(u)), floor), 1.0))

  log_u = jnp.where(w.a > 0, f + row_max, _negative(f.dtype))
  u = w.a * jnp.exp(log_u - jnp.max(log_u, axis=-1, keepdims=True))
  u = jax.lax.fori_loop(0, num_iterations - 1, iteration, u)
  v = column(u)
  rs = row(v)
  lost = rs < floor  # rows whose every key lost its scaling to underflow: their softmax row
  scale = jnp.where(lost[..., None], 1.0, v[..., None, :]) / jnp.where(lost, jnp.sum(kernel, axis=-1), rs)[..., :, None]
  return kernel * scale


def _doubly_stochastic(masked, w, f, num_iterations, domain):
  fn = _kernel_domain if domain == "kernel" else _log_domain
  return fn(masked, w, f, num_iterations)


@jax.jit
def softmax_weights(logits: jax.Array, mask: Optional[jax.Array] = None) -> jax.Array:
  """The usual attention: a row softmax of the (masked) logits, ``[..., n, m]``."""
  w = token_weights(logits, mask)
  return jax.nn.softmax(_masked(logits, w.mask), axis=-1)


def sinkhorn_weights(
  logits: jax.Array, mask: Optional[jax.Array] = None, num_iterations: int = 3, domain: str = "log"
) -> jax.Array:
  """Sinkformer attention: ``num_iterations`` Sinkhorn iterations, ``[..., n, m]``.

  Each iteration is a column then a row c-transform, from ``f = 0`` (OTT's
  ``Sinkhorn`` order, :math:`\\varepsilon=1`, cost ``-logits``); the rows of the
  result sum to 1 exactly, the columns to ``n_valid * b`` as the iterations
  converge. Differentiable (unrolled), vmappable.

  Args:
    logits: ``[..., n, m]``.
    mask: boolean, broadcastable to ``logits`` (``True`` = attend), or ``None``.
    num_iterations: ``K >= 1``.
    domain: ``"log"`` (log-sum-exp passes, as Sinkformer and OTT's
      ``lse_mode``; exact at any scale) or ``"kernel"`` (one ``exp`` pass, then
      matrix-vector products, 2-3x faster on CPU; equal to ``"log"`` unless
      logit spreads exceed about 25 in float32, where rows stay exact and
      columns lose accuracy; for inference, see the module docstring).
  """
  if int(num_iterations) < 1:
    raise ValueError(f"`num_iterations` must be >= 1, got {num_iterations}.")
  _check_domain(domain)
  return _sinkhorn_weights(logits, mask, int(num_iterations), domain)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _sinkhorn_weights(logits: jax.Array, mask: Optional[jax.Array], num_iterations: int, domain: str) -> jax.Array:
  w = token_weights(logits, mask)
  return _doubly_stochastic(_masked(logits, w.mask), w, jnp.zeros_like(w.a), num_iterations, domain)


@jax.jit
def sliced_features(query: jax.Array, key: jax.Array, a: jax.Array, b: jax.Array, theta: jax.Array) -> jax.Array:
  r"""The feature matrix :math:`\Phi`: 1-D OT potentials of the projected queries, per head and direction.

  Exact potentials (cost :math:`|s-t|^2`) of the uniform measures on the valid
  queries and keys projected on each direction
  (:func:`ottsliced.sliced.uniform.uniform_source_potentials`).

  Args:
    query: ``[batch..., n, heads, d]``.
    key: ``[batch..., m, heads, d]``.
    a: query weights ``[batch..., heads, n]`` (only ``a > 0`` is used).
    b: key weights ``[batch..., heads, m]`` (only ``b > 0`` is used).
    theta: directions per head ``[heads, L, d]``.

  Returns:
    ``[batch..., heads, L, n]``; values on invalid queries are not dual values.
  """
  s = jnp.einsum("...nhd,hld->...hln", query, theta)  # [..., h, L, n]
  t = jnp.einsum("...mhd,hld->...hlm", key, theta)
  s_valid = jnp.broadcast_to((a > 0)[..., None, :], s.shape)
  t_valid = jnp.broadcast_to((b > 0)[..., None, :], t.shape)
  return sliced.uniform_source_potentials(s, t, s_valid, t_valid)


@jax.jit
def potential_from_features(query: jax.Array, features: jax.Array, alpha: jax.Array) -> jax.Array:
  r""":math:`\hat f=\Phi\alpha-|q|^2/(2\sqrt d)` ``[batch..., heads, n]`` from :func:`sliced_features`.

  Args:
    query: ``[batch..., n, heads, d]``.
    features: ``[batch..., heads, L, n]``.
    alpha: coefficients per head ``[heads, L]``.
  """
  q_sq = jnp.sum(query * query, axis=-1)  # [..., n, h]
  phi_alpha = jnp.einsum("...hln,hl->...hn", features, alpha)
  return phi_alpha - 0.5 * jnp.swapaxes(q_sq, -1, -2) / jnp.sqrt(query.shape[-1]).astype(query.dtype)


@jax.jit
def predicted_potential(
  query: jax.Array, key: jax.Array, a: jax.Array, b: jax.Array, theta: jax.Array, alpha: jax.Array
) -> jax.Array:
  r"""Sliced prediction of the query potential, :math:`\hat f=\Phi\alpha-|q|^2/(2\sqrt d)`.

  :func:`sliced_features` contracted with ``alpha`` (:func:`potential_from_features`).

  Args:
    query: ``[batch..., n, heads, d]``.
    key: ``[batch..., m, heads, d]``.
    a: query weights ``[batch..., heads, n]`` (only ``a > 0`` is used).
    b: key weights ``[batch..., heads, m]`` (only ``b > 0`` is used).
    theta: directions per head ``[heads, L, d]``.
    alpha: coefficients per head ``[heads, L]``.

  Returns:
    ``[batch..., heads, n]``; values on invalid queries are not dual values.
  """
  return potential_from_features(query, sliced_features(query, key, a, b, theta), alpha)


def sliced_weights(
  query: jax.Array,
  key: jax.Array,
  theta: jax.Array,
  alpha: jax.Array,
  mask: Optional[jax.Array] = None,
  logits: Optional[jax.Array] = None,
  domain: str = "log",
) -> jax.Array:
  r"""Sliced-amortized doubly-stochastic attention, ``[batch..., heads, n, m]``.

  :math:`g=T(\hat f)` (one column pass) with :math:`\hat f` from
  :func:`predicted_potential`, then the row softmax with key bias ``g`` (one
  row pass): rows sum to 1 exactly, columns approximately.

  Args:
    query: ``[batch..., n, heads, d]``.
    key: ``[batch..., m, heads, d]``.
    theta: ``[heads, L, d]`` directions.
    alpha: ``[heads, L]`` coefficients.
    mask: boolean, broadcastable to ``[batch..., heads, n, m]``, or ``None``.
    logits: :func:`attention_logits` of ``query, key`` when already computed.
    domain: as in :func:`sinkhorn_weights`.
  """
  _check_domain(domain)
  logits = attention_logits(query, key) if logits is None else logits
  return _sliced_weights(query, key, theta, alpha, mask, logits, domain)


@functools.partial(jax.jit, static_argnums=6)
def _sliced_weights(query, key, theta, alpha, mask, logits, domain) -> jax.Array:
  w = token_weights(logits, mask)
  return _transported_weights(logits, predicted_potential(query, key, w.a, w.b, theta, alpha), mask, domain)


def transported_weights(
  logits: jax.Array, f: jax.Array, mask: Optional[jax.Array] = None, domain: str = "log"
) -> jax.Array:
  r"""Attention from a query potential: :math:`g=T(f)`, then the row softmax with key bias ``g``, ``[..., n, m]``.

  One column and one row pass; rows sum to 1 exactly, columns to
  ``n_valid * b`` when ``f`` is the Sinkhorn potential (the sliced mode with
  :math:`f=\hat f`; ``f = 0`` is Sinkhorn with ``K = 1``).

  Args:
    logits: ``[..., n, m]``.
    f: query potentials ``[..., n]`` (the :func:`sinkhorn_weights` gauge; invalid queries ignored).
    mask: as in :func:`sinkhorn_weights`.
    domain: as in :func:`sinkhorn_weights`.
  """
  _check_domain(domain)
  return _transported_weights(logits, f, mask, domain)


@functools.partial(jax.jit, static_argnums=3)
def _transported_weights(logits, f, mask, domain) -> jax.Array:
  w = token_weights(logits, mask)
  return _doubly_stochastic(_masked(logits, w.mask), w, jnp.where(w.a > 0, f, 0.0), 1, domain)


@jax.jit
def transported_attention(
  logits: jax.Array, f: jax.Array, value: jax.Array, mask: Optional[jax.Array] = None
) -> jax.Array:
  r"""The attention output :math:`\sum_jA_{ij}v_j` of :func:`transported_weights`, without forming ``A``.

  :math:`A_{ij}=K_{ij}v_j/r_i` (one ``exp`` pass, see :func:`transported_weights`),
  so the output is :math:`(K(v\odot V))_i/r_i`, and :math:`r=Kv` comes from
  the same product (``v`` appended to the values as one more column): the row
  normalisation moves after the value product. Equal to
  ``einsum("...hqk,...khd->...qhd", transported_weights(logits, f, mask), value)`` up to rounding.

  Args:
    logits: ``[batch..., heads, n, m]``.
    f: query potentials ``[batch..., heads, n]``.
    value: ``[batch..., m, heads, d_v]`` (flax's layout).
    mask: as in :func:`sinkhorn_weights`.

  Returns:
    ``[batch..., n, heads, d_v]``.
  """
  w = token_weights(logits, mask)
  tr = _transport(_masked(logits, w.mask), w, jnp.where(w.a > 0, f, 0.0))
  v = jnp.swapaxes(tr.column_scaling, -1, -2)[..., None]  # [..., m, heads, 1]
  out = jnp.einsum("...hqk,...khd->...qhd", tr.kernel, jnp.concatenate([value * v, v], axis=-1))
  return out[..., :-1] / out[..., -1:]  # the last column is the row sums


@functools.partial(jax.jit, static_argnums=2)
def sinkhorn_potential(logits: jax.Array, mask: Optional[jax.Array], num_iterations: int) -> jax.Array:
  """The query potential ``f`` ``[..., n]`` after ``num_iterations`` log-domain Sinkhorn iterations from 0.

  ``sinkhorn_weights(logits, mask, K)`` is
  ``transported_weights(logits, sinkhorn_potential(logits, mask, K - 1), mask)``.
  """
  w = token_weights(logits, mask)
  return _sinkhorn_potential(_masked(logits, w.mask), w, jnp.zeros_like(w.a), num_iterations)


@jax.jit
def semi_dual(logits: jax.Array, f: jax.Array, mask: Optional[jax.Array] = None) -> jax.Array:
  r"""Entropic semi-dual :math:`\langle a,f\rangle+\langle b,T(f)\rangle` per problem, ``[...]``.

  Concave in ``f``, maximal (at the OT value minus the entropy term) at the
  Sinkhorn potential; the sliced head's auxiliary objective.

  Args:
    logits: ``[..., n, m]``.
    f: query potentials ``[..., n]`` (the :func:`sinkhorn_weights` gauge).
    mask: as in :func:`sinkhorn_weights`.
  """
  w = token_weights(logits, mask)
  masked = _masked(logits, w.mask)
  f = jnp.where(w.a > 0, f, 0.0)
  g = _column_transform(masked, _safe_log(w.a), f, w.b)
  return jnp.sum(w.a * f, axis=-1) + jnp.sum(w.b * g, axis=-1)


@jax.jit
def column_marginal_error(weights: jax.Array, mask: Optional[jax.Array] = None) -> jax.Array:
  r"""L1 error of the plan's column marginal, :math:`\sum_j|\sum_i a_iA_{ij}-b_j|`, ``[...]``.

  Zero for exact doubly-stochastic attention (OTT's marginal error of the plan
  :math:`a_iA_{ij}`); rows are exact in every mode here.

  Args:
    weights: attention ``[..., n, m]`` (rows sum to 1).
    mask: the mask the weights were computed with.
  """
  w = token_weights(weights, mask)
  return jnp.sum(jnp.abs(jnp.einsum("...n,...nm->...m", w.a, weights) - w.b), axis=-1)
