r"""Meta OT (Amos et al., ICML 2023) through OTT's ``MetaInitializer``, as a jit-friendly pytree initializer.

An MLP maps :math:`[a; b]` to the source potential :math:`f` of a *fixed*
geometry, trained on the negative entropic dual objective with OTT's
:class:`~ott.initializers.neural.meta_initializer.MetaInitializer`. The fitted
model is exposed as :class:`MetaOTInitializer`, a pytree initializer whose
children are the MLP parameters, so it can be a ``jax.jit`` argument (OTT's own
class cannot: in OTT 0.6.0 its parameters are not pytree children).
"""

import time
from typing import Any, NamedTuple, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from ott.initializers.linear import initializers
from ott.initializers.neural import meta_initializer
from ott.problems.linear import linear_problem

from ottsliced._internal import validation
from ottsliced.problems.batch import ProblemBatch, make_geometry

__all__ = ["MetaMLP", "MetaOTInitializer", "MetaOTModel", "fit_meta_ot", "fit_meta_ot_pool"]


class MetaMLP(nn.Module):
  """Meta OT's potential network: ``concat([a, b]) -> f`` with ReLU hidden layers.

  Attributes:
    hidden: hidden layer widths, e.g. ``(1024, 1024, 1024)``.
    num_outputs: ``n``, the number of source atoms.
  """

  hidden: Tuple[int, ...]
  num_outputs: int

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """``z [..., n + m] -> f [..., n]``."""
    for width in self.hidden:
      z = nn.relu(nn.Dense(width)(z))
    return nn.Dense(self.num_outputs)(z)


@jax.tree_util.register_pytree_node_class
class MetaOTInitializer(initializers.DefaultInitializer):
  r"""Meta OT's fitted MLP as a jit-friendly OTT Sinkhorn initializer.

  ``init_fu`` returns :math:`\hat f = \mathrm{MLP}([a; b])` (OTT convention),
  ``init_gv`` zeros (Sinkhorn's first update computes :math:`g` from
  :math:`\hat f`). Valid only on the fixed geometry it was trained on (shapes are
  checked, coordinates cannot be).

  A pytree: the children are the MLP parameters, the (hashable) flax module and
  the support sizes are static, so new parameters never retrace a jitted
  function taking it as an argument (e.g. :func:`ottsliced.solve_batch`).

  Args:
    params: flax parameters of ``module``.
    module: the :class:`MetaMLP`.
    num_b: number of target atoms ``m``.
  """

  def __init__(self, params: Any, module: MetaMLP, num_b: int):
    super().__init__()
    self.params = params
    self.module = module
    self.num_b = int(num_b)

  @property
  def shape(self) -> Tuple[int, int]:
    """``(n, m)`` of the fixed geometry."""
    return self.module.num_outputs, self.num_b

  def predict_f(self, a: jax.Array, b: jax.Array) -> jax.Array:
    """``f [..., n]`` from ``a [..., n]`` and ``b [..., m]`` (any leading batch axes)."""
    n, m = self.shape
    if a.shape[-1] != n or b.shape[-1] != m:
      raise ValueError(
        f"this Meta OT model was trained on a fixed geometry with (n, m) = {(n, m)}, got weights of sizes "
        f"{(a.shape[-1], b.shape[-1])}."
      )
    return self.module.apply({"params": self.params}, jnp.concatenate([a, b], axis=-1))

  def init_fu(  # noqa: D102
    self, ot_prob: linear_problem.LinearProblem, lse_mode: bool, rng: Optional[jax.Array] = None
  ) -> jax.Array:
    del rng
    f = self.predict_f(ot_prob.a, ot_prob.b)
    return f if lse_mode else ot_prob.geom.scaling_from_potential(f)

  def tree_flatten(self):  # noqa: D102
    return (self.params,), (self.module, self.num_b)

  @classmethod
  def tree_unflatten(cls, aux, children):  # noqa: D102
    return cls(children[0], *aux)

  def __repr__(self) -> str:
    n, m = self.shape
    return f"MetaOTInitializer(hidden={self.module.hidden}, n={n}, m={m})"


class MetaOTModel(NamedTuple):
  """A fitted Meta OT model (:func:`fit_meta_ot`).

  Attributes:
    initializer: :class:`MetaOTInitializer`, usable in
      ``Sinkhorn(initializer=...)`` and :func:`ottsliced.solve_batch`.
    meta_initializer: OTT's ``MetaInitializer`` holding the trained state (not
      a valid jit argument: close over it).
    losses: training loss per step ``[steps]`` (mean :math:`-J` over the mini-batch).
    train_seconds: wall time of the training loop, compilation included.
    compile_seconds: wall time of the first chunk (compilation + its steps).
  """

  initializer: MetaOTInitializer
  meta_initializer: meta_initializer.MetaInitializer
  losses: np.ndarray
  train_seconds: float
  compile_seconds: float

  @property
  def num_params(self) -> int:
    """Number of trained parameters."""
    return int(sum(np.size(p) for p in jax.tree_util.tree_leaves(self.initializer.params)))

  def predict_f(self, a: jax.Array, b: jax.Array) -> jax.Array:
    """Predicted source potentials ``f [B, n]`` from ``a [B, n]``, ``b [B, m]`` (OTT convention)."""
    return _predict(self.initializer, jnp.asarray(a), jnp.asarray(b))


