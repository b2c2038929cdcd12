"""Fixed random slicing directions."""

import jax
import jax.numpy as jnp

__all__ = ["directions"]


def directions(rng: jax.Array, dim: int, num: int = 100, dtype=None) -> jax.Array:
  """Draw ``num`` directions uniformly on the unit sphere of ``R^dim``.

  The directions are drawn once and stored in the fitted model; they are shared
  by the source and the target, by training and by inference.

  Args:
    rng: PRNG key.
    dim: ambient dimension ``d``.
    num: number of directions ``L``.
    dtype: floating dtype; defaults to JAX's default float dtype.

  Returns:
    Array ``[L, d]`` of unit vectors.
  """
  if int(dim) < 1 or int(num) < 1:
    raise ValueError(f"`dim` and `num` must be positive, got dim={dim}, num={num}.")
  dtype = jnp.result_type(float) if dtype is None else dtype
  z = jax.random.normal(rng, (int(num), int(dim)), dtype=dtype)
  return z / jnp.linalg.norm(z, axis=-1, keepdims=True)
