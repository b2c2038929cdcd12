"""The attention task: its models (padding, permutation invariance), data preparation, and the quick config."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ottsliced.experiments import run_config
from ottsliced.experiments.attention_models import (
  AttentionSpec,
  SetClassifier,
  VisionTransformer,
  image_patches,
  point_sets,
)

CONFIGS = pathlib.Path(__file__).parents[2] / "configs"
SPECS = [
  AttentionSpec("softmax", "softmax"),
  AttentionSpec("sinkhorn", "sinkhorn", num_iterations=3),
  AttentionSpec("sliced", "sliced", num_directions=4),
]


def test_image_patches_and_point_sets():
  images = np.zeros((2, 28, 28), np.float32)
  images[0, 3, 5] = 1.0
  images[1, 10:20, 10:20] = 0.8
  patches, valid = image_patches(images, 7)
  assert patches.shape == (2, 16, 49)
  assert valid.all()
  assert patches[0, 0, 3 * 7 + 5] == 1.0  # pixel (3, 5) is in patch (0, 0) at row 3, column 5
  points, valid = point_sets(images, 0.5, max_points=64, seed=0)
  assert points.shape == (2, 64, 3)
  assert valid[0].sum() == 1
  assert valid[1].sum() == 64  # 100 bright pixels -> a random 64
  np.testing.assert_allclose(points[0, 0], [5 / 27, 1 - 3 / 27, 1.0], rtol=1e-6)
  assert not points[0, 1:].any()  # padding is zero and invalid
  with pytest.raises(ValueError, match="divide"):
    image_patches(images, 5)
  with pytest.raises(ValueError, match="no pixel"):
    point_sets(np.zeros((1, 28, 28)), 0.5, 8, 0)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_set_classifier_is_permutation_invariant_and_ignores_padding(spec):
  rs = np.random.default_rng(0)
  points = rs.uniform(size=(2, 12, 3)).astype(np.float32)
  valid = np.ones((2, 12), bool)
  valid[1, 9:] = False
  model = SetClassifier(spec=spec, width=16, depth=2, num_heads=2, mlp_width=16)
  params = model.init(jax.random.PRNGKey(0), points, valid)
  out = model.apply(params, points, valid)
  perm = rs.permutation(12)
  np.testing.assert_allclose(model.apply(params, points[:, perm], valid[:, perm]), out, atol=1e-5)
  junk = points.copy()
  junk[1, 9:] = 100.0  # padded points' values do not matter
  np.testing.assert_allclose(model.apply(params, junk, valid), out, atol=1e-5)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_vision_transformer_trains(spec):
  """A few steps lower the loss in every mode (gradients reach every parameter group)."""
  import optax

  rs = np.random.default_rng(1)
  x = rs.normal(size=(16, 16, 49)).astype(np.float32)
  y = rs.integers(0, 10, 16)
  valid = np.ones((16, 16), bool)
  model = VisionTransformer(spec=spec, width=16, depth=1, num_heads=2, mlp_width=16)
  params = model.init(jax.random.PRNGKey(0), x, valid)["params"]
  opt = optax.adam(1e-2)
  state = opt.init(params)

  def loss(p):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, x, valid), y))

  @jax.jit
  def step(params, state):
    updates, state = opt.update(jax.grad(loss)(params), state)
    return optax.apply_updates(params, updates), state

  first = float(loss(params))
  for _ in range(15):
    params, state = step(params, state)
  assert float(loss(params)) < 0.7 * first
  if spec.mode == "sliced":
    assert "alpha" in params["block_0"]["attention"]


def test_bad_attention_configs_are_refused(tmp_path):
  from ottsliced.experiments import load_config
  from ottsliced.experiments.config import ConfigError

  text = (CONFIGS / "attention_quick.yaml").read_text()
  for old, new, message in [
    ("epochs: 1", "epochs: 0", "epochs"),
    ("seeds: [0]", "seeds: []", "seeds"),
    ("repeats: 3", "repeats: 0", "repeats"),
    ("num_directions: 4}", "num_directions: 0}", "num_directions"),
    ("kind: vit", "kind: cnn", "kind"),
  ]:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace(old, new, 1))
    with pytest.raises((ConfigError, ValueError), match=message):
      load_config(str(bad))


@pytest.mark.slow
def test_attention_quick_config(tmp_path):
  metrics = run_config(str(CONFIGS / "attention_quick.yaml"), out_dir=str(tmp_path), progress=False)
  saved = json.loads((tmp_path / "metrics.json").read_text())
  rows = saved["variants"]
  assert set(rows) == {"softmax", "sinkhorn K=3", "sliced L=4", "sliced L=4 + dual"}
  for r in rows.values():
    assert 0.0 <= r["accuracy_mean"] <= 1.0
    assert min(r["layer_ms_log"], r["weights_ms_log"], r["train_seconds"]) > 0
  # Column errors: Sinkhorn (K=3) closes the columns, softmax does not, sliced in between.
  assert rows["sinkhorn K=3"]["column_error"] < rows["sliced L=4"]["column_error"] < rows["softmax"]["column_error"]
  assert pathlib.Path(saved["figures"]["attention_maps"]).exists()
  table = (tmp_path / "table.md").read_text()
  assert "| sliced L=4 + dual |" in table
  assert "× softmax" in table
  assert metrics["tokens"] == 16