@jax.jit
def _predict(initializer: MetaOTInitializer, a: jax.Array, b: jax.Array) -> jax.Array:
  return initializer.predict_f(a, b)


def _check_meta_args(batch: Any, hidden: Sequence[int], steps: int, batch_size: int, learning_rate: float) -> None:
  if not isinstance(batch, ProblemBatch):
    raise ValueError(f"`batch` must be a ProblemBatch, got {type(batch).__name__}.")
  if not (batch.shared_x and batch.shared_y):
    raise ValueError(
      "Meta OT needs one fixed geometry: its MLP maps the weights [a; b] of a fixed support to f, so every pair "
      "must share the same source and target points (a ProblemBatch with 2-D x and y). Resample data on "
      "different grids to one grid first (e.g. multi-resolution images); Meta OT is not applicable to per-pair "
      "supports such as colour palettes or point clouds that move."
    )
  _check_training_args(hidden, steps, batch_size, learning_rate)


def _check_training_args(hidden: Sequence[int], steps: int, batch_size: int, learning_rate: float) -> None:
  hidden = tuple(hidden)
  if not hidden or any(int(h) < 1 for h in hidden):
    raise ValueError(f"`hidden` must be a non-empty sequence of positive widths, got {hidden}.")
  if int(steps) < 1:
    raise ValueError(f"`steps` must be >= 1, got {steps}.")
  if int(batch_size) < 1:
    raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
  if not (np.isfinite(learning_rate) and learning_rate > 0):
    raise ValueError(f"`learning_rate` must be a positive float, got {learning_rate}.")


def fit_meta_ot(
  batch: ProblemBatch,
  *,
  hidden: Sequence[int] = (1024, 1024, 1024),
  steps: int = 5000,
  batch_size: int = 1,
  learning_rate: float = 1e-3,
  rng: Optional[jax.Array] = None,
  progress: bool = True,
  chunk_steps: int = 100,
) -> MetaOTModel:
  r"""Train Meta OT (Amos et al. 2023) on the pairs of a fixed-geometry batch.

  The MLP (:class:`MetaMLP`, ReLU) maps :math:`[a; b]` to :math:`f`; OTT's
  ``MetaInitializer`` provides the loss (:math:`-J(f)`, the entropic dual with
  :math:`g=\mathcal T_b f`) and the jitted update, with
  ``optax.chain(clip_by_global_norm(1.0), adam(learning_rate))``. Each step draws
  ``batch_size`` training pairs uniformly with replacement (seeded). Steps run
  in jitted ``lax.scan`` chunks of ``chunk_steps`` (one dispatch per chunk).

  Args:
    batch: training pairs on one shared support (2-D ``x`` and ``y``).
    hidden: hidden widths (paper: three layers of 1024).
    steps: number of Adam steps.
    batch_size: pairs per step.
    learning_rate: Adam learning rate.
    rng: PRNG key for the initial parameters and the mini-batches (``None``: key 0).
    progress: show a tqdm progress bar.
    chunk_steps: steps per compiled chunk.

  Returns:
    A :class:`MetaOTModel`.

  Raises:
    ValueError: per-pair supports (Meta OT needs one fixed geometry) or bad arguments.
  """
  _check_meta_args(batch, hidden, steps, batch_size, learning_rate)
  n, m = batch.shape
  rng = jax.random.key(0) if rng is None else rng
  rng_init, rng_data = jax.random.split(rng)
  idx = jax.random.randint(rng_data, (int(steps), int(batch_size)), 0, batch.num_pairs)
  geom = batch.geometry(batch.x, batch.y)
  return _train(geom, (n, m), batch.a, batch.b, idx, idx, hidden, learning_rate, rng_init, progress, chunk_steps)


