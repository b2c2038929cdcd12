"""Bundled data: digit images as measures on a pixel grid."""

from typing import Optional

import numpy as np

from ottsliced.problems import ProblemBatch

__all__ = ["digit_pairs", "grid_points", "load_digits"]


def grid_points(size: int) -> np.ndarray:
  """Pixel centres of a ``size x size`` image on ``[0, 1]^2``, row-major.

  Pixel ``(r, c)`` sits at ``(c / (size - 1), 1 - r / (size - 1))``.

  Returns:
    ``[size * size, 2]`` float32 array.
  """
  if size < 2:
    raise ValueError(f"`size` must be >= 2, got {size}.")
  r, c = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
  pts = np.stack([c / (size - 1), 1.0 - r / (size - 1)], axis=-1)
  return pts.reshape(-1, 2).astype(np.float32)


def load_digits(size: Optional[int] = None) -> np.ndarray:
  """scikit-learn's bundled 8x8 digits as probability vectors.

  Args:
    size: resample the images to ``size x size`` (bilinear) first, e.g. 28 for
      MNIST-sized 784-atom measures; ``None`` keeps 8x8.

  Returns:
    ``[1797, size * size]`` float32 weights, each row summing to 1.
  """
  try:
    from sklearn.datasets import load_digits as _load
  except ImportError as err:  # pragma: no cover - exercised without the extra
    raise ImportError("the digits data needs scikit-learn: pip install 'ottsliced[data]'") from err
  images = _load().images.astype(np.float32)  # [N, 8, 8], values 0..16
  if size is not None and size != 8:
    import jax
    import jax.numpy as jnp

    images = np.asarray(jax.image.resize(jnp.asarray(images), (images.shape[0], size, size), "linear"))
    images = np.clip(images, 0.0, None)
  w = images.reshape(images.shape[0], -1)
  return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def digit_pairs(
  num_pairs: int, *, size: Optional[int] = None, epsilon: float = 1e-2, seed: int = 0, offset: int = 0
) -> ProblemBatch:
  """Random pairs of distinct digit images on a shared pixel grid.

  Args:
    num_pairs: number of pairs ``B``.
    size: image side (``None``: 8).
    epsilon: entropic regularisation of the problems.
    seed: seed of the pair draw.
    offset: skip the first ``offset`` pairs of the draw (disjoint train/test
      pairs from one seed).

  Returns:
    A :class:`ProblemBatch` with shared support ``[size^2, 2]``.
  """
  if int(num_pairs) < 1:
    raise ValueError(f"`num_pairs` must be >= 1, got {num_pairs}.")
  if int(offset) < 0:
    raise ValueError(f"`offset` must be >= 0, got {offset}.")
  if size is not None and int(size) < 2:
    raise ValueError(f"`size` must be >= 2 (pixels per side) or None, got {size}.")
  weights = load_digits(size)
  side = 8 if size is None else size
  rs = np.random.default_rng(seed)
  total = offset + num_pairs
  i = rs.integers(0, weights.shape[0], size=total)
  j = (i + rs.integers(1, weights.shape[0], size=total)) % weights.shape[0]
  i, j = i[offset:], j[offset:]
  pts = grid_points(side)
  return ProblemBatch(pts, pts, weights[i], weights[j], epsilon)
