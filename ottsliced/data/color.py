"""Colour transfer between image palettes.

Offline substitute for the WikiArt paintings: the RGB photographs bundled with
scikit-image (no download), cut into random crops. Each crop is quantised with
``MiniBatchKMeans`` into a palette: atoms = RGB centroids in ``[0, 1]^3``,
weights = cluster frequencies. Pairs of palettes are OT problems with supports
that differ per pair; a transport plan between two palettes recolours an image
through the barycentric map.

Needs the ``data`` extra (scikit-image, scikit-learn): ``pip install 'ottsliced[data]'``.
"""

from typing import Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ottsliced.data.pairs import pair_indices
from ottsliced.problems.batch import ProblemBatch

__all__ = [
  "IMAGE_NAMES",
  "ColorPairs",
  "Palette",
  "load_images",
  "palette",
  "palette_pairs",
  "quantize",
  "random_crops",
  "recolor",
]

_DATA_EXTRA = "pip install 'ottsliced[data]'"

#: Names of the bundled RGB images :func:`load_images` knows. ``"motorcycle"``
#: is the left image of ``skimage.data.stereo_motorcycle()``.
IMAGE_NAMES: Tuple[str, ...] = (
  "astronaut",
  "coffee",
  "chelsea",
  "rocket",
  "hubble_deep_field",
  "retina",
  "immunohistochemistry",
  "motorcycle",
)


class Palette(NamedTuple):
  """A quantised image as a discrete measure in RGB space.

  Attributes:
    points: ``[k, 3]`` float32 RGB centroids in ``[0, 1]``.
    weights: ``[k]`` float32 cluster frequencies, summing to 1; empty clusters
      have weight 0 (they are kept so that every palette has ``k`` atoms).
  """

  points: np.ndarray
  weights: np.ndarray


class ColorPairs(NamedTuple):
  """Pairs of palettes as OT problems.

  Attributes:
    batch: :class:`ProblemBatch` with ``x, y`` ``[B, k, 3]`` and ``a, b`` ``[B, k]``.
    index: ``[B, 2]`` int array, the palettes ``(i, j)`` of each pair.
  """

  batch: ProblemBatch
  index: np.ndarray


def _skimage_data():
  try:
    import skimage.data
  except ImportError as err:
    raise ImportError(f"the colour images need scikit-image: {_DATA_EXTRA}") from err
  return skimage.data


def load_images(names: Optional[Sequence[str]] = None) -> Dict[str, np.ndarray]:
  """scikit-image's bundled RGB photographs as float images.

  Args:
    names: a subset of :data:`IMAGE_NAMES` (``None``: all of them, in that order).

  Returns:
    ``{name: [h, w, 3] float32 image in [0, 1]}`` in the order of ``names``
    (alpha channels dropped).
  """
  names = IMAGE_NAMES if names is None else (names,) if isinstance(names, str) else tuple(names)
  if not names:
    raise ValueError("`names` is empty: give at least one image name.")
  unknown = [n for n in names if n not in IMAGE_NAMES]
  if unknown:
    raise ValueError(f"unknown image name(s) {unknown}; choose from {list(IMAGE_NAMES)}.")
  data = _skimage_data()
  out = {}
  for name in names:
    img = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[-1] < 3:
      raise ValueError(f"image {name!r} is not an RGB image (shape {img.shape}).")  # pragma: no cover
    img = img[..., :3]
    if np.issubdtype(img.dtype, np.integer):
      img = img.astype(np.float32) / float(np.iinfo(img.dtype).max)
    out[name] = np.clip(img.astype(np.float32), 0.0, 1.0)
  return out


def random_crops(
  images: Union[Mapping[str, np.ndarray], Sequence[np.ndarray]],
  num_crops: int,
  crop_size: Union[int, Tuple[int, int]],
  seed: int = 0,
) -> List[np.ndarray]:
  """Random crops of random images, reproducible from ``seed``.

  Crop ``t`` uses row ``t`` of ``np.random.default_rng(seed).random((num_crops, 3))``
  (image, top, left), so the crops of a larger ``num_crops`` extend those of a
  smaller one.

  Args:
    images: ``[h, w, 3]`` images (a list, or a dict as from :func:`load_images`).
    num_crops: number of crops.
    crop_size: side ``s`` or ``(height, width)`` of the crops.
    seed: seed of the draw.

  Returns:
    A list of ``num_crops`` ``[height, width, 3]`` crops (copies).
  """
  imgs = list(images.values()) if isinstance(images, Mapping) else list(images)
  if not imgs:
    raise ValueError("`images` is empty: give at least one image.")
  if int(num_crops) < 1:
    raise ValueError(f"`num_crops` must be >= 1, got {num_crops}.")
  ch, cw = (int(crop_size), int(crop_size)) if np.ndim(crop_size) == 0 else (int(v) for v in crop_size)
  if ch < 1 or cw < 1:
    raise ValueError(f"`crop_size` must be positive, got {crop_size}.")
  for k, img in enumerate(imgs):
    if np.ndim(img) != 3 or img.shape[0] < ch or img.shape[1] < cw:
      raise ValueError(f"image {k} (shape {np.shape(img)}) is not an [h, w, c] image of at least {ch}x{cw} pixels.")
  u = np.random.default_rng(seed).random((int(num_crops), 3))
  which = np.minimum((u[:, 0] * len(imgs)).astype(int), len(imgs) - 1)
  crops = []
  for k, fr, fc in zip(which, u[:, 1], u[:, 2]):  # loop over crops, not pixels
    img = imgs[k]
    top = min(int(fr * (img.shape[0] - ch + 1)), img.shape[0] - ch)
    left = min(int(fc * (img.shape[1] - cw + 1)), img.shape[1] - cw)
    crops.append(np.array(img[top : top + ch, left : left + cw]))
  return crops


