"""Small transformers for the attention task: a vision transformer on image patches and a set classifier.

Both are pre-norm encoders whose attention is :class:`~ottsliced.attention.DoublyStochasticAttention`
in the mode given by :class:`AttentionSpec`; everything else (widths, depth, seeds) is shared, so the
modes are compared on the same network. ``__call__(inputs, valid, sow_weights)`` returns logits
``[batch, classes]``; ``valid`` marks real tokens (padding is masked out of attention and pooling).
"""

import dataclasses
from typing import Literal, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ottsliced.attention import DoublyStochasticAttention

__all__ = [
  "AttentionSpec",
  "EncoderBlock",
  "SetClassifier",
  "VisionTransformer",
  "image_patches",
  "point_sets",
]


@dataclasses.dataclass(frozen=True)
class AttentionSpec:
  """One attention variant of the comparison.

  Attributes:
    name: label in tables.
    mode: ``softmax``, ``sinkhorn`` or ``sliced``.
    num_iterations: Sinkhorn iterations ``K`` (``sinkhorn``).
    num_directions: ``L`` per head (``sliced``).
    dual_weight: weight of the auxiliary loss ``-sliced_dual`` (``sliced``; 0 = task loss only).
    domain: ``log`` (training) or ``kernel``; the timing also times every doubly-stochastic variant in
      the kernel domain with the same parameters (see :func:`ottsliced.attention.sinkhorn_weights`).
  """

  name: str
  mode: Literal["softmax", "sinkhorn", "sliced"]
  num_iterations: int = 1
  num_directions: int = 8
  dual_weight: float = 0.0
  domain: Literal["kernel", "log"] = "log"

  def __post_init__(self):
    if min(self.num_iterations, self.num_directions) < 1 or self.dual_weight < 0:
      raise ValueError(f"variant {self.name!r}: num_iterations and num_directions must be >= 1, dual_weight >= 0")


class EncoderBlock(nn.Module):
  """Pre-norm block: ``x + attn(LN(x))``, then ``x + MLP(LN(x))``."""

  spec: AttentionSpec
  num_heads: int
  mlp_width: int

  @nn.compact
  def __call__(self, x: jax.Array, mask: Optional[jax.Array], sow_weights: bool = False) -> jax.Array:
    attn = DoublyStochasticAttention(
      num_heads=self.num_heads,
      mode=self.spec.mode,
      num_iterations=self.spec.num_iterations,
      num_directions=self.spec.num_directions,
      domain=self.spec.domain,
      name="attention",
    )
    x = x + attn(nn.LayerNorm()(x), mask=mask, sow_weights=sow_weights)
    y = nn.Dense(self.mlp_width)(nn.LayerNorm()(x))
    return x + nn.Dense(x.shape[-1])(nn.gelu(y))


class _Encoder(nn.Module):
  spec: AttentionSpec
  width: int
  depth: int
  num_heads: int
  mlp_width: int
  num_classes: int = 10

  def encode(self, tokens: jax.Array, valid: jax.Array, sow_weights: bool) -> jax.Array:
    mask = nn.make_attention_mask(valid, valid)
    for i in range(self.depth):
      tokens = EncoderBlock(self.spec, self.num_heads, self.mlp_width, name=f"block_{i}")(tokens, mask, sow_weights)
    tokens = nn.LayerNorm()(tokens)
    w = valid[..., None].astype(tokens.dtype)
    pooled = jnp.sum(tokens * w, axis=-2) / jnp.maximum(jnp.sum(w, axis=-2), 1.0)
    return nn.Dense(self.num_classes)(pooled)


class VisionTransformer(_Encoder):
  """Patches ``[batch, tokens, patch_dim]`` -> linear embedding + learned positions -> encoder -> mean pool."""

  @nn.compact
  def __call__(self, patches: jax.Array, valid: jax.Array, sow_weights: bool = False) -> jax.Array:
    tokens = nn.Dense(self.width)(patches)
    pos = self.param("positions", nn.initializers.normal(0.02), tokens.shape[-2:])
    return self.encode(tokens + pos, valid, sow_weights)


class SetClassifier(_Encoder):
  """Point sets ``[batch, points, features]`` -> per-point embedding (no positions) -> encoder -> masked mean pool.

  Permutation invariant: no positional embedding, attention and pooling ignore order.
  """

  @nn.compact
  def __call__(self, points: jax.Array, valid: jax.Array, sow_weights: bool = False) -> jax.Array:
    tokens = nn.Dense(self.width)(nn.gelu(nn.Dense(self.width)(points)))
    return self.encode(tokens, valid, sow_weights)


def image_patches(images: np.ndarray, patch: int) -> Tuple[np.ndarray, np.ndarray]:
  """``[N, H, W]`` images -> ``(patches [N, (H/p)(W/p), p*p], valid [N, tokens])`` (all valid)."""
  num, h, w = images.shape
  if h % patch or w % patch:
    raise ValueError(f"patch size {patch} must divide the image size {h}x{w}")
  x = images.reshape(num, h // patch, patch, w // patch, patch).transpose(0, 1, 3, 2, 4)
  x = x.reshape(num, (h // patch) * (w // patch), patch * patch).astype(np.float32)
  return x, np.ones(x.shape[:2], bool)


def point_sets(images: np.ndarray, threshold: float, max_points: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
  """Images as sets of their bright pixels: ``(points [N, max_points, 3], valid [N, max_points])``.

  Each pixel above ``threshold`` is a point ``(x, y, intensity)`` (``x, y`` in
  ``[0, 1]``); images with more than ``max_points`` keep a random subset
  (``seed``), images with fewer are padded (``valid = False``).
  """
  num, h, w = images.shape
  rs = np.random.default_rng(seed)
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  coords = np.stack([cols.ravel() / (w - 1), 1.0 - rows.ravel() / (h - 1)], axis=-1)
  points = np.zeros((num, max_points, 3), np.float32)
  valid = np.zeros((num, max_points), bool)
  for i, image in enumerate(images.reshape(num, -1)):  # data preparation, once, outside any jit
    idx = np.flatnonzero(image > threshold)
    if idx.size > max_points:
      idx = np.sort(rs.choice(idx, max_points, replace=False))
    points[i, : idx.size, :2] = coords[idx]
    points[i, : idx.size, 2] = image[idx]
    valid[i, : idx.size] = True
  if not valid.any(axis=1).all():
    raise ValueError(f"some images have no pixel above threshold {threshold}")
  return points, valid
