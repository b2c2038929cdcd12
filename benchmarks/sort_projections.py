"""``sort_projections`` (two integer sorts) against the ``jnp.argsort`` version it replaced, side by side.

Run: ``python benchmarks/sort_projections.py [--repeats 30]`` (under a minute on the 2-core CPU). For
``L = 32`` directions and ``n`` points in 2-D, both jit-compiled; the calls alternate, medians in ms, and the
outputs are checked equal.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from ottsliced import sliced
from ottsliced.experiments.timing import device_name
from ottsliced.sliced.directions import directions


def sort_with_argsort(x: jax.Array, theta: jax.Array) -> sliced.SortedProjections:
  """The previous implementation: one ``jnp.argsort`` (values and an iota sorted together)."""
  proj = jnp.matmul(theta, x.T, precision=jax.lax.Precision.HIGHEST)
  order = jnp.argsort(proj, axis=-1).astype(jnp.int32)
  n = order.shape[-1]
  ranks = jax.vmap(lambda o: jnp.zeros_like(o).at[o].set(jnp.arange(n, dtype=o.dtype), unique_indices=True))(order)
  return sliced.SortedProjections(jnp.take_along_axis(proj, order, axis=-1), order, ranks)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--repeats", type=int, default=30)
  args = parser.parse_args()
  theta = directions(jax.random.key(0), 2, 32)
  old = jax.jit(lambda x: sort_with_argsort(x, theta))
  new = jax.jit(lambda x: sliced.sort_projections(x, theta))
  print(f"device {device_name()}, L = 32, medians of {args.repeats} alternating calls")
  print("| n | jnp.argsort ms | sort_projections ms | ratio |")
  print("|---:|---:|---:|---:|")
  for n in (128, 256, 512, 784, 1024, 4096):
    x = jax.random.normal(jax.random.key(n), (n, 2))
    ref, out = old(x), new(x)
    for u, v in zip(ref, out):
      np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    times = {"old": [], "new": []}
    for _ in range(args.repeats):
      for name, fn in (("old", old), ("new", new)):
        start = time.perf_counter()
        jax.block_until_ready(fn(x))
        times[name].append(time.perf_counter() - start)
    a, b = 1e3 * np.median(times["old"]), 1e3 * np.median(times["new"])
    print(f"| {n} | {a:.3f} | {b:.3f} | {b / a:.2f} |")


if __name__ == "__main__":
  main()
