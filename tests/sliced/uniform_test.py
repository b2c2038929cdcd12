"""Uniform 1-D potentials (attention rows): equal to the general path, long rows, batched rows and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ottsliced import sliced
from ottsliced.sliced import uniform


@settings(max_examples=25, deadline=None)
@given(
  n=st.integers(1, 12),
  m=st.integers(1, 12),
  pad_n=st.integers(0, 3),
  pad_m=st.integers(0, 3),
  seed=st.integers(0, 10_000),
  ties=st.booleans(),
)
def test_uniform_source_potentials_equal_the_general_path(n, m, pad_n, pad_m, seed, ties):
  """Uniform weights on the valid atoms, padding anywhere: the closed-form staircase equals the general one."""
  with jax.enable_x64(True):
    rs = np.random.default_rng(seed)
    s = rs.normal(size=n + pad_n)
    t = rs.normal(size=m + pad_m)
    if ties:
      s, t = np.round(s), np.round(t)
    sv = np.zeros(n + pad_n, bool)
    sv[rs.permutation(n + pad_n)[:n]] = True
    tv = np.zeros(m + pad_m, bool)
    tv[rs.permutation(m + pad_m)[:m]] = True
    a, b = sv / sv.sum(), tv / tv.sum()
    want, _ = sliced.sliced_potentials(s[:, None], t[:, None], a, b, np.ones((1, 1)))
    got = jax.jit(sliced.uniform_source_potentials)(s, t, sv, tv)
    np.testing.assert_allclose(np.asarray(got)[sv], np.asarray(want)[sv, 0], atol=1e-10)
    assert np.all(np.isfinite(got))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniform_source_potentials_long_rows(dtype):
  """Rows past the all-pairs comparison (an integer sort with packed indices): still the general path's values."""
  with jax.enable_x64(True):
    rs = np.random.default_rng(3)
    s, t = rs.normal(size=70), rs.normal(size=90)
    sv, tv = np.arange(70) % 7 != 3, np.arange(90) % 5 != 1
    want, _ = sliced.sliced_potentials(s[:, None], t[:, None], sv / sv.sum(), tv / tv.sum(), np.ones((1, 1)))
    got = jax.jit(sliced.uniform_source_potentials)(*(jnp.asarray(v, dtype) for v in (s, t)), sv, tv)
    assert got.dtype == dtype
    np.testing.assert_allclose(np.asarray(got)[sv], np.asarray(want)[sv, 0], atol=1e-10 if dtype == "float64" else 2e-5)


@pytest.mark.parametrize(("n", "m"), [(9, 13), (64, 64)])
def test_uniform_source_potentials_batched_rows_and_gradients(n, m):
  """Leading dimensions are rows; values and gradients equal the sorting path's, row by row (float64)."""
  with jax.enable_x64(True):
    rs = np.random.default_rng(5)
    shape = (3, 4)
    s, t = jnp.asarray(rs.normal(size=shape + (n,))), jnp.asarray(2.0 * rs.normal(size=shape + (m,)))
    sv = jnp.asarray(rs.random(shape + (n,)) < 0.8).at[..., 0].set(True)
    tv = jnp.asarray(rs.random(shape + (m,)) < 0.7).at[..., 0].set(True)
    weights = jnp.asarray(rs.normal(size=shape + (n,)))

    def by_sorting(s, t):
      n_v = jnp.maximum(sv.sum(-1, keepdims=True), 1)
      rows = [v.reshape(-1, v.shape[-1]) for v in (s, t, sv, tv, n_v, jnp.maximum(tv.sum(-1, keepdims=True), 1))]
      phi = jax.vmap(uniform._uniform_potentials_sorted)(*rows[:4], rows[4][:, 0], rows[5][:, 0]).reshape(s.shape)
      return phi - jnp.sum(jnp.where(sv, phi, 0.0), -1, keepdims=True) / n_v

    got = jax.jit(sliced.uniform_source_potentials)(s, t, sv, tv)
    np.testing.assert_allclose(np.asarray(got)[sv], np.asarray(by_sorting(s, t))[sv], atol=1e-12)
    np.testing.assert_allclose(got[1, 2], sliced.uniform_source_potentials(s[1, 2], t[1, 2], sv[1, 2], tv[1, 2]))

    def loss(fn):
      return lambda s, t: jnp.sum(jnp.where(sv, weights * fn(s, t), 0.0))

    fast = jax.grad(loss(lambda s, t: sliced.uniform_source_potentials(s, t, sv, tv)), (0, 1))(s, t)
    for a, b in zip(fast, jax.grad(loss(by_sorting), (0, 1))(s, t)):
      np.testing.assert_allclose(a, b, atol=1e-11)
