"""The velocity model and its conditional flow matching training (one jitted step per call)."""

import time
from typing import Any, Callable, NamedTuple, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ottsliced.flow_matching.couplings import COUPLINGS, SAMPLE_MODES, Coupling, SampleMode, _couple, _steps_tuple
from ottsliced.initializers.sliced_initializer import SlicedInitializer
from ottsliced.solvers.sliced_sinkhorn import DEFAULT_STEPS

__all__ = ["TrainResult", "VelocityMLP", "cfm_loss", "make_train_step", "train_flow"]


class VelocityMLP(nn.Module):
  """Velocity field ``v(x, t)``: MLP on ``concat(x, t)`` (torchcfm's ``MLP(dim, time_varying=True)``).

  Attributes:
    dim: output dimension ``d``.
    width: hidden width.
    depth: number of hidden layers.
  """

  dim: int = 2
  width: int = 64
  depth: int = 3

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
    """``x [N, d]``, ``t`` scalar or ``[N]`` -> ``[N, d]``."""
    t = jnp.broadcast_to(jnp.asarray(t, x.dtype).reshape(-1, 1), (x.shape[0], 1))
    h = jnp.concatenate([x, t], axis=1)
    for _ in range(self.depth):
      h = nn.selu(nn.Dense(self.width)(h))
    return nn.Dense(self.dim)(h)


def cfm_loss(params: Any, apply_fn: Callable, x0: jax.Array, x1: jax.Array, key: jax.Array, sigma: float) -> jax.Array:
  r"""Conditional flow matching loss (torchcfm's ``ConditionalFlowMatcher(sigma)``).

  :math:`t\sim U[0,1]`, :math:`x_t=(1-t)x_0+t x_1+\sigma\xi`, target
  :math:`u=x_1-x_0`; mean squared error over all entries.

  Args:
    params: network parameters.
    apply_fn: ``apply_fn(params, x [B, d], t [B]) -> [B, d]``.
    x0: paired source points ``[B, d]``.
    x1: paired target points ``[B, d]``.
    key: PRNG key (times and noise).
    sigma: path noise.

  Returns:
    Scalar loss.
  """
  kt, kn = jax.random.split(key)
  t = jax.random.uniform(kt, (x0.shape[0],), x0.dtype)
  xt = (1.0 - t[:, None]) * x0 + t[:, None] * x1 + sigma * jax.random.normal(kn, x0.shape, x0.dtype)
  return jnp.mean((apply_fn(params, xt, t) - (x1 - x0)) ** 2)


def make_train_step(
  kind: Coupling,
  sample_source: Callable[[jax.Array, int], jax.Array],
  sample_target: Callable[[jax.Array, int], jax.Array],
  apply_fn: Callable,
  optimizer: optax.GradientTransformation,
  *,
  batch_size: int = 512,
  sigma: float = 0.1,
  sample: SampleMode = "multinomial",
  sinkhorn_epsilon: Optional[float] = None,
  refine_iterations: int = 1,
  sinkhorn_threshold: float = 1e-3,
  sinkhorn_max_iterations: int = 2000,
  sliced_directions: int = 16,
  sliced_steps: Sequence[float] = DEFAULT_STEPS,
) -> Callable:
  """One jit-compiled training step: batches, coupling, loss, gradient, update.

  The returned ``step(params, opt_state, key, step_index, model) -> (params,
  opt_state, loss)`` draws ``x0 [B, d]`` and ``x1 [B, d]`` from the keys
  ``fold_in(key, step_index)``, pairs them with :func:`couple`, and takes one
  optimizer step on :func:`cfm_loss`. ``model`` (a
  :class:`~ottsliced.SlicedInitializer` or ``None``) is a traced pytree: the
  function compiles once. ``step.num_traces()`` counts how many times it was
  traced.
  """
  if kind not in COUPLINGS:
    raise ValueError(f"unknown coupling {kind!r}; choose one of {COUPLINGS}.")
  if sample not in SAMPLE_MODES:
    raise ValueError(f"unknown sample mode {sample!r}; choose one of {SAMPLE_MODES}.")
  if kind in ("sinkhorn", "sliced") and (sinkhorn_epsilon is None or not sinkhorn_epsilon > 0):
    raise ValueError(f"coupling {kind!r} needs a positive `sinkhorn_epsilon`.")
  if int(sliced_directions) < 1:
    raise ValueError(f"`sliced_directions` must be >= 1, got {sliced_directions}.")
  steps = _steps_tuple(sliced_steps)
  traces = [0]
  eps = 1.0 if sinkhorn_epsilon is None else float(sinkhorn_epsilon)

  @jax.jit
  def step(params, opt_state, key, step_index, model):
    traces[0] += 1
    key = jax.random.fold_in(key, step_index)
    k0, k1, kc, kl = jax.random.split(key, 4)
    x0, x1 = sample_source(k0, batch_size), sample_target(k1, batch_size)
    pair = _couple(
      x0,
      x1,
      kc,
      model,
      eps,
      kind,
      sample,
      refine_iterations,
      sinkhorn_threshold,
      sinkhorn_max_iterations,
      int(sliced_directions),
      steps,
    )
    loss, grads = jax.value_and_grad(cfm_loss)(params, apply_fn, x0[pair.i0], x1[pair.i1], kl, sigma)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  step.num_traces = lambda: traces[0]
  return step


