"""Uniform 1-D potentials (attention rows): equal to the general path, long rows, batched rows and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ottsliced import sliced
from ottsliced.sliced import uniform

# Compiled once per shape and shared by the tests (a jit made inside a test is a new function every call).
_uniform = jax.jit(sliced.uniform_source_potentials)


@st.composite
def _valid_and_padding(draw, lengths=(1, 4, 15)):
  """``(valid, padding)`` atoms of a row whose length is one of a few (each length compiles both paths anew)."""
  length = draw(st.sampled_from(lengths))
  valid = draw(st.integers(1, length))
  return valid, length - valid


@settings(max_examples=25, deadline=None)
@given(
  # Any number of valid atoms and of padding atoms (none included), in rows of 1, 4 or 15 atoms: the compilations
  # (seconds for each new pair of lengths) are shared across the examples.
  n_and_pad=_valid_and_padding(),
  m_and_pad=_valid_and_padding(),
  seed=st.integers(0, 10_000),
  ties=st.booleans(),
)
def test_uniform_source_potentials_equal_the_general_path(n_and_pad, m_and_pad, seed, ties):
  """Uniform weights on the valid atoms, padding anywhere: the closed-form staircase equals the general one."""
  (n, pad_n), (m, pad_m) = n_and_pad, m_and_pad
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
    got = _uniform(s, t, sv, tv)
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
    got = _uniform(*(jnp.asarray(v, dtype) for v in (s, t)), sv, tv)
    assert got.dtype == dtype
    np.testing.assert_allclose(np.asarray(got)[sv], np.asarray(want)[sv, 0], atol=1e-10 if dtype == "float64" else 2e-5)


def _by_sorting(s, t, sv, tv):
  """The sorting path, row by row (the reference)."""
  n_v = jnp.maximum(sv.sum(-1, keepdims=True), 1)
  rows = [v.reshape(-1, v.shape[-1]) for v in (s, t, sv, tv, n_v, jnp.maximum(tv.sum(-1, keepdims=True), 1))]
  phi = jax.vmap(uniform._uniform_potentials_sorted)(*rows[:4], rows[4][:, 0], rows[5][:, 0]).reshape(s.shape)
  return phi - jnp.sum(jnp.where(sv, phi, 0.0), -1, keepdims=True) / n_v


@jax.jit
def _values_and_gradients(s, t, sv, tv, weights):
  """Both paths' values and the gradients of a weighted sum of them: one compilation per shape, not per op."""

  def loss(fn):
    return lambda s, t: jnp.sum(jnp.where(sv, weights * fn(s, t, sv, tv), 0.0))

  reference = _by_sorting(s, t, sv, tv)
  fast = jax.grad(loss(sliced.uniform_source_potentials), (0, 1))(s, t)
  return reference, fast, jax.grad(loss(_by_sorting), (0, 1))(s, t)


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

    got = _uniform(s, t, sv, tv)
    by_sorting, fast, slow = _values_and_gradients(s, t, sv, tv, weights)
    np.testing.assert_allclose(np.asarray(got)[sv], np.asarray(by_sorting)[sv], atol=1e-12)
    np.testing.assert_allclose(got[1, 2], _uniform(s[1, 2], t[1, 2], sv[1, 2], tv[1, 2]))

    for a, b in zip(fast, slow):
      np.testing.assert_allclose(a, b, atol=1e-11)