def _pixels(image: np.ndarray) -> np.ndarray:
  img = np.asarray(image)
  if img.ndim != 3 or img.shape[-1] != 3:
    raise ValueError(f"`image` must be an [h, w, 3] RGB image, got shape {img.shape}.")
  px = img.reshape(-1, 3).astype(np.float32)
  if not np.all(np.isfinite(px)):
    raise ValueError("`image` has non-finite values.")
  return px


def palette(
  image: np.ndarray,
  num_colors: int = 500,
  seed: int = 0,
  *,
  n_init: int = 4,
  max_pixels: int = 20_000,
  num_threads: Optional[int] = 1,
) -> Palette:
  """Quantise an RGB image into a palette with ``MiniBatchKMeans``.

  ``MiniBatchKMeans(n_clusters=num_colors, n_init=n_init, random_state=seed)``
  is fitted on at most ``max_pixels`` pixels (a seeded uniform subsample
  without replacement when the image has more, for speed); the weights are the
  frequencies of the nearest centroid over *all* pixels. Empty clusters keep
  their centroid with weight 0.

  k-means runs with ``num_threads`` OpenMP threads (default 1, via
  ``threadpoolctl``): on a small, busy machine (2 cores shared with JAX or
  other jobs) scikit-learn's default thread pool oversubscribes and was
  measured 2-30x slower than one thread.

  Args:
    image: ``[h, w, 3]`` RGB image in ``[0, 1]`` with ``h * w >= num_colors``.
    num_colors: palette size ``k``.
    seed: seed of the subsample and of k-means.
    n_init: k-means restarts (the paper: 4).
    max_pixels: pixel subsample size for the fit.
    num_threads: OpenMP threads for k-means (``None``: scikit-learn's default).

  Returns:
    A :class:`Palette` with ``points`` ``[k, 3]`` and ``weights`` ``[k]``.
  """
  try:
    from sklearn.cluster import MiniBatchKMeans
  except ImportError as err:
    raise ImportError(f"palettes need scikit-learn: {_DATA_EXTRA}") from err
  px = _pixels(image)
  k = int(num_colors)
  if k < 1:
    raise ValueError(f"`num_colors` must be >= 1, got {num_colors}.")
  if px.shape[0] < k:
    raise ValueError(f"the image has {px.shape[0]} pixels, fewer than `num_colors`={k}.")
  if int(max_pixels) < k:
    raise ValueError(f"`max_pixels`={max_pixels} must be >= `num_colors`={k}.")
  fit = px
  if px.shape[0] > max_pixels:
    sub = np.random.default_rng(seed).choice(px.shape[0], size=int(max_pixels), replace=False)
    fit = px[sub]
  import contextlib
  import warnings

  limits = contextlib.nullcontext()
  if num_threads is not None:
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    limits = threadpool_limits(limits=int(num_threads), user_api="openmp")
  with limits, warnings.catch_warnings():
    # Fewer distinct colours than clusters: duplicate centroids, weight 0 for the extras.
    warnings.filterwarnings("ignore", message="Number of distinct clusters")
    km = MiniBatchKMeans(n_clusters=k, n_init=int(n_init), random_state=seed).fit(fit)
  centres = np.clip(km.cluster_centers_.astype(np.float32), 0.0, 1.0)
  labels = _nearest(centres, px)
  weights = np.bincount(labels, minlength=k).astype(np.float64)
  return Palette(centres, (weights / weights.sum()).astype(np.float32))


def _nearest(points: np.ndarray, queries: np.ndarray) -> np.ndarray:
  """Index of the nearest of ``points [k, 3]`` for each of ``queries [P, 3]`` (vectorised KD-tree)."""
  from scipy.spatial import cKDTree

  return cKDTree(np.asarray(points, np.float64)).query(np.asarray(queries, np.float64))[1]


def quantize(image: np.ndarray, pal: Palette) -> np.ndarray:
  """Replace each pixel by its nearest centroid of positive weight.

  Args:
    image: ``[h, w, 3]`` RGB image.
    pal: its :class:`Palette`.

  Returns:
    ``[h, w, 3]`` float32 quantised image.
  """
  px = _pixels(image)
  live = np.flatnonzero(np.asarray(pal.weights) > 0)
  pts = np.asarray(pal.points, np.float32)[live]
  return pts[_nearest(pts, px)].reshape(np.shape(image))


