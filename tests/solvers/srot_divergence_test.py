"""``srot_divergence``: zero on identical inputs, non-negative, OTT's Sinkhorn divergence at ``smoothing=1``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_measure
from ott.geometry import pointcloud
from ott.tools import sinkhorn_divergence as ott_divergence

import ottsliced as ots

TIGHT = {"threshold": 1e-10, "max_iterations": 20_000}


def _clouds(seed, n=20, m=16, d=2, shift=0.5):
  rs = np.random.default_rng(seed)
  x, a = random_measure(rs, n, d)
  y, b = random_measure(rs, m, d)
  return jnp.asarray(x), jnp.asarray(y + shift), jnp.asarray(a), jnp.asarray(b)


def test_smoothing_one_is_otts_sinkhorn_divergence_and_gradient(x64):
  x, y, a, b = _clouds(0)
  solver = ots.SROT(smoothing=1.0, **TIGHT)

  def ours(x):
    return ots.srot_divergence(x, y, a, b, solver=solver, epsilon=0.5).divergence

  def ott(x):
    return ott_divergence.sinkhorn_divergence(pointcloud.PointCloud, x, y, a=a, b=b, epsilon=0.5, solve_kwargs=TIGHT)[0]

  value, grad = jax.jit(jax.value_and_grad(ours))(x)
  ref_value, ref_grad = jax.jit(jax.value_and_grad(ott))(x)
  assert float(value) > 1e-3
  np.testing.assert_allclose(value, ref_value, rtol=1e-8)
  np.testing.assert_allclose(grad, ref_grad, atol=1e-8)


@pytest.mark.parametrize("smoothing", [0.5, 0.0])
def test_zero_for_identical_inputs_and_nonnegative(x64, smoothing):
  solver = ots.SROT(smoothing=smoothing, **TIGHT)
  div = jax.jit(lambda x, y, a, b: ots.srot_divergence(x, y, a, b, solver=solver, epsilon=0.5).divergence)
  x, _, a, _ = _clouds(1)
  assert abs(float(div(x, x, a, a))) < 1e-10
  values = []
  for seed in range(6):
    for shift in (0.0, 0.05, 1.0):
      x, y, a, b = _clouds(seed, n=16, m=16, shift=shift)
      values.append(float(div(x, y, a, b)))
  assert min(values) >= -1e-9, values
  assert max(values) > 0.1


def test_gradient_moves_the_source_toward_the_target():
  x, y, _, _ = _clouds(2, n=24, m=24, shift=2.0)
  x, y = x.astype(jnp.float32), y.astype(jnp.float32)
  loss = jax.jit(jax.value_and_grad(lambda x: ots.srot_divergence(x, y, epsilon=0.5).divergence))
  value0, grad = loss(x)
  assert np.all(np.isfinite(np.asarray(grad)))
  value1, _ = loss(x - 0.5 * x.shape[0] * grad)
  assert float(value1) < float(value0)


def test_divergence_outputs_and_errors():
  x, y, _, _ = _clouds(3)
  out = ots.srot_divergence(x, y, epsilon=0.5)
  assert out.cross.f.shape == (20,)
  assert out.source.f.shape == (20,)
  assert out.target.g.shape == (16,)
  with pytest.raises(ValueError, match="dimension"):
    ots.srot_divergence(x, jnp.ones((5, 3)), epsilon=0.5)
  with pytest.raises(ValueError, match="non-finite"):
    ots.srot_divergence(x.at[0, 0].set(jnp.inf), y, epsilon=0.5)
