"""DoublyStochasticAttention: a drop-in for flax's attention, under jit, vmap and grad, with padding."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ottsliced.attention import (
  DoublyStochasticAttention,
  attention_logits,
  column_marginal_error,
  predicted_potential,
  semi_dual,
  sliced_weights,
  token_weights,
)

MODES = [("softmax", {}), ("sinkhorn", {"num_iterations": 3}), ("sliced", {"num_directions": 8})]


def _inputs(batch=2, n=6, features=8, seed=0):
  return jax.random.normal(jax.random.PRNGKey(seed), (batch, n, features))


def test_softmax_mode_is_flax_attention_with_the_same_parameters():
  x = _inputs()
  ours = DoublyStochasticAttention(num_heads=2, qkv_features=8, mode="softmax")
  flax_attn = nn.MultiHeadDotProductAttention(num_heads=2, qkv_features=8)
  params = ours.init(jax.random.PRNGKey(1), x)
  assert jax.tree.structure(params) == jax.tree.structure(flax_attn.init(jax.random.PRNGKey(1), x))
  mask = nn.make_attention_mask(jnp.arange(6) < 4, jnp.arange(6) < 5)[None]
  np.testing.assert_allclose(ours.apply(params, x, mask=mask), flax_attn.apply(params, x, mask=mask), atol=1e-6)


@pytest.mark.parametrize(("mode", "kw"), MODES)
def test_gradients_finite_with_padding(mode, kw):
  x = _inputs()
  valid = jnp.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
  mask = nn.make_attention_mask(valid, valid)
  layer = DoublyStochasticAttention(num_heads=2, mode=mode, **kw)
  params = layer.init(jax.random.PRNGKey(1), x)
  grads = jax.grad(lambda p: jnp.sum(jnp.where(valid[..., None], layer.apply(p, x, mask=mask), 0.0) ** 2))(params)
  for leaf in jax.tree.leaves(grads):
    assert np.all(np.isfinite(leaf))
  if mode == "sliced":
    g = grads["params"]
    assert float(jnp.abs(g["alpha"]).max()) > 0  # the head trains with the task loss
    assert float(jnp.abs(g["theta"]).max()) == 0  # fixed directions


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(("mode", "kw"), MODES)
def test_padding_changes_nothing(mode, kw):
  x = _inputs(n=5)
  padded = jnp.concatenate([x, 7.0 * jnp.ones((2, 3, 8))], axis=1)
  valid = jnp.arange(8) < 5
  mask = nn.make_attention_mask(valid, valid)[None]
  layer = DoublyStochasticAttention(num_heads=2, mode=mode, param_dtype=jnp.float64, **kw)
  params = layer.init(jax.random.PRNGKey(1), x)
  np.testing.assert_allclose(layer.apply(params, padded, mask=mask)[:, :5], layer.apply(params, x), atol=1e-12)


@pytest.mark.parametrize(("mode", "kw"), MODES)
def test_compiles_once_for_new_parameters(mode, kw):
  x = _inputs()
  layer = DoublyStochasticAttention(num_heads=2, mode=mode, **kw)
  traces = []

  @jax.jit
  def apply(params, x):
    traces.append(1)
    return layer.apply(params, x)

  for seed in range(3):
    apply(layer.init(jax.random.PRNGKey(seed), x), x)
  assert len(traces) == 1


def test_vmap_and_cross_attention_shapes():
  q, kv = _inputs(n=6, features=8), _inputs(n=9, features=8, seed=1)
  layer = DoublyStochasticAttention(num_heads=2, qkv_features=16, out_features=5, num_directions=4)
  params = layer.init(jax.random.PRNGKey(0), q, kv)
  out = layer.apply(params, q, kv)
  assert out.shape == (2, 6, 5)
  per_example = jax.vmap(lambda a, b: layer.apply(params, a, b))(q, kv)
  np.testing.assert_allclose(per_example, out, atol=1e-5)


def test_sown_weights_rows_exact_and_dual_trains_alpha_only():
  x = _inputs(n=10)
  layer = DoublyStochasticAttention(num_heads=2, num_directions=8)
  params = layer.init(jax.random.PRNGKey(0), x)
  _, state = layer.apply(params, x, sow_weights=True, mutable=["intermediates", "losses"])
  attn = state["intermediates"]["attention_weights"][0]
  assert attn.shape == (2, 2, 10, 10)
  np.testing.assert_allclose(attn.sum(-1), 1.0, atol=1e-5)
  assert float(column_marginal_error(attn).mean()) > 0

  def dual(p):
    _, s = layer.apply(p, x, mutable=["losses"])
    return s["losses"]["sliced_dual"][0]

  # The dual is the semi-dual of the layer's own prediction, and the sown weights are `sliced_weights`'.
  p = params["params"]
  q = jnp.einsum("bnf,fhd->bnhd", x, p["query"]["kernel"]) + p["query"]["bias"]
  k = jnp.einsum("bnf,fhd->bnhd", x, p["key"]["kernel"]) + p["key"]["bias"]
  logits = attention_logits(q, k)
  w = token_weights(logits)
  f = predicted_potential(q, k, w.a, w.b, p["theta"], p["alpha"])
  np.testing.assert_allclose(dual(params), jnp.mean(semi_dual(logits, f)), rtol=1e-5)
  np.testing.assert_allclose(attn, sliced_weights(q, k, p["theta"], p["alpha"]), atol=1e-6)

  grads = jax.grad(dual)(params)["params"]
  assert float(jnp.abs(grads["alpha"]).max()) > 0
  for name in ("query", "key", "value", "out"):
    assert all(float(jnp.abs(leaf).max()) == 0 for leaf in jax.tree.leaves(grads[name]))
  # Without the collection nothing is sown (and nothing extra computed).
  assert "losses" not in layer.apply(params, x, mutable=["intermediates"])[1]


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(("mode", "kw"), MODES[1:])
def test_fused_output_equals_the_materialised_weights(mode, kw):
  """Without dropout or sown weights the layer never forms the matrix; the output is the same."""
  x = _inputs(n=7)
  valid = jnp.array([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]], bool)
  mask = nn.make_attention_mask(valid, valid)
  layer = DoublyStochasticAttention(num_heads=2, mode=mode, param_dtype=jnp.float64, **kw)
  params = layer.init(jax.random.PRNGKey(1), x)
  fused = layer.apply(params, x, mask=mask)
  materialised, _ = layer.apply(params, x, mask=mask, sow_weights=True, mutable=["intermediates"])
  np.testing.assert_allclose(fused, materialised, atol=1e-12)

  def loss(p, sow):
    if sow:
      return loss_of(layer.apply(p, x, mask=mask, sow_weights=True, mutable=["intermediates"])[0])
    return loss_of(layer.apply(p, x, mask=mask))

  def loss_of(out):
    return jnp.sum(jnp.where(valid[..., None], out, 0.0) ** 2)

  for a, b in zip(jax.tree.leaves(jax.grad(loss)(params, False)), jax.tree.leaves(jax.grad(loss)(params, True))):
    np.testing.assert_allclose(a, b, atol=1e-10)


def test_dropout_and_bad_arguments():
  x = _inputs()
  layer = DoublyStochasticAttention(num_heads=2, mode="sinkhorn", dropout_rate=0.5)
  params = layer.init(jax.random.PRNGKey(0), x, deterministic=True)
  a = layer.apply(params, x, deterministic=False, rngs={"dropout": jax.random.PRNGKey(1)})
  b = layer.apply(params, x, deterministic=True)
  assert not np.allclose(a, b)
  with pytest.raises(ValueError, match="mode"):
    DoublyStochasticAttention(num_heads=2, mode="sinkformer").init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match="num_iterations"):
    DoublyStochasticAttention(num_heads=2, mode="sinkhorn", num_iterations=0).init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match="num_directions"):
    DoublyStochasticAttention(num_heads=2, num_directions=0).init(jax.random.PRNGKey(0), x)
  with pytest.raises(ValueError, match="divisible"):
    DoublyStochasticAttention(num_heads=3).init(jax.random.PRNGKey(0), x)
