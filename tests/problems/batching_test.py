"""Running a per-pair function over a batch: sequentially (map) or all at once (vmap), same results."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ottsliced.problems import batching


def _fn(shared, per_pair, tree):
  return {"sum": shared @ per_pair + tree["u"].sum(), "max": jnp.max(per_pair * tree["v"])}


@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_map_equals_vmap(chunk_size):
  rs = np.random.default_rng(0)
  shared = jnp.asarray(rs.normal(size=5))
  per_pair = jnp.asarray(rs.normal(size=(7, 5)))
  tree = {"u": jnp.asarray(rs.normal(size=(7, 2))), "v": jnp.asarray(rs.normal(size=(7, 5)))}
  args, axes = (shared, per_pair, tree), (None, 0, 0)
  ref = batching.over_pairs(_fn, args, axes, strategy="vmap")
  out = batching.over_pairs(_fn, args, axes, strategy="map", chunk_size=chunk_size)
  jax.tree_util.tree_map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-6), out, ref)


def test_auto_is_map_on_cpu_and_bad_arguments():
  assert batching.resolve_strategy("auto") == ("map" if jax.default_backend() == "cpu" else "vmap")
  with pytest.raises(ValueError, match="strategy"):
    batching.resolve_strategy("threads")
  with pytest.raises(ValueError, match="in_axes"):
    batching.over_pairs(_fn, (1, 2, 3), (None, 1, 0))
