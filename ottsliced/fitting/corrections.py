r"""Amortized steps for :class:`~ottsliced.SlicedSinkhorn`: coefficients fitted by regression or through sweeps.

The training-free solver adds ``s`` times the *mean* of the ``L`` correction
potentials :math:`\psi_\ell` (1-D OT from the current column marginal
:math:`c` to :math:`b`) to :math:`g`. The amortized solver weights them,
:math:`g\leftarrow\mathcal T_b f+\Psi\beta_k`, with :math:`\beta_k\in\mathbb R^L`
fitted once per task, like RA-OT's :math:`\alpha`: for correction ``k`` the
solver is run on every training pair up to that correction (its earlier
corrections already fitted, its line search included), and :math:`\beta_k`
is the weighted ridge least-squares fit of the potential error left,

.. math::

  \beta_k=\arg\min_\beta\sum_{\text{pairs}}\sum_j b_j\big(r_j-(\Psi\beta)_j\big)^2
  +\lambda\,\tfrac{\mathrm{tr}\,G}{L}\|\beta\|^2,\qquad
  r=g^\star-\mathcal T_b f\ \text{(centred: } \textstyle\sum_j b_jr_j=0),

with :math:`g^\star` the converged Sinkhorn potential and :math:`G` the
weighted Gram matrix. The weights :math:`b_j` make the fit target the
marginal error (an error :math:`\delta_j` in :math:`g_j` moves the column
mass by about :math:`b_j\delta_j/\varepsilon`). No gradient, no iteration:
one pass over the pairs per correction, normal equations in float64.

``method="sweeps"`` fits all ``K`` vectors jointly through the iterations that
follow them, with no ground truth: the loss is the pair-averaged log of the
column L1 marginal error (the stopping metric) after the ``K`` corrections and
``sweeps`` more iterations of the solver, differentiated through the unrolled
iterations (:meth:`~ottsliced.SlicedSinkhorn.fixed_iterations_errors`) and
minimised with optax (Adam, cosine decay), starting from the solver's own steps.
"""

import functools
from typing import Any, List, Literal, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from ott.problems.linear import linear_problem

from ottsliced.fitting.regression import GroundTruth, NormalEquations, ground_truth, ridge_solve
from ottsliced.initializers.sliced_initializer import SlicedInitializer
from ottsliced.problems.batch import ProblemBatch, as_problem_batch
from ottsliced.solvers.sliced_sinkhorn import SlicedSinkhorn, correction_features

__all__ = ["CorrectionFit", "FitMethod", "fit_correction_steps"]

FitMethod = Literal["regression", "sweeps"]


class CorrectionFit(NamedTuple):
  """Fitted correction coefficients.

  Attributes:
    solver: the input solver with ``steps`` replaced by the fitted ``[K, L]`` coefficients.
    coef: ``[K, L]`` the coefficients (float64, host).
    explained: ``[K]`` fraction of the weighted squared potential error that each
      correction removes on the training pairs, measured before the next
      sweep (``1 - ||r - Psi beta||^2 / ||r||^2``); ``method="regression"`` only, else empty.
    losses: the training loss per optimisation step (``method="sweeps"``; else empty).
  """

  solver: SlicedSinkhorn
  coef: np.ndarray
  explained: np.ndarray
  losses: np.ndarray = np.zeros(0)

  @property
  def model(self) -> SlicedInitializer:
    """The solver's :class:`~ottsliced.SlicedInitializer` with these coefficients as its ``corrections``.

    One model then carries its start and its corrections (saved, loaded and
    shipped together); :meth:`SlicedSinkhorn.from_initializer` applies them.

    Raises:
      ValueError: the solver's initializer is not a ``SlicedInitializer``.
    """
    ini = self.solver.initializer
    if not isinstance(ini, SlicedInitializer):
      raise ValueError(
        f"the fitted solver starts from {type(ini).__name__}, not a SlicedInitializer: no model to attach to; "
        "use `fit.solver`."
      )
    return ini.replace(corrections=jnp.asarray(self.coef, dtype=ini.theta.dtype))


