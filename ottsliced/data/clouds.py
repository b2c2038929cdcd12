"""Point clouds for solver benchmarks: Gaussian mixtures in any dimension, and tabular data sets as class clouds."""

from typing import List, Tuple

import numpy as np

__all__ = ["Cloud", "gaussian_mixture_pair", "tabular_class_pairs"]

Cloud = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x [n, d], y [m, d], a [n], b [m]


def _mixture(rs: np.random.Generator, num: int, dim: int, components: int, spread: float) -> np.ndarray:
  means = rs.normal(size=(components, dim)) * spread
  return means[rs.integers(components, size=num)] + rs.normal(size=(num, dim))


def gaussian_mixture_pair(
  seed: int, n: int, dim: int, m: int = 0, components: int = 5, spread: float = 3.0, dtype=np.float32
) -> Cloud:
  """Two independent Gaussian mixtures with random weights: a seeded benchmark problem.

  Each side draws ``components`` means from :math:`\\mathcal N(0, \\text{spread}^2 I_d)`
  and unit-variance clusters around them (the two sides have different
  means, so mass must travel between clusters); weights are uniform on
  ``[0.5, 1.5]``, normalised.

  Args:
    seed: the pair's seed (pairs of one benchmark use consecutive seeds).
    n: source atoms.
    dim: dimension ``d``.
    m: target atoms (default ``n``).
    components: mixture components per side.
    spread: standard deviation of the component means.
    dtype: floating dtype of the arrays.

  Returns:
    ``(x [n, d], y [m, d], a [n], b [m])``.
  """
  if min(n, dim, components) < 1 or m < 0:
    raise ValueError(f"need n, dim, components >= 1 and m >= 0, got {n}, {dim}, {components}, {m}.")
  rs = np.random.default_rng(seed)
  m = m or n
  x, y = _mixture(rs, n, dim, components, spread), _mixture(rs, m, dim, components, spread)
  a, b = rs.uniform(0.5, 1.5, size=n), rs.uniform(0.5, 1.5, size=m)
  return x.astype(dtype), y.astype(dtype), (a / a.sum()).astype(dtype), (b / b.sum()).astype(dtype)


def tabular_class_pairs(name: str, num_pairs: int, seed: int = 0, dtype=np.float32) -> List[Cloud]:
  """Pairs of classes of a scikit-learn tabular data set as uniform clouds (standardised features).

  Bundled with scikit-learn, so no download: ``"wine"`` (178 samples, 13
  features, 3 classes), ``"breast_cancer"`` (569, 30, 2), ``"iris"`` (150, 4,
  3) and ``"digits"`` (1,797, 64, 10; pixels / 16). Pair ``k`` transports
  class ``i`` to class ``j`` for the ``k``-th of the class pairs ``i < j`` in a
  seeded order (cycling when there are fewer pairs than asked).

  Returns:
    ``num_pairs`` tuples ``(x, y, a, b)`` of different sizes.
  """
  from sklearn import datasets

  loaders = {
    "wine": datasets.load_wine,
    "breast_cancer": datasets.load_breast_cancer,
    "iris": datasets.load_iris,
    "digits": datasets.load_digits,
  }
  if name not in loaders:
    raise ValueError(f"unknown data set {name!r}; choose one of {sorted(loaders)}.")
  features, labels = loaders[name](return_X_y=True)
  if name == "digits":
    features = features / 16.0
  else:
    features = (features - features.mean(0)) / np.maximum(features.std(0), 1e-12)
  classes = np.unique(labels)
  pairs = [(i, j) for i in classes for j in classes if i < j]
  order = np.random.default_rng(seed).permutation(len(pairs))
  out = []
  for k in range(int(num_pairs)):
    i, j = pairs[order[k % len(pairs)]]
    x, y = features[labels == i], features[labels == j]
    a, b = np.full(len(x), 1.0 / len(x)), np.full(len(y), 1.0 / len(y))
    out.append((x.astype(dtype), y.astype(dtype), a.astype(dtype), b.astype(dtype)))
  return out
