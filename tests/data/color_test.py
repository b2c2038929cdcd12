"""Tests of the colour-transfer palettes in :mod:`ottsliced.data.color`."""

import numpy as np
import pytest

from ottsliced.data import color
from ottsliced.problems.batch import ProblemBatch

K = 24  # small palettes keep k-means fast


@pytest.fixture(scope="module")
def images():
  return color.load_images(["astronaut", "coffee", "motorcycle"])


@pytest.fixture(scope="module")
def crops(images):
  return color.random_crops(images, 5, 32, seed=0)


@pytest.fixture(scope="module")
def palettes(crops):
  return [color.palette(c, K, seed=0, n_init=1) for c in crops]


def test_load_images_all():
  imgs = color.load_images()
  assert list(imgs) == list(color.IMAGE_NAMES)
  for img in imgs.values():
    assert img.ndim == 3
    assert img.shape[-1] == 3
    assert img.dtype == np.float32
    assert img.min() >= 0
    assert img.max() <= 1
    assert np.all(np.isfinite(img))
  with pytest.raises(ValueError, match="unknown image name"):
    color.load_images(["astronaut", "lena"])


def test_random_crops(images):
  crops = color.random_crops(images, 6, (16, 24), seed=3)
  assert len(crops) == 6
  assert all(c.shape == (16, 24, 3) for c in crops)
  again = color.random_crops(list(images.values()), 9, (16, 24), seed=3)
  for a, b in zip(crops, again):
    np.testing.assert_array_equal(a, b)
  other = color.random_crops(images, 6, (16, 24), seed=4)
  assert not all(np.array_equal(a, b) for a, b in zip(crops, other))
  with pytest.raises(ValueError, match="at least 600x600"):
    color.random_crops(images, 1, 600)
  with pytest.raises(ValueError, match="num_crops"):
    color.random_crops(images, 0, 8)


def test_palette(crops, palettes):
  pal = palettes[0]
  assert isinstance(pal, color.Palette)
  assert pal.points.shape == (K, 3)
  assert pal.weights.shape == (K,)
  assert pal.points.dtype == np.float32
  assert pal.weights.dtype == np.float32
  assert np.all(pal.weights >= 0)
  assert np.all(np.isfinite(pal.weights))
  np.testing.assert_allclose(pal.weights.sum(), 1.0, atol=1e-6)
  assert pal.points.min() >= 0
  assert pal.points.max() <= 1
  again = color.palette(crops[0], K, seed=0, n_init=1)
  np.testing.assert_array_equal(pal.points, again.points)
  # Subsampled fit: weights still count all pixels.
  sub = color.palette(crops[1], K, seed=0, n_init=1, max_pixels=200)
  np.testing.assert_allclose(sub.weights.sum(), 1.0, atol=1e-6)
  assert np.all(np.asarray(sub.weights) * 32 * 32 == np.round(np.asarray(sub.weights) * 32 * 32))


def test_palette_few_colours():
  img = np.zeros((8, 8, 3), np.float32)
  img[:4] = [1.0, 0.0, 0.0]
  pal = color.palette(img, 5, n_init=1)
  assert pal.weights.shape == (5,)
  np.testing.assert_allclose(np.sort(pal.weights)[-2:], [0.5, 0.5])  # empty clusters weigh 0
  with pytest.raises(ValueError, match="fewer than"):
    color.palette(img, 100)


def test_palette_pairs(palettes):
  pairs = color.palette_pairs(palettes, 6, seed=0)
  assert isinstance(pairs.batch, ProblemBatch)
  assert pairs.batch.x.shape == (6, K, 3)
  assert pairs.batch.a.shape == (6, K)
  assert pairs.batch.epsilon == 0.005
  assert pairs.index.shape == (6, 2)
  assert np.all(pairs.index[:, 0] != pairs.index[:, 1])
  i, j = pairs.index[2]
  np.testing.assert_array_equal(pairs.batch.x[2], palettes[i].points)
  np.testing.assert_array_equal(pairs.batch.b[2], palettes[j].weights)
  rest = color.palette_pairs(palettes, 4, seed=0, offset=6)
  full = color.palette_pairs(palettes, 10, seed=0)
  np.testing.assert_array_equal(rest.index, full.index[6:])
  seen = {frozenset(p) for p in pairs.index.tolist()}
  assert not any(frozenset(p) in seen for p in rest.index.tolist())
  with pytest.raises(ValueError, match="distinct unordered pairs"):
    color.palette_pairs(palettes, 11)
  with pytest.raises(ValueError, match="at least 2 palettes"):
    color.palette_pairs(palettes[:1], 1)


def test_palette_pairs_pads_different_sizes(palettes):
  small = color.Palette(palettes[0].points[:10], palettes[0].weights[:10] / palettes[0].weights[:10].sum())
  pairs = color.palette_pairs([small, palettes[1]], 1)
  a = np.asarray(pairs.batch.a if pairs.index[0, 0] == 0 else pairs.batch.b)[0]
  assert a.shape == (K,)
  assert np.all(a[10:] == 0)


def test_recolor(crops, palettes):
  img, pal, tgt = crops[0], palettes[0], palettes[1]
  ident = color.recolor(img, pal, pal.points, np.diag(pal.weights))
  np.testing.assert_allclose(ident, color.quantize(img, pal), atol=1e-6)
  rng = np.random.default_rng(0)
  plan = rng.uniform(size=(K, K)) * pal.weights[:, None]
  out = color.recolor(img, pal, tgt.points, plan)
  assert out.shape == img.shape
  assert out.dtype == np.float32
  assert out.min() >= 0
  assert out.max() <= 1
  # A zero row leaves those pixels unchanged.
  plan[:] = 0
  np.testing.assert_allclose(color.recolor(img, pal, tgt.points, plan), img)
  with pytest.raises(ValueError, match="plan"):
    color.recolor(img, pal, tgt.points, np.ones((K, K + 1)))
