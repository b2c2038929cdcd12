"""Where the time of the sliced features goes, stage by stage (shared-support fast path).

Each stage is a jit-compiled prefix of the full kernel :func:`ottsliced.sliced.potentials.sliced_potentials_sorted`
on MNIST digit pairs (784 atoms, L = 100 directions), timed as a median of
``--repeats`` calls after a warm-up, side by side with one c-transform pass of the
same batch; the time of a stage is the difference between consecutive prefixes. The
prediction path's :func:`ottsliced.sliced.potentials.source_potentials_sorted` is timed last.

Run: ``python benchmarks/features_profile.py --batch 128 [--json out.json]``
"""

import argparse
import json

import jax
import jax.numpy as jnp

from ottsliced import data, sliced
from ottsliced.experiments.throughput import c_transform_pass
from ottsliced.experiments.timing import device_name, median_seconds
from ottsliced.sliced.directions import directions


def _stages(px, py):
  """Cumulative prefixes of the per-pair kernel, each a function of ``(a, b)``."""

  def gather_cdf(a, b):
    return jnp.cumsum(a[px.order], -1), jnp.cumsum(b[py.order], -1)

  def search(a, b):
    A, B = gather_cdf(a, b)
    return jax.vmap(lambda bb, aa: sliced._ss(bb, aa))(B, A)  # noqa: SLF001

  def slices(a, b):
    one = jax.vmap(lambda s, aa, t, bb: sliced._one_slice(s, aa, t, bb, "weighted"))  # noqa: SLF001
    return one(px.values, a[px.order], py.values, b[py.order])

  def full(a, b):
    return sliced.sliced_potentials_sorted(px, py, a, b)

  return {
    "gather weights, CDFs (cumsum)": gather_cdf,
    "+ searchsorted (merge of the CDFs)": search,
    "+ staircase, cumsums, zero-weight c-transforms": slices,
    "+ unsort to atom order (= features)": full,
  }


def main() -> None:
  """Print a Markdown table of the stages."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--size", type=int, default=28)
  parser.add_argument("--projections", type=int, default=100)
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--json", default=None)
  args = parser.parse_args()
  batch = data.image_pairs(data.load_mnist(), args.batch, size=args.size, seed=1)
  theta = directions(jax.random.key(0), 2, args.projections)
  px = jax.block_until_ready(sliced.sort_projections(batch.x, theta))
  py = px

  zeros = jnp.zeros_like(batch.a)
  floor = median_seconds(lambda: c_transform_pass(batch, zeros), args.repeats)
  rows, prev = [], 0.0
  for name, fn in _stages(px, py).items():
    f = jax.jit(jax.vmap(fn))
    t = median_seconds(lambda f=f: f(batch.a, batch.b), args.repeats)
    rows.append({"stage": name, "cumulative_us": 1e6 * t / args.batch, "stage_us": 1e6 * (t - prev) / args.batch})
    prev = t
  print(
    f"device: {device_name()}, jax {jax.__version__}, n = {args.size**2}, L = {args.projections}, B = {args.batch}; "
    f"microseconds per pair; one c-transform pass = {1e6 * floor / args.batch:.1f}"
  )
  print("\n| stage | stage us | cumulative us | cumulative / c-transform |\n|---|---:|---:|---:|")
  for r in rows:
    ratio = r["cumulative_us"] / (1e6 * floor / args.batch)
    print(f"| {r['stage']} | {r['stage_us']:.1f} | {r['cumulative_us']:.1f} | {ratio:.1f} |")
  fast = jax.jit(jax.vmap(lambda a, b: sliced.source_potentials_sorted(px, py, a, b)))
  t_fast = median_seconds(lambda: fast(batch.a, batch.b), args.repeats)
  print(
    f"\nPrediction path (source_potentials_sorted: phi on positive-weight atoms only): "
    f"{1e6 * t_fast / args.batch:.1f} us per pair = {t_fast / floor:.1f} c-transform passes."
  )
  rows.append({"stage": "source_potentials_sorted (prediction path)", "cumulative_us": 1e6 * t_fast / args.batch})
  if args.json:
    with open(args.json, "w") as fh:
      json.dump({"device": device_name(), "c_transform_us": 1e6 * floor / args.batch, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
  main()