class TrainResult(NamedTuple):
  """Output of :func:`train_flow`.

  Attributes:
    params: trained network parameters.
    losses: ``[steps]`` training losses.
    seconds: training wall time (compilation included).
    num_traces: how many times the step was traced (1 expected).
  """

  params: Any
  losses: np.ndarray
  seconds: float
  num_traces: int


def train_flow(
  kind: Coupling,
  sample_source: Callable[[jax.Array, int], jax.Array],
  sample_target: Callable[[jax.Array, int], jax.Array],
  key: jax.Array,
  *,
  steps: int = 20_000,
  batch_size: int = 512,
  sigma: float = 0.1,
  learning_rate: float = 1e-3,
  weight_decay: float = 1e-5,
  width: int = 64,
  depth: int = 3,
  model: Optional[SlicedInitializer] = None,
  sample: SampleMode = "multinomial",
  sinkhorn_epsilon: Optional[float] = None,
  refine_iterations: int = 1,
  sinkhorn_threshold: float = 1e-3,
  sinkhorn_max_iterations: int = 2000,
  sliced_directions: int = 16,
  sliced_steps: Sequence[float] = DEFAULT_STEPS,
  progress: bool = False,
) -> TrainResult:
  """Train a :class:`VelocityMLP` by conditional flow matching with coupling ``kind``.

  AdamW (``learning_rate``, ``weight_decay``), ``steps`` calls of the jitted
  :func:`make_train_step`. Returns a :class:`TrainResult`.
  """
  if steps < 1 or batch_size < 1:
    raise ValueError(f"`steps` and `batch_size` must be >= 1, got {steps}, {batch_size}.")
  if kind in ("ra", "oa") and not isinstance(model, SlicedInitializer):
    raise ValueError(f"coupling {kind!r} needs `model`, a fitted SlicedInitializer.")
  t0 = time.perf_counter()
  kinit, ktrain = jax.random.split(key)
  dim = sample_source(kinit, 1).shape[-1]
  net = VelocityMLP(dim=dim, width=width, depth=depth)
  params = net.init(kinit, jnp.zeros((1, dim)), jnp.zeros((1,)))
  optimizer = optax.adamw(learning_rate, weight_decay=weight_decay)
  opt_state = optimizer.init(params)
  step = make_train_step(
    kind,
    sample_source,
    sample_target,
    net.apply,
    optimizer,
    batch_size=batch_size,
    sigma=sigma,
    sample=sample,
    sinkhorn_epsilon=sinkhorn_epsilon,
    refine_iterations=refine_iterations,
    sinkhorn_threshold=sinkhorn_threshold,
    sinkhorn_max_iterations=sinkhorn_max_iterations,
    sliced_directions=sliced_directions,
    sliced_steps=sliced_steps,
  )
  model = model if kind in ("ra", "oa") else None
  losses = []
  it = range(steps)
  if progress:
    from tqdm.auto import tqdm

    it = tqdm(it, desc=f"CFM {kind}", unit="step", mininterval=1.0)
  for k in it:
    params, opt_state, loss = step(params, opt_state, ktrain, k, model)
    losses.append(loss)
  losses = np.asarray(jax.block_until_ready(jnp.stack(losses)))
  return TrainResult(params, losses, time.perf_counter() - t0, step.num_traces())
