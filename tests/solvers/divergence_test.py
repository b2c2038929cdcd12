"""``ottsliced.sinkhorn_divergence``: OTT's Sinkhorn divergence, each term solved by SlicedSinkhorn."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_measure
from ott.geometry import pointcloud
from ott.tools import sinkhorn_divergence as ott_divergence

import ottsliced as ots

TIGHT = {"threshold": 1e-10, "max_iterations": 10_000}


def _clouds(seed, n=24, m=18, d=2):
  rs = np.random.default_rng(seed)
  x, a = random_measure(rs, n, d)
  y, b = random_measure(rs, m, d)
  return jnp.asarray(x), jnp.asarray(y + 0.5), jnp.asarray(a), jnp.asarray(b)


def test_matches_otts_divergence_and_its_gradient(x64):
  x, y, a, b = _clouds(0)

  def ours(x):
    return ots.sinkhorn_divergence(pointcloud.PointCloud, x, y, a=a, b=b, epsilon=0.1, solve_kwargs=TIGHT)[0]

  def ott(x):
    return ott_divergence.sinkhorn_divergence(pointcloud.PointCloud, x, y, a=a, b=b, epsilon=0.1, solve_kwargs=TIGHT)[0]

  value, grad = jax.jit(jax.value_and_grad(ours))(x)
  ref_value, ref_grad = jax.jit(jax.value_and_grad(ott))(x)
  assert float(value) > 1e-3
  np.testing.assert_allclose(value, ref_value, rtol=1e-8)
  np.testing.assert_allclose(grad, ref_grad, atol=1e-8)


def test_zero_for_identical_measures_nonnegative_and_static_b(x64):
  x, y, a, b = _clouds(1)
  same, out = ots.sinkhorn_divergence(pointcloud.PointCloud, x, x, a=a, b=a, epsilon=0.05, solve_kwargs=TIGHT)
  assert abs(float(same)) < 1e-9
  assert all(bool(c) for c in out.converged)
  for seed in range(3):
    x, y, a, b = _clouds(seed + 2)
    div, _ = ots.sinkhorn_divergence(pointcloud.PointCloud, x, y, a=a, b=b, epsilon=0.05, solve_kwargs=TIGHT)
    assert float(div) > 0
  # static_b: the (b, b) term given, not solved.
  full, _ = ots.sinkhorn_divergence(pointcloud.PointCloud, x, y, a=a, b=b, epsilon=0.05, solve_kwargs=TIGHT)
  reg_yy = ots.solve(pointcloud.PointCloud(y, y, epsilon=0.05), b, b, **TIGHT).reg_ot_cost
  static, out_static = ots.sinkhorn_divergence(
    pointcloud.PointCloud, x, y, a=a, b=b, epsilon=0.05, solve_kwargs=TIGHT, static_b=True, offset_static_b=reg_yy
  )
  np.testing.assert_allclose(static, full, rtol=1e-8)
  assert out_static.potentials[2] == (None, None)


def test_unbalanced_divergence_matches_otts(x64):
  """``tau_a``/``tau_b`` in ``solve_kwargs``: the unbalanced divergence (all three terms unbalanced), as OTT's."""
  x, y, a, b = _clouds(5)
  kwargs = {"tau_a": 0.9, "tau_b": 0.8, **TIGHT}

  def ours(x):
    return ots.sinkhorn_divergence(pointcloud.PointCloud, x, y, a=a, b=0.7 * b, epsilon=0.1, solve_kwargs=kwargs)[0]

  def ott(x):
    return ott_divergence.sinkhorn_divergence(
      pointcloud.PointCloud, x, y, a=a, b=0.7 * b, epsilon=0.1, solve_kwargs=kwargs
    )[0]

  value, grad = jax.jit(jax.value_and_grad(ours))(x)
  ref_value, ref_grad = jax.jit(jax.value_and_grad(ott))(x)
  np.testing.assert_allclose(value, ref_value, rtol=1e-7)
  np.testing.assert_allclose(grad, ref_grad, atol=1e-7)


def test_refused_keywords_raise():
  x, y, a, b = _clouds(5)
  with pytest.raises(ValueError, match="cannot honour: inner_iterations=0"):
    ots.sinkhorn_divergence(pointcloud.PointCloud, x, y, epsilon=0.1, solve_kwargs={"inner_iterations": 0})
