"""2-D toy distributions."""

import jax
import jax.numpy as jnp

from ottsliced import flow_matching as fm


def test_toys_shapes_and_scale():
  key = jax.random.key(0)
  for name in fm.TOYS:
    z = fm.sample_toy(name, key, 1000)
    assert z.shape == (1000, 2)
    assert bool(jnp.all(jnp.isfinite(z)))
  radius = jnp.linalg.norm(fm.sample_toy("8gaussians", key, 4000), axis=1)
  assert 4.5 < float(jnp.median(radius)) < 5.5
