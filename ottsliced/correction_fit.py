r"""Amortized steps for :class:`~ottsliced.SlicedSinkhorn`: per-direction coefficients fitted by regression.

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
"""

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from ott.problems.linear import linear_problem

from ottsliced.problems import ProblemBatch, as_problem_batch
from ottsliced.regression import GroundTruth, ground_truth
from ottsliced.sliced_sinkhorn import SlicedSinkhorn, correction_features

__all__ = ["CorrectionFit", "fit_correction_steps"]


class CorrectionFit(NamedTuple):
  """Fitted correction coefficients.

  Attributes:
    solver: the input solver with ``steps`` replaced by the fitted ``[K, L]`` coefficients.
    coef: ``[K, L]`` the coefficients (float64, host).
    explained: ``[K]`` fraction of the weighted squared potential error that each
      correction removes on the training pairs, measured before the next
      sweep (``1 - ||r - Psi beta||^2 / ||r||^2``).
  """

  solver: SlicedSinkhorn
  coef: np.ndarray
  explained: np.ndarray


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


def fit_correction_steps(
  problems: Any,
  solver: SlicedSinkhorn,
  *,
  num_corrections: int = 2,
  ridge: float = 1e-3,
  truth: Optional[GroundTruth] = None,
  threshold: float = 1e-5,
  max_iterations: int = 20_000,
  chunk_size: int = 64,
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
    ridge: :math:`\lambda`, relative to the mean eigenvalue of the Gram matrix.
    truth: converged potentials of ``problems`` (:func:`ottsliced.regression.ground_truth`),
      e.g. shared with an RA-OT fit; computed here when ``None``.
    threshold: Sinkhorn threshold of the ground truth computed here.
    max_iterations: its iteration cap.
    chunk_size: pairs per compiled chunk (memory bound).

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
    beta = np.linalg.solve(gram + ridge * np.trace(gram) / num * np.eye(num), rhs)
    coefs.append(beta)
    explained.append(1.0 - (sq - 2 * beta @ rhs + beta @ gram @ beta) / sq if sq > 0 else 0.0)
  coef = np.stack(coefs)
  fitted = solver.replace(steps=jnp.asarray(coef, dtype=solver.theta.dtype))
  return CorrectionFit(fitted, coef, np.asarray(explained))
