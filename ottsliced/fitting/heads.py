r"""Fit the model's coefficients and head by gradient steps, on pairs drawn on the fly.

:func:`fit_head` trains the model's ``alpha`` and a head (:mod:`ottsliced.initializers.heads`:
per atom, :math:`h(\varphi_i,x_i)`, or per pair, coefficients :math:`\alpha+\delta(s)`;
``hidden=()``: the linear model alone) with optax, on minibatches of pairs
drawn every step from a fixed list of pairs or from pools of measures (any
source with any target, so a pool of ``N`` images offers about ``N^2``
pairs). Features are computed per step from the supports' sorted projections
(sorted once per support); nothing per pair is stored. Three losses:

* ``"regression"``: squared error to the converged Sinkhorn potential (RA-OT's
  target, centred like the features); needs a list of pairs, solved once;
* ``"dual"``: minus the entropic semi-dual :func:`~ottsliced.semi_dual` (OA-OT's
  objective); no ground truth;
* ``"sweeps"``: the marginal error after ``num_sweeps`` differentiated Sinkhorn
  iterations from the prediction, the error OTT's Sinkhorn reports after that
  many iterations of a warm start (what a warm start is judged by); no ground
  truth.
"""

import functools
import os
import time
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ottsliced import sliced
from ottsliced._internal import checkpoint, npz, validation
from ottsliced.fitting.objective import default_optimizer, semi_dual
from ottsliced.fitting.regression import ground_truth, regression_targets
from ottsliced.initializers.heads import HEADS
from ottsliced.initializers.sliced_initializer import SlicedInitializer, _safe_log
from ottsliced.problems.batch import ProblemBatch, _canonical_cost, as_problem_batch, make_geometry
from ottsliced.sliced.directions import directions
from ottsliced.solvers.iterations import marginal_errors, sinkhorn_sweeps

__all__ = ["LOSSES", "MeasurePools", "fit_head", "head_loss"]

LOSSES = ("regression", "dual", "sweeps")
_CHECKPOINT_FORMAT = "ottsliced.fit_head.checkpoint"
_METHOD = {"regression": "ra", "dual": "oa", "sweeps": "sweeps"}


class MeasurePools(NamedTuple):
  """Pairs drawn on the fly: any measure of ``source`` with any of ``target``, on fixed supports.

  Attributes:
    x: source support ``[n, d]``.
    y: target support ``[m, d]``.
    source: source weights ``[P, n]`` (rows are normalised).
    target: target weights ``[Q, m]`` (may be the same array as ``source``).
    epsilon: the problems' entropic regularisation.
    cost_fn: OTT ground cost (``None``: squared Euclidean).
  """

  x: Any
  y: Any
  source: Any
  target: Any
  epsilon: float
  cost_fn: Any = None


class _Data(NamedTuple):
  """Arrays a training step draws from (a pytree: a jit argument)."""

  x: jax.Array  # [n, d] shared, or [N, n, d]
  y: jax.Array
  a: jax.Array  # [Na, n]
  b: jax.Array  # [Nb, m]
  px: sliced.SortedProjections  # leaves [L, n], or [N, L, n]
  py: sliced.SortedProjections
  targets: Optional[jax.Array]  # [Na, n] regression targets, or None


class _Spec(NamedTuple):
  """Static description of the data: how pairs are drawn and their geometry."""

  paired: bool  # a[k] goes with b[k] (a list of pairs), else independent draws (pools)
  shared_x: bool
  shared_y: bool
  epsilon: float
  cost_fn: Any
  online_batch_size: Optional[int]


