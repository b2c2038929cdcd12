"""Shipped models: listed with their provenance, loaded by name, and they warm-start held-out pairs."""

import numpy as np
import pytest

import ottsliced as ots
from ottsliced import pretrained
from ottsliced.data import color as color_data
from ottsliced.experiments import load_config, mnist

SHIPPED = {"mnist-ra": (1e-2, 2, 16, "ra"), "mnist-oa": (1e-2, 2, 16, "oa")}
SHIPPED.update({"color-ra": (5e-3, 3, 32, "ra"), "color-oa": (5e-3, 3, 32, "oa")})
SHIPPED["mnist-ra-corrected"] = (1e-2, 2, 16, "ra")


def test_shipped_models_are_listed_with_their_provenance():
  models = pretrained.available()
  assert set(models) == set(SHIPPED)
  for name, (epsilon, dim, num_projections, method) in SHIPPED.items():
    info = models[name]
    assert (info["epsilon"], info["dim"], info["num_projections"], info["method"]) == (
      epsilon,
      dim,
      num_projections,
      method,
    )
    assert info["summary"]["num_pairs"] == 50
    assert info["summary"]["config"] == f"configs/{name.split('-')[0]}.yaml"
    model = pretrained.load_pretrained(name)
    assert isinstance(model, ots.SlicedInitializer)
    assert np.all(np.isfinite(np.asarray(model.alpha)))


def test_unknown_name_lists_the_shipped_ones():
  with pytest.raises(ValueError, match="mnist-ra"):
    pretrained.load_pretrained("mnist")


def _iterations(batch, initializer):
  out = ots.solve_batch(batch, initializer, threshold=1e-3, max_iterations=5000, inner_iterations=1)
  return np.asarray(ots.num_iterations(out))


@pytest.mark.parametrize("name", ["mnist-ra", "mnist-oa"])
def test_mnist_models_warm_start_held_out_pairs(name):
  """On pairs of the MNIST protocol's test split (never fitted on), fewer iterations than zeros."""
  _, config = load_config("configs/mnist.yaml", overrides={"data.num_test": 6})
  test = mnist.make_pairs(config.data, mnist.load_images(config.data))["test"]
  zeros, warm = _iterations(test, None), _iterations(test, pretrained.load_pretrained(name))
  assert np.mean(warm) < 0.8 * np.mean(zeros), (warm, zeros)


@pytest.mark.parametrize("name", ["color-ra", "color-oa"])
def test_color_models_warm_start_other_palettes(name):
  """Palettes of crops of another size and colour count than the training ones: fewer iterations than zeros."""
  crops = color_data.random_crops(color_data.load_images(["coffee", "chelsea", "rocket"]), 6, 64, seed=11)
  palettes = [color_data.palette(c, 120, seed=0, n_init=1) for c in crops]
  test = color_data.palette_pairs(palettes, 6, epsilon=5e-3, seed=3).batch
  zeros, warm = _iterations(test, None), _iterations(test, pretrained.load_pretrained(name))
  assert np.mean(warm) < 0.8 * np.mean(zeros), (warm, zeros)


def test_mnist_correction_head_is_mnist_ra_with_fitted_corrections():
  """The corrected model starts like mnist-ra and its corrections cut the iterations on held-out pairs."""
  ra, corrected = pretrained.load_pretrained("mnist-ra"), pretrained.load_pretrained("mnist-ra-corrected")
  assert ra.corrections is None
  assert corrected.corrections.shape == (2, 16)
  np.testing.assert_array_equal(corrected.alpha, ra.alpha)
  np.testing.assert_array_equal(corrected.theta, ra.theta)
  _, config = load_config("configs/mnist.yaml", overrides={"data.num_test": 6})
  test = mnist.make_pairs(config.data, mnist.load_images(config.data))["test"]
  solver = ots.SlicedSinkhorn.from_initializer(corrected.bind(test.x, test.y), threshold=1e-3)
  np.testing.assert_array_equal(solver.coef, corrected.corrections)
  out = ots.solve_batch(test, solver=solver)
  assert np.all(np.asarray(out.converged))
  # Measured (6 pairs): RA-OT alone in OTT's Sinkhorn 26.5 iterations to 1e-3, RA-OT + default steps 8.8, the head 8.7.
  assert np.mean(np.asarray(ots.num_iterations(out))) < 0.5 * np.mean(_iterations(test, ra))
