"""Benchmark point clouds: seeded Gaussian mixtures and tabular classes."""

import numpy as np
import pytest

from ottsliced.data.clouds import gaussian_mixture_pair, tabular_class_pairs


def test_gaussian_mixture_pair_is_seeded_and_normalised():
  x, y, a, b = gaussian_mixture_pair(3, 40, 5, m=30)
  assert (x.shape, y.shape, a.shape, b.shape) == ((40, 5), (30, 5), (40,), (30,))
  assert x.dtype == np.float32
  np.testing.assert_allclose([a.sum(), b.sum()], 1.0, rtol=1e-6)
  assert min(a.min(), b.min()) > 0
  again = gaussian_mixture_pair(3, 40, 5, m=30)
  for u, v in zip((x, y, a, b), again):
    np.testing.assert_array_equal(u, v)
  assert not np.array_equal(gaussian_mixture_pair(4, 40, 5, m=30)[0], x)
  assert gaussian_mixture_pair(0, 7, 2)[1].shape == (7, 2)  # m defaults to n
  with pytest.raises(ValueError, match="need n, dim"):
    gaussian_mixture_pair(0, 0, 2)


def test_tabular_class_pairs_are_classes_of_the_data_set():
  pairs = tabular_class_pairs("iris", 4, seed=1)
  assert len(pairs) == 4  # iris has 3 class pairs: the fourth cycles
  for x, y, a, b in pairs:
    assert (x.shape, y.shape) == ((50, 4), (50, 4))
    np.testing.assert_allclose(a, 1 / 50, rtol=1e-6)
    np.testing.assert_allclose(b, 1 / 50, rtol=1e-6)
    assert not np.array_equal(x, y)
  np.testing.assert_array_equal(pairs[3][0], pairs[0][0])
  # Standardised features: over the three classes, mean 0 and unit variance per feature.
  classes = {tuple(p[0][0]): p[0] for p in pairs} | {tuple(p[1][0]): p[1] for p in pairs}
  allx = np.concatenate(list(classes.values()))
  assert allx.shape == (150, 4)
  np.testing.assert_allclose(allx.mean(0), 0.0, atol=1e-5)
  np.testing.assert_allclose(allx.std(0), 1.0, atol=1e-5)
  with pytest.raises(ValueError, match="unknown data set"):
    tabular_class_pairs("titanic", 1)