def head_loss(
  model: SlicedInitializer,
  loss: str,
  px: sliced.SortedProjections,
  py: sliced.SortedProjections,
  x: jax.Array,
  y: jax.Array,
  a: jax.Array,
  b: jax.Array,
  geom: Any,
  target: Optional[jax.Array] = None,
  num_sweeps: int = 3,
) -> jax.Array:
  r"""One pair's loss for the model's prediction (differentiable in the model's ``alpha`` and head).

  Args:
    model: the model (``alpha``, ``head`` may be tracers).
    loss: one of :data:`LOSSES`.
    px: sorted source projections (values ``[L, n]``).
    py: sorted target projections (values ``[L, m]``).
    x: source points ``[n, d]``.
    y: target points ``[m, d]``.
    a: source weights ``[n]``.
    b: target weights ``[m]``.
    geom: the pair's OTT geometry.
    target: ``[n]`` regression target (:func:`~ottsliced.fitting.regression.regression_targets`), for ``"regression"``.
    num_sweeps: Sinkhorn iterations of ``"sweeps"``.

  Returns:
    A scalar: the mean squared error over positive-weight atoms, minus the
    semi-dual, or the L1 error of the target marginal after the sweeps (OTT's
    ``SinkhornOutput.errors`` after ``num_sweeps`` iterations from
    ``(f_hat, 0)``, its ``norm_error=1``).
  """
  del y
  eps = geom.epsilon
  phi, psi = model.features(px, py, a, b)
  f = model.raw_potential(phi, a, eps, x, model.head_summary(px, py, a, b, phi, psi))
  if loss == "regression":
    reduced = f - eps * _safe_log(a) if model.log_weight_offset else f
    pos = a > 0
    reduced = reduced - jnp.sum(a * reduced) / jnp.sum(a)
    return jnp.sum(jnp.where(pos, (reduced - target) ** 2, 0.0)) / jnp.sum(pos)
  if loss == "dual":
    return -semi_dual(f, geom, a, b)
  f, g = sinkhorn_sweeps(geom, a, b, f, jnp.zeros_like(b), num_sweeps)
  return marginal_errors(geom, f, g, a, b)[1]


def _draw(data: _Data, spec: _Spec, key: jax.Array, batch_size: int):
  ka, kb = jax.random.split(key)
  ia = jax.random.randint(ka, (batch_size,), 0, data.a.shape[0])
  ib = ia if spec.paired else jax.random.randint(kb, (batch_size,), 0, data.b.shape[0])
  take = lambda tree, i: jax.tree_util.tree_map(lambda v: v[i], tree)  # noqa: E731
  x, px = (data.x, data.px) if spec.shared_x else (data.x[ia], take(data.px, ia))
  y, py = (data.y, data.py) if spec.shared_y else (data.y[ib], take(data.py, ib))
  targets = None if data.targets is None else data.targets[ia]
  return x, y, data.a[ia], data.b[ib], px, py, targets


def _batch_loss(params, template, data, spec, key, batch_size, loss, num_sweeps):
  alpha, head_params = params
  head = None if head_params is None else type(template.head)(head_params, template.head.hidden)
  model = template.replace(alpha=alpha, head=head)
  x, y, a, b, px, py, targets = _draw(data, spec, key, batch_size)
  ax = None if spec.shared_x else 0
  ay = None if spec.shared_y else 0

  def one(x, y, a, b, px, py, t):
    geom = make_geometry(x, y, spec.epsilon, spec.cost_fn, spec.online_batch_size)
    return head_loss(model, loss, px, py, x, y, a, b, geom, t, num_sweeps)

  t_axis = None if targets is None else 0
  return jnp.mean(jax.vmap(one, in_axes=(ax, ay, 0, 0, ax, ay, t_axis))(x, y, a, b, px, py, targets))


@functools.partial(jax.jit, static_argnames=("spec", "optimizer", "num_steps", "batch_size", "loss", "num_sweeps"))
def _train_chunk(
  params, opt_state, key, first_step, template, data, spec, optimizer, num_steps, batch_size, loss, num_sweeps
):
  grad_fn = jax.value_and_grad(_batch_loss)

  def step(carry, key):
    params, opt_state = carry
    value, grad = grad_fn(params, template, data, spec, key, batch_size, loss, num_sweeps)
    updates, opt_state = optimizer.update(grad, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), value

  # One key per global step: the draws do not depend on the chunking (resume gives the same model).
  keys = jax.vmap(lambda t: jax.random.fold_in(key, t))(first_step + jnp.arange(num_steps))
  (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), keys)
  return params, opt_state, losses


@functools.partial(jax.jit, static_argnames=("spec",))
def _sample_summaries(model, data, spec, key, num=256):
  """Pair summaries ``[num, 5 L]`` of ``num`` drawn pairs (a pair head's input scaling)."""
  x, y, a, b, px, py, _ = _draw(data, spec, key, num)

  def one(px, py, a, b):
    phi, psi = sliced.sliced_potentials_sorted(px, py, a, b, model.centering)
    return model.head_summary(px, py, a, b, phi, psi)

  ax = None if spec.shared_x else 0
  ay = None if spec.shared_y else 0
  return jax.vmap(one, in_axes=(ax, ay, 0, 0))(px, py, a, b)


