"""``DoublyStochasticAttention``: a flax drop-in for ``nn.MultiHeadDotProductAttention``.

Swapping is one line::

  attn = nn.MultiHeadDotProductAttention(num_heads=4, qkv_features=64)
  attn = DoublyStochasticAttention(num_heads=4, qkv_features=64, mode="sliced")

The projections are the same ``DenseGeneral`` layers under the same names
(``query``, ``key``, ``value``, ``out``), so the parameter tree is flax's plus,
in ``sliced`` mode, ``theta [heads, L, head_dim]`` (directions, fixed unless
``learn_directions``) and ``alpha [heads, L]`` (the head, trained with the
network). The weights come from :mod:`ottsliced.attention.weights`; in the
doubly-stochastic modes the layer applies them to the values without forming
the matrix (:func:`~ottsliced.attention.weights.transported_attention`) unless
dropout or ``sow_weights`` needs it.

Auxiliary objective: when the ``"losses"`` collection is mutable
(``model.apply(..., mutable=["losses"])``), the sliced layer sows
``sliced_dual``, the mean entropic semi-dual of its prediction computed with
the logits and features held fixed, so that adding ``-weight * sliced_dual`` to
the task loss trains ``alpha`` (and only ``alpha``) towards the Sinkhorn
potential. ``sow_weights=True`` sows the attention matrices in
``"intermediates"`` as flax does.
"""

import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from ottsliced.attention import weights as attention_weights

__all__ = ["DoublyStochasticAttention", "init_directions"]