def fit_meta_ot_pool(
  x: jax.Array,
  y: jax.Array,
  source_pool: jax.Array,
  target_pool: jax.Array,
  epsilon: float,
  *,
  hidden: Sequence[int] = (1024, 1024, 1024),
  steps: int = 50_000,
  batch_size: int = 128,
  learning_rate: float = 1e-3,
  rng: Optional[jax.Array] = None,
  progress: bool = True,
  chunk_steps: int = 100,
  cost_fn: Any = None,
) -> MetaOTModel:
  r"""Train Meta OT at its paper's budget: every step draws fresh pairs from pools of measures.

  Meta OT's MNIST protocol trains 50,000 steps of 128 pairs drawn from the
  whole training split. Here each step pairs ``batch_size`` source measures
  with as many target measures, both drawn uniformly (seeded, independently)
  from the pools, so a pool of ``N`` images offers about ``N^2`` pairs and no
  pair batch is ever stored. Same network, loss and optimiser as
  :func:`fit_meta_ot`.

  Args:
    x: the fixed source support ``[n, d]``.
    y: the fixed target support ``[m, d]``.
    source_pool: source weights ``[Na, n]`` (rows normalised).
    target_pool: target weights ``[Nb, m]`` (may be the same array).
    epsilon: the problems' epsilon.
    hidden: hidden widths (paper: three layers of 1024).
    steps: number of Adam steps (paper: 50,000).
    batch_size: pairs per step (paper: 128).
    learning_rate: Adam learning rate.
    rng: PRNG key for the initial parameters and the draws (``None``: key 0).
    progress: show a tqdm progress bar.
    chunk_steps: steps per compiled chunk.
    cost_fn: OTT cost function of the geometry (``None``: squared Euclidean).

  Returns:
    A :class:`MetaOTModel`.
  """
  (n, _), (m, _) = validation.check_points("x", x), validation.check_points("y", y)
  a_pool, b_pool = jnp.asarray(source_pool), jnp.asarray(target_pool)
  if a_pool.ndim != 2 or b_pool.ndim != 2 or a_pool.shape[1] != n or b_pool.shape[1] != m:
    raise ValueError(f"pool widths: need [N, {n}] and [N, {m}] pools, got {a_pool.shape} and {b_pool.shape}.")
  validation.check_weights("source_pool", a_pool, a_pool.shape)
  validation.check_weights("target_pool", b_pool, b_pool.shape)
  validation.check_epsilon(epsilon)
  _check_training_args(hidden, steps, batch_size, learning_rate)
  a_pool = a_pool / jnp.sum(a_pool, axis=1, keepdims=True)
  b_pool = b_pool / jnp.sum(b_pool, axis=1, keepdims=True)
  rng = jax.random.key(0) if rng is None else rng
  rng_init, rng_a, rng_b = jax.random.split(rng, 3)
  shape = (int(steps), int(batch_size))
  ia = jax.random.randint(rng_a, shape, 0, a_pool.shape[0])
  ib = jax.random.randint(rng_b, shape, 0, b_pool.shape[0])
  geom = make_geometry(jnp.asarray(x), jnp.asarray(y), float(epsilon), cost_fn, None)
  return _train(geom, (n, m), a_pool, b_pool, ia, ib, hidden, learning_rate, rng_init, progress, chunk_steps)


def _train(geom, shape, a_all, b_all, ia, ib, hidden, learning_rate, rng_init, progress, chunk_steps) -> MetaOTModel:
  """The training loop: Adam steps on the pairs ``(a_all[ia[k]], b_all[ib[k]])``, in jitted scan chunks."""
  if int(chunk_steps) < 1:
    raise ValueError(f"`chunk_steps` must be >= 1, got {chunk_steps}.")
  n, m = shape
  steps = int(ia.shape[0])
  chunk_steps = min(int(chunk_steps), steps)
  module = MetaMLP(hidden=tuple(int(h) for h in hidden), num_outputs=n)
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(learning_rate))
  mi = meta_initializer.MetaInitializer(geom, module, opt=opt, rng=rng_init)

  @jax.jit
  def run_chunk(state, ids_a, ids_b, a_all, b_all):
    def body(state, ij):
      loss, _, state = mi.update_impl(state, a_all[ij[0]], b_all[ij[1]])
      return state, loss

    return jax.lax.scan(body, state, (ids_a, ids_b))

  bar = None
  if progress:
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc="Meta OT", unit="step")
  state, losses, done = mi.state, [], 0
  start = time.perf_counter()
  compile_seconds = 0.0
  try:
    while done < steps:
      num = min(chunk_steps, steps - done)
      sl = slice(done, done + num)
      state, chunk_losses = run_chunk(state, ia[sl], ib[sl], a_all, b_all)
      chunk_losses = np.asarray(chunk_losses)  # blocks: honest timings and progress
      if done == 0:
        compile_seconds = time.perf_counter() - start
      losses.append(chunk_losses)
      done += num
      if bar is not None:
        bar.update(num)
        bar.set_postfix(loss=f"{float(chunk_losses[-1]):.4g}")
  finally:
    if bar is not None:
      bar.close()
  train_seconds = time.perf_counter() - start
  mi.state = state
  return MetaOTModel(
    initializer=MetaOTInitializer(state.params, module, m),
    meta_initializer=mi,
    losses=np.concatenate(losses),
    train_seconds=train_seconds,
    compile_seconds=compile_seconds,
  )