_sort_bank = jax.jit(jax.vmap(sliced.sort_projections, in_axes=(0, None)))


def _projections(z: jax.Array, theta: jax.Array) -> sliced.SortedProjections:
  return sliced.sort_projections(z, theta) if z.ndim == 2 else _sort_bank(z, theta)


def _check_pools(pools: MeasurePools) -> Tuple[ProblemBatch, jax.Array, jax.Array]:
  (n, d), (m, dy) = validation.check_points("x", pools.x), validation.check_points("y", pools.y)
  if d != dy:
    raise ValueError(f"dimension mismatch: x has d={d} but y has d={dy}.")
  source, target = jnp.asarray(pools.source), jnp.asarray(pools.target)
  if source.ndim != 2 or target.ndim != 2 or source.shape[1] != n or target.shape[1] != m:
    raise ValueError(f"pools: need source [P, {n}] and target [Q, {m}] weights, got {source.shape}, {target.shape}.")
  validation.check_weights("source", source, source.shape)
  validation.check_weights("target", target, target.shape)
  validation.check_epsilon(pools.epsilon)
  source = source / jnp.sum(source, axis=1, keepdims=True)
  target = target / jnp.sum(target, axis=1, keepdims=True)
  # A one-pair batch carries the supports, epsilon and cost (and their checks).
  carrier = ProblemBatch(pools.x, pools.y, source[:1], target[:1], pools.epsilon, pools.cost_fn)
  return carrier, source, target