def init_directions(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
  """Random unit directions ``[heads, L, d]``, orthonormal in blocks of ``d`` (``L > d`` repeats blocks)."""
  heads, num, d = shape
  blocks = -(-num // d)
  g = jax.random.normal(key, (heads, blocks, d, d), jnp.float32)
  q, _ = jnp.linalg.qr(g)
  return jnp.swapaxes(q, -1, -2).reshape(heads, blocks * d, d)[:, :num].astype(dtype)


def init_alpha(num_directions: int, head_dim: int) -> Callable[..., jax.Array]:
  r"""``alpha`` at the separable guess: :math:`\tfrac{1}{2\sqrt d}\,d/L` per direction.

  The potential of :math:`|q-k|^2/(2\sqrt d)` is :math:`\sum_\ell\varphi_\ell/(2\sqrt d)`
  over an orthonormal basis when the transport splits along it; ``L`` random
  directions cover :math:`\mathbb{R}^d` ``L/d`` times.
  """

  def init(_, shape, dtype=jnp.float32):
    return jnp.full(shape, head_dim / (2.0 * jnp.sqrt(head_dim) * num_directions), dtype)

  return init


class DoublyStochasticAttention(nn.Module):
  """Multi-head attention with ``softmax``, ``sinkhorn`` or ``sliced`` weights.

  Attributes:
    num_heads: number of heads.
    mode: ``"softmax"``, ``"sinkhorn"`` (Sinkformer, ``num_iterations`` iterations)
      or ``"sliced"`` (amortized by sliced potentials).
    num_iterations: Sinkhorn iterations ``K`` (``sinkhorn`` mode).
    num_directions: ``L`` directions per head (``sliced`` mode).
    learn_directions: train ``theta`` with the network (default: fixed).
    domain: ``"log"`` (exact at any logit scale, train with it; without
      dropout or sown weights the matrix is never formed:
      :func:`ottsliced.attention.weights.transported_attention`) or
      ``"kernel"`` (forms the matrix; Sinkhorn iterations 2-3x faster on CPU,
      equal up to logit spreads of about 25 in float32), see
      :func:`ottsliced.attention.weights.sinkhorn_weights`.
    qkv_features: query/key/value width (default: the input's).
    out_features: output width (default: the input's).
    dtype: computation dtype (default: inferred).
    param_dtype: parameter dtype.
    dropout_rate: dropout on the attention weights.
    deterministic: no dropout (can be given at call time).
    kernel_init: projections' kernel initializer.
    bias_init: projections' bias initializer.
    use_bias: projections with biases.
  """

  num_heads: int
  mode: str = "sliced"
  num_iterations: int = 3
  num_directions: int = 16
  learn_directions: bool = False
  domain: str = "log"
  qkv_features: Optional[int] = None
  out_features: Optional[int] = None
  dtype: Optional[Any] = None
  param_dtype: Any = jnp.float32
  dropout_rate: float = 0.0
  deterministic: Optional[bool] = None
  kernel_init: Callable[..., jax.Array] = nn.initializers.lecun_normal()
  bias_init: Callable[..., jax.Array] = nn.initializers.zeros_init()
  use_bias: bool = True

  @nn.compact
  def __call__(
    self,
    inputs_q: jax.Array,
    inputs_k: Optional[jax.Array] = None,
    inputs_v: Optional[jax.Array] = None,
    *,
    mask: Optional[jax.Array] = None,
    deterministic: Optional[bool] = None,
    dropout_rng: Optional[jax.Array] = None,
    sow_weights: bool = False,
  ) -> jax.Array:
    """Attend ``inputs_q`` to ``inputs_k`` / ``inputs_v``.

    Args:
      inputs_q: ``[batch..., n, features]``.
      inputs_k: ``[batch..., m, features]`` (default ``inputs_q``).
      inputs_v: ``[batch..., m, features]`` (default ``inputs_k``).
      mask: boolean ``[batch..., heads, n, m]`` or broadcastable (``True`` = attend).
      deterministic: no dropout.
      dropout_rng: key for dropout (default: the ``"dropout"`` stream).
      sow_weights: sow the attention weights in ``"intermediates"``.

    Returns:
      ``[batch..., n, out_features]``.
    """
    if self.mode not in attention_weights.MODES:
      raise ValueError(f"`mode` must be one of {attention_weights.MODES}, got {self.mode!r}.")
    inputs_k = inputs_q if inputs_k is None else inputs_k
    inputs_v = inputs_k if inputs_v is None else inputs_v
    features = self.out_features or inputs_q.shape[-1]
    qkv_features = self.qkv_features or inputs_q.shape[-1]
    if self.mode == "sinkhorn" and self.num_iterations < 1:
      raise ValueError(f"`num_iterations` must be >= 1, got {self.num_iterations}.")
    if self.mode == "sliced" and self.num_directions < 1:
      raise ValueError(f"`num_directions` must be >= 1, got {self.num_directions}.")
    if qkv_features % self.num_heads:
      raise ValueError(f"`qkv_features` ({qkv_features}) must be divisible by `num_heads` ({self.num_heads}).")
    head_dim = qkv_features // self.num_heads
    dense = functools.partial(
      nn.DenseGeneral,
      axis=-1,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      features=(self.num_heads, head_dim),
      kernel_init=self.kernel_init,
      bias_init=self.bias_init,
      use_bias=self.use_bias,
    )
    query = dense(name="query")(inputs_q)
    key = dense(name="key")(inputs_k)
    value = dense(name="value")(inputs_v)
    logits = attention_weights.attention_logits(query, key)

    dropout = self.dropout_rate > 0.0 and not nn.merge_param("deterministic", self.deterministic, deterministic)
    # Doubly-stochastic modes in the log domain: the row normalisation moves after the value product
    # (`transported_attention`), unless the matrix itself is needed (dropout on it, or sown).
    fused = self.mode != "softmax" and self.domain == "log" and not (dropout or sow_weights)
    if self.mode == "softmax":
      attn = attention_weights.softmax_weights(logits, mask)
    elif self.mode == "sinkhorn":
      if fused:
        f = attention_weights.sinkhorn_potential(logits, mask, self.num_iterations - 1)
      else:
        attn = attention_weights.sinkhorn_weights(logits, mask, self.num_iterations, self.domain)
    else:
      shape = (self.num_heads, self.num_directions, head_dim)
      theta = self.param("theta", init_directions, shape, self.param_dtype)
      if not self.learn_directions:
        theta = jax.lax.stop_gradient(theta)
      alpha = self.param("alpha", init_alpha(self.num_directions, head_dim), shape[:2], self.param_dtype)
      theta, alpha = theta.astype(query.dtype), alpha.astype(query.dtype)
      w = attention_weights.token_weights(logits, mask)
      phi = attention_weights.sliced_features(query, key, w.a, w.b, theta)
      f = attention_weights.potential_from_features(query, phi, alpha)
      if not fused:
        attn = attention_weights.transported_weights(logits, f, mask, self.domain)
      if self.is_mutable_collection("losses") and not self.is_initializing():
        self.sow("losses", "sliced_dual", self._held_dual(query, logits, mask, phi, alpha))

    if fused:
      out = attention_weights.transported_attention(logits, f, value, mask)
    else:
      if dropout:
        rng = dropout_rng if dropout_rng is not None else self.make_rng("dropout")
        keep = jax.random.bernoulli(rng, 1.0 - self.dropout_rate, attn.shape)
        attn = jnp.where(keep, attn / (1.0 - self.dropout_rate), 0.0).astype(attn.dtype)
      if sow_weights:
        self.sow("intermediates", "attention_weights", attn)
      out = jnp.einsum("...hqk,...khd->...qhd", attn, value)
    return nn.DenseGeneral(
      features=features,
      axis=(-2, -1),
      kernel_init=self.kernel_init,
      bias_init=self.bias_init,
      use_bias=self.use_bias,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="out",
    )(out)

  @staticmethod
  def _held_dual(query, logits, mask, features, alpha) -> jax.Array:
    """Mean semi-dual of the prediction from the layer's own features, gradients to ``alpha`` only."""
    query, logits, features = map(jax.lax.stop_gradient, (query, logits, features))
    f = attention_weights.potential_from_features(query, features, alpha)
    return jnp.mean(attention_weights.semi_dual(logits, f, mask))
