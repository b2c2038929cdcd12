"""Where the attention layer's time goes: every mode's layer and weights alone, side by side, at the tasks' shapes.

The attention task (``ottsliced bench configs/attention*.yaml``) times trained layers; this times freshly
initialised ones (the cost does not depend on the parameters' values in the log domain) at the same shapes:
``vit`` (250 inputs, 16 tokens, width 64, 4 heads) and ``sets`` (250 inputs, 64 tokens, 50-64 valid, padded and
masked), in a minute. Every call is compiled first, then ``--repeats`` rounds call each in turn; medians. flax's
own ``nn.MultiHeadDotProductAttention`` is timed beside ours as the reference a user swaps from. The layer's
doubly-stochastic modes never form the matrix (``transported_attention``); "weights alone" forms it.

``--no-ynn-fusion`` sets ``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=`` before jax is imported: XLA:CPU
(jax 0.10) otherwise fuses the attention's reductions and the value product into YNNPACK library calls, which
on the 2-core CPU made every log-domain layer slower than its parts.

Run from the repository root::

  python benchmarks/attention_layers.py
  python benchmarks/attention_layers.py --no-ynn-fusion
"""

import argparse
import os
import sys
import time


def _parse():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--repeats", type=int, default=30)
  p.add_argument("--batch", type=int, default=250)
  p.add_argument("--no-ynn-fusion", action="store_true", help="disable XLA:CPU's YNNPACK library fusions")
  p.add_argument("--shapes", default="vit,sets")
  return p.parse_args()


ARGS = _parse()
if ARGS.no_ynn_fusion:
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_experimental_ynn_fusion_type=").strip()

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from ottsliced.attention import DoublyStochasticAttention  # noqa: E402
from ottsliced.attention import weights as attention_weights  # noqa: E402

SHAPES = {"vit": 16, "sets": 64}
VARIANTS = [
  ("softmax", {"mode": "softmax"}),
  ("sinkhorn K=1", {"mode": "sinkhorn", "num_iterations": 1}),
  ("sinkhorn K=3", {"mode": "sinkhorn", "num_iterations": 3}),
  ("sinkhorn K=10", {"mode": "sinkhorn", "num_iterations": 10}),
  ("sliced L=2", {"mode": "sliced", "num_directions": 2}),
  ("sliced L=4", {"mode": "sliced", "num_directions": 4}),
  ("sliced L=8", {"mode": "sliced", "num_directions": 8}),
]


def _weights_fn(kw, params):
  if kw["mode"] == "softmax":
    return jax.jit(lambda q, k, m: attention_weights.softmax_weights(attention_weights.attention_logits(q, k), m))
  if kw["mode"] == "sinkhorn":
    k_iter = kw["num_iterations"]
    logits = attention_weights.attention_logits
    return jax.jit(lambda q, k, m: attention_weights.sinkhorn_weights(logits(q, k), m, k_iter))
  return jax.jit(lambda q, k, m: attention_weights.sliced_weights(q, k, params["theta"], params["alpha"], m))


def _calls(n: int):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(ARGS.batch, n, 64)), jnp.float32)
  valid = np.arange(n)[None] < (rng.integers(50, n + 1, size=ARGS.batch) if n > 32 else np.full(ARGS.batch, n))[:, None]
  mask = nn.make_attention_mask(valid, valid)
  calls = {}
  for name, kw in VARIANTS:
    layer = DoublyStochasticAttention(num_heads=4, **kw)
    params = layer.init(jax.random.PRNGKey(0), x)
    p = params["params"]
    q = jnp.einsum("bnf,fhd->bnhd", x, p["query"]["kernel"]) + p["query"]["bias"]
    k = jnp.einsum("bnf,fhd->bnhd", x, p["key"]["kernel"]) + p["key"]["bias"]
    calls[(name, "layer")] = (jax.jit(lambda p, x, m, layer=layer: layer.apply(p, x, mask=m)), (params, x, mask))
    calls[(name, "weights")] = (_weights_fn(kw, p), (q, k, mask))
  reference = nn.MultiHeadDotProductAttention(num_heads=4)
  params = reference.init(jax.random.PRNGKey(0), x)
  calls[("flax MultiHeadDotProductAttention", "layer")] = (
    jax.jit(lambda p, x, m: reference.apply(p, x, mask=m)),
    (params, x, mask),
  )
  return calls


def main() -> None:
  print(f"jax {jax.__version__}, {jax.devices()[0].platform}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  for shape in ARGS.shapes.split(","):
    calls = _calls(SHAPES[shape])
    for fn, args in calls.values():
      jax.block_until_ready(fn(*args))
    times = {key: [] for key in calls}
    for _ in range(ARGS.repeats):
      for key, (fn, args) in calls.items():
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times[key].append(time.perf_counter() - t0)
    ms = {key: 1e3 * float(np.median(t)) for key, t in times.items()}
    n, rounds = SHAPES[shape], ARGS.repeats
    print(f"\n{shape}: {ARGS.batch} inputs x {n} tokens, width 64, 4 heads, {rounds} rounds (medians)\n")
    print("| attention | layer ms (x softmax, x Sinkhorn K=10) | weights alone ms (x softmax, x K=10) | rest ms |")
    print("|---|---|---|---|")
    ls, lk = ms[("softmax", "layer")], ms[("sinkhorn K=10", "layer")]
    ws, wk = ms[("softmax", "weights")], ms[("sinkhorn K=10", "weights")]
    for name, _ in VARIANTS:
      layer, w = ms[(name, "layer")], ms[(name, "weights")]
      print(
        f"| {name} | {layer:.2f} ({layer / ls:.2f}, {layer / lk:.2f}) | {w:.2f} ({w / ws:.2f}, {w / wk:.2f}) | "
        f"{layer - w:.2f} |"
      )
    ref = ms[("flax MultiHeadDotProductAttention", "layer")]
    print(f"| flax MultiHeadDotProductAttention | {ref:.2f} ({ref / ls:.2f}, {ref / lk:.2f}) | - | - |")
  sys.stdout.flush()


if __name__ == "__main__":
  main()