def fit_head(
  data: Any,
  *,
  loss: str = "sweeps",
  model: Optional[SlicedInitializer] = None,
  head: str = "mlp",
  hidden: Optional[Sequence[int]] = None,
  train_alpha: bool = True,
  num_sweeps: int = 3,
  steps: int = 2000,
  batch_size: int = 16,
  learning_rate: float = 1e-3,
  num_projections: int = 32,
  rng: Optional[jax.Array] = None,
  optimizer: Optional[optax.GradientTransformation] = None,
  truth: Any = None,
  threshold: float = 1e-5,
  chunk_steps: int = 100,
  progress: bool = True,
  checkpoint_path: Optional[str] = None,
  checkpoint_every: int = 1000,
  resume: bool = False,
  callback: Optional[Callable[[int, Any, np.ndarray], None]] = None,
) -> SlicedInitializer:
  r"""Fit ``alpha`` and a per-atom MLP head by optax steps on pairs drawn every step.

  Args:
    data: the training pairs: a :class:`~ottsliced.ProblemBatch` or a list of
      OTT ``LinearProblem``\ s (minibatches of these pairs), or
      :class:`MeasurePools` (fresh pairs every step).
    loss: ``"regression"`` (needs a list of pairs), ``"dual"`` or ``"sweeps"``.
    model: the starting model (its directions, ``alpha``, centring), e.g. a
      :func:`~ottsliced.fit_ra` fit; ``None``: ``num_projections`` fresh
      directions and ``alpha = 0``.
    head: ``"mlp"`` (:class:`~ottsliced.initializers.heads.MLPHead`, per atom) or ``"pair"``
      (:class:`~ottsliced.initializers.heads.PairHead`, per-pair coefficients; its input
      scaling is set from the summaries of 256 drawn pairs before training).
    hidden: the head's hidden widths (``None``: (64, 64) per atom, (256, 256)
      per pair); ``()`` fits the linear model alone (``"dual"`` is then OA-OT's
      objective, ``"regression"`` RA-OT's without its closed form). A fresh
      head outputs zero, so training starts from ``model``; a model that has a
      head keeps training it (``head`` and ``hidden`` ignored).
    train_alpha: also train ``alpha`` (else only the head).
    num_sweeps: differentiated Sinkhorn iterations of the ``"sweeps"`` loss.
    steps: optimisation steps.
    batch_size: pairs per step.
    learning_rate: peak learning rate of :func:`~ottsliced.fitting.objective.default_optimizer`.
    num_projections: ``L`` when ``model`` is ``None``.
    rng: PRNG key for the directions, the head's initial parameters and the
      draws (default key 0).
    optimizer: an optax transformation replacing the default.
    truth: converged potentials of the pairs (:func:`~ottsliced.fitting.regression.ground_truth`)
      for ``"regression"``; ``None``: solved here to ``threshold``.
    threshold: marginal-error threshold of that ground truth.
    chunk_steps: steps per compiled ``lax.scan`` chunk.
    progress: show a progress bar.
    checkpoint_path: write the training state there every
      ``checkpoint_every`` steps and at the end (atomic, checksummed).
    checkpoint_every: steps between checkpoints.
    resume: continue from ``checkpoint_path`` if it exists (same settings and
      data); every step's draw depends only on ``rng`` and the step index, so
      a resumed run ends with the same model as an uninterrupted one.
    callback: ``callback(step, model, chunk_losses)`` after each chunk.

  Returns:
    The fitted :class:`~ottsliced.SlicedInitializer` (with its head unless
    ``hidden=()``); ``summary`` holds the loss, settings, fit seconds and the
    number of parameters.

  Raises:
    ValueError: bad arguments, a model of another dimension or epsilon,
      ``"regression"`` on pools, no converged training pair.
  """
  if loss not in LOSSES:
    raise ValueError(f"`loss` must be one of {LOSSES}, got {loss!r}.")
  if head not in HEADS:
    raise ValueError(f"`head` must be one of {tuple(HEADS)}, got {head!r}.")
  hidden = {"mlp": (64, 64), "pair": (256, 256)}[head] if hidden is None else tuple(hidden)
  if min(steps, batch_size, chunk_steps, num_sweeps) < 1:
    raise ValueError(
      f"`steps`, `batch_size`, `chunk_steps`, `num_sweeps` must be >= 1, got {steps}, {batch_size}, "
      f"{chunk_steps}, {num_sweeps}."
    )
  if not learning_rate > 0:
    raise ValueError(f"`learning_rate` must be > 0, got {learning_rate}.")
  if checkpoint_path is not None and checkpoint_every < 1:
    raise ValueError(f"`checkpoint_every` must be >= 1, got {checkpoint_every}.")
  if resume and checkpoint_path is None:
    raise ValueError("`resume=True` needs a `checkpoint_path`.")
  rng = jax.random.key(0) if rng is None else rng
  rng_theta, rng_head, rng_steps = jax.random.split(rng, 3)
  t0 = time.perf_counter()

  pooled = isinstance(data, MeasurePools)
  if pooled:
    if loss == "regression":
      raise ValueError("the regression loss needs converged potentials: pass a list of pairs, not pools.")
    batch, a_all, b_all = _check_pools(data)
  else:
    batch = as_problem_batch(data)
    a_all, b_all = batch.a, batch.b
  if model is None:
    model = SlicedInitializer(
      directions(rng_theta, batch.dim, num_projections, dtype=batch.x.dtype),
      jnp.zeros(num_projections, batch.x.dtype),
      epsilon=batch.epsilon,
    )
  if not isinstance(model, SlicedInitializer):
    raise TypeError(f"`model` must be a SlicedInitializer or None, got {type(model).__name__}.")
  model._check_problem(batch.x, batch.y, batch.epsilon)  # noqa: SLF001 (dimension, epsilon)
  if model.beta is not None:
    raise ValueError("fit_head fits f-side models; this model has a g-side `beta`.")
  model = model.unbind()
  fresh_head = model.head is None and len(hidden) > 0
  if fresh_head:
    model = model.replace(head=HEADS[head].init(rng_head, model.num_projections, model.dim, hidden, model.theta.dtype))

  targets = None
  num_pairs = int(a_all.shape[0])
  if loss == "regression":
    gt = ground_truth(batch, threshold=threshold, progress=progress) if truth is None else truth
    if tuple(gt.g.shape) != tuple(batch.b.shape):
      raise ValueError(f"`truth` holds target potentials of shape {gt.g.shape}; the pairs have {batch.b.shape}.")
    keep = np.flatnonzero(np.asarray(gt.converged))
    if keep.size == 0:
      raise ValueError(f"Sinkhorn converged on none of the {num_pairs} training pairs (threshold={threshold:g}).")
    batch = batch.take(keep)
    a_all, b_all = batch.a, batch.b
    targets = regression_targets(batch, gt.g[keep], model.centering, "f")

  spec = _Spec(
    paired=not pooled,
    shared_x=batch.shared_x,
    shared_y=batch.shared_y,
    epsilon=batch.epsilon,
    cost_fn=_canonical_cost(batch.cost_fn),
    online_batch_size=batch.online_batch_size,
  )
  theta = model.theta
  x, y = batch.x.astype(theta.dtype), batch.y.astype(theta.dtype)
  px = _projections(x, theta)
  py = px if (spec.shared_x and spec.shared_y and bool(jnp.array_equal(x, y))) else _projections(y, theta)
  arrays = _Data(x, y, a_all.astype(theta.dtype), b_all.astype(theta.dtype), px, py, targets)
  if fresh_head and model.head.needs_summary:
    # Output scale: the size of alpha's entries per hidden unit, so that the first Adam steps (every output
    # weight moves by about the learning rate) change the coefficients in proportion to alpha.
    size = float(jnp.mean(jnp.abs(model.alpha))) or 1.0
    scale = size / model.head.hidden[-1]
    model = model.replace(head=model.head.standardize(_sample_summaries(model, arrays, spec, rng_head), scale))

  optimizer = default_optimizer(learning_rate, steps) if optimizer is None else optimizer
  if not train_alpha:
    labels = lambda p: ("freeze", jax.tree_util.tree_map(lambda _: "train", p[1]))  # noqa: E731
    optimizer = optax.multi_transform({"train": optimizer, "freeze": optax.set_to_zero()}, labels)
    if model.head is None:
      raise ValueError("`train_alpha=False` with no head leaves nothing to train.")
  params = (model.alpha, None if model.head is None else model.head.params)
  opt_state = optimizer.init(params)
  losses: List[np.ndarray] = []
  done = 0
  config = {
    "loss": loss,
    "steps": int(steps),
    "batch_size": int(batch_size),
    "learning_rate": float(learning_rate),
    "num_sweeps": int(num_sweeps),
    "train_alpha": bool(train_alpha),
    "data": npz.checksum({"a": np.asarray(a_all), "b": np.asarray(b_all), "theta": np.asarray(theta)}),
  }
  if resume and os.path.exists(checkpoint_path):
    params, opt_state, losses, done = checkpoint.load_checkpoint(
      checkpoint_path, _CHECKPOINT_FORMAT, config, params, opt_state
    )
  template = model.replace(alpha=params[0])
  bar = None
  if progress:
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, initial=done, desc=f"fit_head ({loss})", unit="step")

  def current(params) -> SlicedInitializer:
    head = None if params[1] is None else type(model.head)(params[1], model.head.hidden)
    return model.replace(alpha=params[0], head=head)

  try:
    while done < steps:
      num = min(chunk_steps, steps - done)
      if checkpoint_path is not None:
        num = min(num, checkpoint_every - done % checkpoint_every)
      params, opt_state, chunk_losses = _train_chunk(
        params, opt_state, rng_steps, done, template, arrays, spec, optimizer, num, batch_size, loss, num_sweeps
      )
      chunk_losses = np.asarray(chunk_losses)
      losses.append(chunk_losses)
      done += num
      if checkpoint_path is not None and (done % checkpoint_every == 0 or done == steps):
        checkpoint.save_checkpoint(checkpoint_path, _CHECKPOINT_FORMAT, config, params, opt_state, losses, done)
      if bar is not None:
        bar.update(num)
        bar.set_postfix(loss=f"{chunk_losses.mean():.5g}")
      if callback is not None:
        callback(done, current(params), chunk_losses)
  finally:
    if bar is not None:
      bar.close()
  history = np.concatenate(losses) if losses else np.zeros(0)
  if not all(np.all(np.isfinite(np.asarray(p))) for p in jax.tree_util.tree_leaves(params)):
    raise FloatingPointError("fit_head produced non-finite parameters; lower `learning_rate`.")
  fitted = current(params)
  summary = {
    "loss_name": loss,
    "num_pairs": num_pairs if not pooled else None,
    "pools": [int(a_all.shape[0]), int(b_all.shape[0])] if pooled else None,
    "steps": int(steps),
    "batch_size": int(batch_size),
    "learning_rate": float(learning_rate),
    "num_sweeps": int(num_sweeps),
    "hidden": [] if fitted.head is None else list(fitted.head.hidden),
    "parameters": int(fitted.alpha.size) + (0 if fitted.head is None else fitted.head.num_parameters),
    "final_loss": float(history[-min(len(history), 100) :].mean()),
    "fit_seconds": time.perf_counter() - t0,
    "loss": history.tolist(),
  }
  return fitted.replace(method=_METHOD[loss], summary=summary)
