"""Flow metrics."""

import jax
import jax.numpy as jnp
import pytest

from ottsliced import flow_matching as fm


def test_path_energy_of_straight_optimal_flow_is_zero():
  x0 = jax.random.normal(jax.random.key(0), (200, 2))
  shift = jnp.array([3.0, -1.0])
  pe = fm.path_energy(lambda p, x, t: jnp.broadcast_to(shift, x.shape), None, x0)
  assert pe.normalized < 1e-4
  assert pe.energy == pytest.approx(10.0, rel=1e-4)