@jax.jit
def _chunk_equations(batch: ProblemBatch, solver: SlicedSinkhorn, g_star: jax.Array):
  """Weighted normal equations of one chunk: ``gram [L, L]``, ``rhs [L]``, ``sum_j b_j r_j^2``."""

  def one(x, y, a, b, gs):
    state = solver.correction_state(linear_problem.LinearProblem(batch.geometry(x, y), a, b))
    ok = b > 0
    w = jnp.where(ok, b, 0.0) / jnp.sum(jnp.where(ok, b, 0.0))
    feats = jnp.where(ok[:, None], correction_features(state.target_projections, b, state.column_marginal), 0.0)
    r = jnp.where(ok, gs - state.g, 0.0)
    r = jnp.where(ok, r - jnp.sum(w * r), 0.0)
    hi = jax.lax.Precision.HIGHEST
    gram = jnp.einsum("ml,m,mk->lk", feats, w, feats, precision=hi)
    return gram, jnp.einsum("ml,m,m->l", feats, w, r, precision=hi), jnp.sum(w * r * r)

  ax, ay = batch.point_axes
  gram, rhs, sq = jax.vmap(one, in_axes=(ax, ay, 0, 0, 0))(batch.x, batch.y, batch.a, batch.b, g_star)
  return gram.sum(0), rhs.sum(0), sq.sum()


def _sweeps_loss(coef: jax.Array, solver: SlicedSinkhorn, batch: ProblemBatch, idx: jax.Array, sweeps: int):
  """Mean over pairs ``idx`` of ``log`` of the column L1 error after the ``K`` corrections and ``sweeps`` iterations."""
  current = solver.replace(steps=coef)
  last = coef.shape[0] + sweeps  # iteration 1, K corrections, `sweeps` more: index of the last error

  def one(x, y, a, b):
    errors = current.fixed_iterations_errors(linear_problem.LinearProblem(batch.geometry(x, y), a, b), last + 1)
    return jnp.log(errors[last] + jnp.finfo(errors.dtype).tiny)

  ax, ay = batch.point_axes
  x = batch.x if ax is None else batch.x[idx]
  y = batch.y if ay is None else batch.y[idx]
  return jnp.mean(jax.vmap(one, in_axes=(ax, ay, 0, 0))(x, y, batch.a[idx], batch.b[idx]))


@functools.partial(jax.jit, static_argnames=("optimizer", "sweeps"))
def _sweeps_step(coef, opt_state, solver, batch, idx, optimizer, sweeps):
  loss, grad = jax.value_and_grad(_sweeps_loss)(coef, solver, batch, idx, sweeps)
  grad = jnp.where(jnp.isfinite(grad), grad, 0.0)
  updates, opt_state = optimizer.update(grad, opt_state, coef)
  return optax.apply_updates(coef, updates), opt_state, loss


def _fit_sweeps(
  train: ProblemBatch,
  solver: SlicedSinkhorn,
  num_corrections: int,
  sweeps: int,
  num_steps: int,
  learning_rate: float,
  batch_size: int,
  seed: int,
  progress: bool,
) -> CorrectionFit:
  num = solver.theta.shape[0]
  init = solver.coef
  if init.shape[0] < num_corrections:  # the default schedule's last step for the missing ones
    last = init[-1:] if init.shape[0] else jnp.full((1, num), 1.0 / num, solver.theta.dtype)
    init = jnp.concatenate([init, jnp.repeat(last, num_corrections - init.shape[0], axis=0)])
  coef = jnp.asarray(init[:num_corrections], solver.theta.dtype)
  schedule = optax.cosine_decay_schedule(learning_rate, max(int(num_steps), 1), alpha=0.01)
  optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))
  opt_state = optimizer.init(coef)
  rs = np.random.default_rng(seed)
  size = min(int(batch_size), train.num_pairs)
  steps: Any = range(int(num_steps))
  if progress:
    from tqdm.auto import tqdm

    steps = tqdm(steps, desc="correction steps (sweeps)", unit="step")
  losses: List[float] = []
  for _ in steps:
    idx = jnp.asarray(rs.choice(train.num_pairs, size=size, replace=False))
    coef, opt_state, loss = _sweeps_step(coef, opt_state, solver, train, idx, optimizer, int(sweeps))
    losses.append(float(loss))
  coef = np.asarray(coef, np.float64)
  fitted = solver.replace(steps=jnp.asarray(coef, dtype=solver.theta.dtype))
  return CorrectionFit(fitted, coef, np.zeros(0), np.asarray(losses))