def palette_pairs(
  palettes: Sequence[Palette], num_pairs: int, *, epsilon: float = 0.005, seed: int = 0, offset: int = 0
) -> ColorPairs:
  """Unordered pairs of distinct palettes as a batch of OT problems.

  The pairs are :func:`ottsliced.data.pair_indices` of the palettes: a seeded,
  prefix-consistent sequence in which no unordered pair occurs twice, so
  ``offset`` gives pairs disjoint from the first ``offset`` ones (train/test).
  Palettes of different sizes are padded with zero-weight atoms (coordinates of
  their first centroid).

  Args:
    palettes: at least two :class:`Palette` objects.
    num_pairs: number of pairs ``B``.
    epsilon: entropic regularisation (the paper: 5e-3).
    seed: seed of the pair sequence.
    offset: skip the first ``offset`` pairs.

  Returns:
    A :class:`ColorPairs` ``(batch, index)``: ``batch.x, batch.y`` ``[B, k, 3]``,
    ``batch.a, batch.b`` ``[B, k]``, ``index`` ``[B, 2]``.
  """
  pals = list(palettes)
  if len(pals) < 2:
    raise ValueError(f"need at least 2 palettes to form pairs, got {len(pals)}.")
  sizes = []
  for t, p in enumerate(pals):
    if np.ndim(p.points) != 2 or np.shape(p.points)[1] != 3 or np.shape(p.weights) != (np.shape(p.points)[0],):
      raise ValueError(
        f"palettes[{t}] must have points [k, 3] and weights [k], got {np.shape(p.points)}, {np.shape(p.weights)}."
      )
    sizes.append(np.shape(p.points)[0])
  kmax = max(sizes)
  pts = np.stack([np.concatenate([p.points, np.repeat(p.points[:1], kmax - s, 0)]) for p, s in zip(pals, sizes)])
  wts = np.stack([np.concatenate([p.weights, np.zeros(kmax - s)]) for p, s in zip(pals, sizes)])
  pts, wts = pts.astype(np.float32), wts.astype(np.float32)
  idx = pair_indices(len(pals), num_pairs, seed=seed, offset=offset)
  batch = ProblemBatch(pts[idx[:, 0]], pts[idx[:, 1]], wts[idx[:, 0]], wts[idx[:, 1]], epsilon)
  return ColorPairs(batch, idx)


def recolor(
  image: np.ndarray,
  source_palette: Union[Palette, np.ndarray],
  target_palette_points: np.ndarray,
  plan: np.ndarray,
) -> np.ndarray:
  """Recolour an image through a transport plan between two palettes.

  Each pixel takes its nearest source centroid ``i`` (among the centroids of
  positive weight when ``source_palette`` is a :class:`Palette`) and becomes
  the barycentric image ``T(i) = sum_j P_ij y_j / sum_j P_ij``. Pixels whose
  centroid row of ``P`` has no mass keep their colour.

  Args:
    image: ``[h, w, 3]`` RGB image in ``[0, 1]``.
    source_palette: the image's :class:`Palette`, or its ``[k, 3]`` centroids.
    target_palette_points: ``[l, 3]`` target centroids ``y``.
    plan: ``[k, l]`` transport plan ``P`` (numpy or JAX array).

  Returns:
    ``[h, w, 3]`` float32 image in ``[0, 1]``.
  """
  px = _pixels(image)
  if isinstance(source_palette, Palette):
    src, live = np.asarray(source_palette.points, np.float32), np.asarray(source_palette.weights) > 0
  else:
    src = np.asarray(source_palette, np.float32)
    live = np.ones(src.shape[:1], bool)
  tgt = np.asarray(target_palette_points, np.float64)
  p = np.asarray(plan, np.float64)
  if src.ndim != 2 or src.shape[1] != 3 or tgt.ndim != 2 or tgt.shape[1] != 3:
    raise ValueError(f"palette points must be [k, 3] and [l, 3], got {src.shape} and {tgt.shape}.")
  if p.shape != (src.shape[0], tgt.shape[0]):
    raise ValueError(f"`plan` must have shape {(src.shape[0], tgt.shape[0])} (source x target atoms), got {p.shape}.")
  if not np.all(np.isfinite(p)) or np.any(p < 0):
    raise ValueError("`plan` must be finite and non-negative.")
  if not live.any():
    raise ValueError("`source_palette` has no centroid of positive weight.")
  mass = p.sum(axis=1)
  ok = mass > 0
  mapped = np.where(ok[:, None], p @ tgt / np.where(ok, mass, 1.0)[:, None], 0.0)  # [k, 3]
  live_idx = np.flatnonzero(live)
  nearest = live_idx[_nearest(src[live_idx], px)]  # [P]
  out = np.where(ok[nearest][:, None], mapped[nearest], px)
  return np.clip(out, 0.0, 1.0).astype(np.float32).reshape(np.shape(image))
