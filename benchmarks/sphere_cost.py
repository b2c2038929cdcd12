"""The geodesic cost of the sphere case: ``SphereGeodesic.all_pairs`` against XLA's ``arccos`` on the same cosines.

Run: ``python benchmarks/sphere_cost.py`` (a few seconds). Times, jitted and alternated (median of 300 calls), the
``[100, 1000]`` cost matrix of the solver suite's sphere case three ways: ``all_pairs`` (one matrix product on the
sphere, the polynomial :func:`ottsliced.data.sphere.arccos`), the same with ``jnp.arccos``, and the way of OTT's
default ``CostFn.all_pairs`` (the cost of each pair under ``vmap``, ``jnp.arccos``: this class before), and prints
the largest difference between the polynomial and ``jnp.arccos``.
"""

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from ottsliced.data import sphere


def main(repeats: int = 300) -> None:
  """Prints one line per way of computing the cost: its median time in microseconds."""
  batch = sphere.supply_demand_pairs(1, num_supply=100, num_demand=1000, epsilon=1.0, seed=0).batch
  x, y = (jnp.asarray(v if v.ndim == 2 else v[0]) for v in (batch.x, batch.y))
  cost = sphere.SphereGeodesic()

  def xla(u, v):
    xs, ys = sphere.from_stereographic(u), sphere.from_stereographic(v)
    return jnp.arccos(jnp.clip(xs @ ys.T, -1.0 + cost.delta, 1.0 - cost.delta))

  def pairwise(u, v):  # OTT's CostFn.all_pairs: the cost of each pair under vmap, XLA's arccos
    def one(p, q):
      c = jnp.dot(sphere.from_stereographic(p), sphere.from_stereographic(q))
      return jnp.arccos(jnp.clip(c, -1.0 + cost.delta, 1.0 - cost.delta))

    return jax.vmap(lambda p: jax.vmap(lambda q: one(p, q))(v))(u)

  ways = {"all_pairs (polynomial arccos)": jax.jit(cost.all_pairs), "jnp.arccos": jax.jit(xla)}
  ways["pairwise vmap, jnp.arccos"] = jax.jit(pairwise)
  for fn in ways.values():
    jax.block_until_ready(fn(x, y))
  sec = {name: [] for name in ways}
  for rep in range(repeats):
    for name in ways if rep % 2 else list(ways)[::-1]:
      t0 = time.perf_counter()
      jax.block_until_ready(ways[name](x, y))
      sec[name].append(time.perf_counter() - t0)
  for name in ways:
    print(f"{name:32s} {1e6 * statistics.median(sec[name]):8.0f} us")
  diff = np.max(np.abs(np.asarray(ways["all_pairs (polynomial arccos)"](x, y)) - np.asarray(ways["jnp.arccos"](x, y))))
  print(f"largest |polynomial - jnp.arccos|: {diff:.2e}")


if __name__ == "__main__":
  main()
