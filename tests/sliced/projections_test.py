"""Sorted projections: ranks invert the order, the integer argsort is a stable argsort."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ottsliced as ots
from ottsliced import sliced


def test_sorted_projections_ranks_invert_the_order():
  theta = ots.directions(jax.random.key(0), 3, 5)
  x = jax.random.normal(jax.random.key(1), (50, 3))
  p = sliced.sort_projections(x, theta)
  np.testing.assert_array_equal(
    jnp.take_along_axis(p.order, p.ranks, axis=-1), jnp.broadcast_to(jnp.arange(50), (5, 50))
  )
  np.testing.assert_allclose(jnp.take_along_axis(p.values, p.ranks, axis=-1), theta @ x.T, rtol=1e-6)


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("n", [1, 2, 7, 200])
def test_argsort_rows_is_a_stable_argsort(wide, n):
  """Two integer sorts give ``jnp.argsort``'s stable order: ties (duplicated values, -0.0 and 0.0) by index."""
  with jax.enable_x64(wide):
    dtype = jnp.float64 if wide else jnp.float32
    rs = np.random.default_rng(n)
    v = rs.normal(size=(6, n)) * 10.0 ** rs.integers(-30, 30, size=(6, 1))
    v[1] = np.round(v[1])  # many ties
    v[2] = 0.0
    v[2, ::2] = -0.0
    v[3, : n // 2] = v[3, -1]
    v[4] = np.abs(v[4]) * np.array([np.finfo(np.float32).tiny])  # subnormal-sized and denormal values
    v[5, ::3] = np.inf
    v[5, 1::3] = -np.inf
    values = jnp.asarray(v, dtype)
    order = jax.jit(sliced.argsort_rows)(values)
    assert order.dtype == jnp.int32
    np.testing.assert_array_equal(order, jnp.argsort(jnp.where(values == 0, 0.0, values), axis=-1, stable=True))


def test_argsort_rows_falls_back_past_the_int32_packing():
  values = jax.random.normal(jax.random.key(0), (1, 46_341))
  np.testing.assert_array_equal(sliced.argsort_rows(values), jnp.argsort(values, axis=-1))