def fit_correction_steps(
  problems: Any,
  solver: SlicedSinkhorn,
  *,
  num_corrections: int = 2,
  method: FitMethod = "regression",
  ridge: float = 1e-3,
  truth: Optional[GroundTruth] = None,
  threshold: float = 1e-5,
  max_iterations: int = 20_000,
  chunk_size: int = 64,
  sweeps: int = 3,
  num_steps: int = 200,
  learning_rate: float = 1e-2,
  batch_size: int = 16,
  seed: int = 0,
  progress: bool = False,
) -> CorrectionFit:
  r"""Fit ``num_corrections`` per-direction coefficient vectors :math:`\beta_k` for ``solver``'s corrections.

  The fit keeps everything else of ``solver``: its directions, its
  initializer (the coefficients depend on the start they were fitted from),
  its line search (applied to the earlier, fitted corrections while fitting
  the later ones, as at run time), Anderson and the stopping rule.

  Args:
    problems: training pairs, a :class:`ProblemBatch` or a list of OTT
      ``LinearProblem``\ s, at the epsilon the solver will see.
    solver: a :class:`SlicedSinkhorn`; its own ``steps`` are ignored.
    num_corrections: ``K``.
    method: ``"regression"`` (closed form, needs converged potentials) or
      ``"sweeps"`` (gradient steps on the error after the next ``sweeps``
      iterations, no ground truth; starts from the solver's steps, its last
      step repeated when it has fewer than ``K``).
    ridge: :math:`\lambda`, relative to the mean eigenvalue of the Gram matrix.
    truth: converged potentials of ``problems`` (:func:`ottsliced.fitting.regression.ground_truth`),
      e.g. shared with an RA-OT fit; computed here when ``None``.
    threshold: Sinkhorn threshold of the ground truth computed here.
    max_iterations: its iteration cap.
    chunk_size: pairs per compiled chunk (memory bound; regression).
    sweeps: iterations after the ``K``-th correction whose error is the loss (sweeps).
    num_steps: optimisation steps (sweeps).
    learning_rate: Adam's peak learning rate (sweeps).
    batch_size: pairs per step, drawn without replacement (sweeps).
    seed: seed of the pair draws (sweeps).
    progress: show a progress bar (sweeps).

  Returns:
    A :class:`CorrectionFit`; ``fit.solver`` is ready to use.
  """
  batch = as_problem_batch(problems)
  if not isinstance(solver, SlicedSinkhorn):
    raise ValueError(f"`solver` must be a SlicedSinkhorn, got {type(solver).__name__}.")
  if int(num_corrections) < 1:
    raise ValueError(f"`num_corrections` must be >= 1, got {num_corrections}.")
  if not ridge >= 0:
    raise ValueError(f"`ridge` must be >= 0, got {ridge}.")
  if solver.theta.shape[1] != batch.dim:
    raise ValueError(f"the solver's theta has d={solver.theta.shape[1]} but the points have d={batch.dim}.")
  if method == "sweeps":
    if int(sweeps) < 1 or int(num_steps) < 1 or int(batch_size) < 1 or not learning_rate > 0:
      raise ValueError(
        f"need sweeps, num_steps, batch_size >= 1 and learning_rate > 0, got {sweeps}, {num_steps}, "
        f"{batch_size}, {learning_rate}."
      )
    return _fit_sweeps(
      batch, solver, int(num_corrections), sweeps, num_steps, learning_rate, batch_size, seed, progress
    )
  if method != "regression":
    raise ValueError(f"`method` must be 'regression' or 'sweeps', got {method!r}.")
  if truth is None:
    truth = ground_truth(batch, threshold=threshold, max_iterations=max_iterations, chunk_size=chunk_size)
  if truth.g.shape != batch.b.shape:
    raise ValueError(f"`truth.g` has shape {truth.g.shape} but the pairs' target weights have {batch.b.shape}.")
  keep = np.flatnonzero(np.asarray(truth.converged))
  if keep.size == 0:
    raise ValueError("the ground-truth Sinkhorn converged on none of the training pairs; raise max_iterations.")
  train, g_star = batch.take(keep), truth.g[keep]
  num = solver.theta.shape[0]
  coefs, explained = [], []
  for _ in range(int(num_corrections)):
    current = solver.replace(steps=jnp.asarray(np.reshape(coefs, (-1, num)), dtype=solver.theta.dtype))
    gram, rhs, sq = np.zeros((num, num)), np.zeros(num), 0.0
    for start in range(0, train.num_pairs, chunk_size):
      sl = slice(start, start + chunk_size)
      gc, rc, sc = _chunk_equations(train.take(sl), current, g_star[sl])
      gram += np.asarray(gc, np.float64)
      rhs += np.asarray(rc, np.float64)
      sq += float(sc)
    beta = ridge_solve(NormalEquations(gram, rhs, train.num_pairs), ridge * np.trace(gram) / num)
    coefs.append(beta)
    explained.append(1.0 - (sq - 2 * beta @ rhs + beta @ gram @ beta) / sq if sq > 0 else 0.0)
  coef = np.stack(coefs)
  fitted = solver.replace(steps=jnp.asarray(coef, dtype=solver.theta.dtype))
  return CorrectionFit(fitted, coef, np.asarray(explained))
