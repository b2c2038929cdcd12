"""RA-OT: ridge regression of Sinkhorn potentials on sliced potentials."""

import functools
import time
import warnings
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ottsliced import sliced
from ottsliced._internal import validation
from ottsliced.initializers.sliced_initializer import SlicedInitializer
from ottsliced.problems import sharding
from ottsliced.problems.batch import ProblemBatch, as_problem_batch
from ottsliced.sliced.directions import directions
from ottsliced.solvers.batch import solve_batch
from ottsliced.solvers.iterations import final_errors, num_iterations

__all__ = [
  "GroundTruth",
  "NormalEquations",
  "fit_ra",
  "ground_truth",
  "normal_equations",
  "regression_targets",
  "ridge_solve",
]


class GroundTruth(NamedTuple):
  """Converged Sinkhorn potentials of a batch, in OTT's convention.

  Attributes:
    f: ``[B, n]`` (``-inf`` at zero weights).
    g: ``[B, m]``.
    converged: ``[B]`` bool.
    errors: ``[B]`` final marginal error.
    n_iters: ``[B]`` iterations used.
  """

  f: jax.Array
  g: jax.Array
  converged: jax.Array
  errors: jax.Array
  n_iters: jax.Array


def ground_truth(
  batch: ProblemBatch,
  *,
  threshold: float = 1e-5,
  max_iterations: int = 20_000,
  chunk_size: int = 64,
  progress: bool = False,
  mesh: Optional[jax.sharding.Mesh] = None,
) -> GroundTruth:
  """Sinkhorn from zeros to ``threshold`` on every pair, ``chunk_size`` pairs at a time.

  Each chunk is split over ``mesh`` (see :func:`~ottsliced.solvers.batch.solve_batch`;
  ``None``: all devices when there are several). ``chunk_size`` counts pairs
  over all devices. The result holds the same values either way, as arrays on
  the default device.
  """
  mesh = sharding.default_mesh(mesh)
  fs, gs, conv, errs, iters = [], [], [], [], []
  chunks = range(0, batch.num_pairs, chunk_size)
  if progress:
    from tqdm.auto import tqdm

    chunks = tqdm(chunks, desc="ground truth (Sinkhorn)", unit="chunk")
  for start in chunks:
    sub = batch.take(slice(start, start + chunk_size))
    out = solve_batch(sub, threshold=threshold, max_iterations=max_iterations, inner_iterations=10, mesh=mesh)
    fs.append(out.f)
    gs.append(out.g)
    conv.append(out.converged)
    errs.append(final_errors(out))
    iters.append(num_iterations(out))
  cat = lambda xs: jnp.concatenate(xs, axis=0)  # noqa: E731
  gt = GroundTruth(cat(fs), cat(gs), cat(conv), cat(errs), cat(iters))
  if mesh is None:
    return gt
  # Back to one device per process (a collective across processes), so that
  # the regression that follows runs exactly as on a single device.
  return GroundTruth(*(jnp.asarray(z) for z in sharding.gather_to_host(gt)))


def _reduced_f(geom, a, b, g):
  """Reduced potential ``f - eps log a = -eps LSE_j((g_j - C_ij)/eps)``, finite everywhere."""
  return geom.update_potential(jnp.zeros_like(a), g, jnp.zeros_like(a), axis=1)


def _reduced_g(geom, a, b, f):
  return geom.update_potential(f, jnp.zeros_like(b), jnp.zeros_like(b), axis=0)


def _center(v: jax.Array, w: jax.Array, centering: str) -> jax.Array:
  if centering == "weighted":
    return v - jnp.sum(w * v) / jnp.sum(w)
  if centering == "mean":
    return v - jnp.mean(v)
  return v


class NormalEquations(NamedTuple):
  """Sufficient statistics of a least-squares fit: ``gram [L, L]``, ``rhs [L]``, ``rows``."""

  gram: np.ndarray
  rhs: np.ndarray
  rows: int


@functools.partial(jax.jit, static_argnames=("centering", "side"))
def regression_targets(batch: ProblemBatch, potential: jax.Array, centering: str = "weighted", side: str = "f"):
  r"""RA-OT targets from converged potentials, centred like the features.

  ``side="f"``: from the converged ``g [B, m]``, the reduced source potential
  :math:`f^\star-\varepsilon\log a=-\varepsilon\mathrm{LSE}_j((g^\star_j-C_{ij})/\varepsilon)`,
  finite on every atom. ``side="g"``: from ``f [B, n]`` (``-inf`` at zero
  weights), the reduced target potential. Returns ``[B, n]`` or ``[B, m]``.
  """
  ax, ay = batch.point_axes
  reduce_fn, w = (_reduced_f, batch.a) if side == "f" else (_reduced_g, batch.b)
  fn = lambda x, y, a, b, p: reduce_fn(batch.geometry(x, y), a, b, p)  # noqa: E731
  target = jax.vmap(fn, in_axes=(ax, ay, 0, 0, 0))(batch.x, batch.y, batch.a, batch.b, potential)
  how = "weighted" if side == "g" else centering
  return jax.vmap(lambda v, ww: _center(v, ww, how))(target, w)


def _side_features(batch, theta, centering, side):
  phi, psi = sliced.batched_sliced_potentials(batch.x, batch.y, batch.a, batch.b, theta, centering)
  if side == "f":
    return phi, batch.a
  # g-side features are centred on their own weights, like their targets.
  b = batch.b
  return psi - jnp.sum(b[..., None] * psi, axis=1, keepdims=True) / jnp.sum(b, axis=1)[:, None, None], b


@functools.partial(jax.jit, static_argnames=("centering", "side", "include_zero_weight_rows"))
def _chunk_normal_equations(batch, theta, targets, centering, side, include_zero_weight_rows):
  feats, w = _side_features(batch, theta, centering, side)
  rows = jnp.ones_like(w) if include_zero_weight_rows else (w > 0).astype(w.dtype)
  hi = jax.lax.Precision.HIGHEST
  gram = jnp.einsum("bnl,bn,bnk->lk", feats, rows, feats, precision=hi)
  rhs = jnp.einsum("bnl,bn,bn->l", feats, rows, targets, precision=hi)
  return gram, rhs, jnp.sum(rows)


def normal_equations(
  batch: ProblemBatch,
  theta: jax.Array,
  targets: jax.Array,
  *,
  centering: str = "weighted",
  side: str = "f",
  include_zero_weight_rows: bool = False,
  chunk_size: int = 64,
) -> NormalEquations:
  """Accumulate ``Phi^T Phi`` and ``Phi^T y`` over pairs, in float64 on the host.

  Features are computed chunk by chunk, so memory is that of one chunk of
  pairs whatever the number of pairs. ``targets`` is ``[B, n]`` (``side="f"``)
  or ``[B, m]`` (``side="g"``), e.g. from :func:`regression_targets`.
  """
  L = theta.shape[0]
  gram, rhs, rows = np.zeros((L, L)), np.zeros(L), 0.0
  for start in range(0, batch.num_pairs, chunk_size):
    sl = slice(start, start + chunk_size)
    gc, rc, nc = _chunk_normal_equations(batch.take(sl), theta, targets[sl], centering, side, include_zero_weight_rows)
    gram += np.asarray(gc, dtype=np.float64)
    rhs += np.asarray(rc, dtype=np.float64)
    rows += float(nc)
  return NormalEquations(gram, rhs, int(rows))


def ridge_solve(eq: NormalEquations, ridge: float) -> np.ndarray:
  """``(G + ridge I)^{-1} r`` in float64."""
  L = eq.gram.shape[0]
  return np.linalg.solve(eq.gram + ridge * np.eye(L), eq.rhs)


def fit_ra(
  problems: Any,
  *,
  num_projections: int = 32,
  ridge: float = 1e-3,
  rng: Optional[jax.Array] = None,
  theta: Optional[jax.Array] = None,
  centering: sliced.Centering = "weighted",
  g_side: bool = False,
  include_zero_weight_rows: bool = False,
  threshold: float = 1e-5,
  max_iterations: int = 20_000,
  chunk_size: int = 64,
  progress: bool = True,
  mesh: Optional[jax.sharding.Mesh] = None,
  truth: Optional[GroundTruth] = None,
) -> SlicedInitializer:
  r"""Fit RA-OT: ridge regression of Sinkhorn potentials on sliced potentials.

  For every training pair, OTT Sinkhorn (from zeros) is run to ``threshold``;
  the target is the reduced potential
  :math:`y=f^\star-\varepsilon\log a=-\varepsilon\mathrm{LSE}_j((g^\star_j-C_{ij})/\varepsilon)`,
  centred like the features. Then
  :math:`\alpha=(\Phi^\top\Phi+\lambda I)^{-1}\Phi^\top y` over the stacked
  rows of all pairs, with the normal equations accumulated pair-chunk by
  pair-chunk and solved in float64. Pairs whose Sinkhorn did not converge are
  reported (a warning and ``summary["non_converged"]``) and left out.

  Args:
    problems: a :class:`ProblemBatch` or a list of OTT ``LinearProblem``\ s on
      point clouds with explicit epsilon.
    num_projections: ``L``, the number of directions (ignored with ``theta``). 32 by default:
      on MNIST, colour palettes and the sphere it needs as few Sinkhorn iterations as
      the paper's 100, and each prediction costs about a third (``docs/results.md`` at commit 301e8bd).
    ridge: :math:`\lambda`.
    rng: PRNG key for the directions (default ``jax.random.key(0)``).
    theta: directions ``[L, d]`` to use instead of drawing them.
    centering: gauge of features and targets (see ``sliced_potentials``).
    g_side: also fit ``beta`` for the target potential.
    include_zero_weight_rows: regress on zero-weight atoms too (the authors
      do; they do not affect the plan, and padding would then count).
    threshold: Sinkhorn marginal-error threshold for the ground truth.
    max_iterations: Sinkhorn iteration cap for the ground truth.
    chunk_size: pairs per compiled chunk (memory bound), over all devices.
    progress: show progress bars.
    mesh: devices to split the ground-truth Sinkhorn solves over, the
      dominant cost (:func:`ottsliced.problems.sharding.pair_mesh`; ``None``: all
      devices when there are several, else one). The regression itself
      (features and normal equations, one pass over the pairs) runs on one
      device per process. The fitted model does not depend on it.
    truth: converged potentials of ``problems`` (:func:`ground_truth`, e.g.
      shared with :func:`ottsliced.fit_correction_steps`); ``None``: computed
      here with ``threshold`` and ``max_iterations``.

  Returns:
    A :class:`SlicedInitializer` with ``method="ra"``.
  """
  batch = as_problem_batch(problems)
  if ridge < 0:
    raise ValueError(f"`ridge` must be >= 0, got {ridge}.")
  theta = _directions_for(batch, theta, num_projections, rng)
  t0 = time.perf_counter()
  if truth is None:
    gt = ground_truth(
      batch, threshold=threshold, max_iterations=max_iterations, chunk_size=chunk_size, progress=progress, mesh=mesh
    )
  elif truth.g.shape != batch.b.shape or truth.f.shape != batch.a.shape:
    raise ValueError(
      f"`truth` holds potentials of shapes {truth.f.shape}, {truth.g.shape} but the pairs' weights have "
      f"{batch.a.shape}, {batch.b.shape}."
    )
  else:
    gt = truth
  ok = np.asarray(gt.converged)
  bad = int((~ok).sum())
  if bad == batch.num_pairs:
    raise ValueError(
      f"Sinkhorn converged on none of the {bad} training pairs (threshold={threshold:g}, "
      f"max_iterations={max_iterations}); raise max_iterations or threshold."
    )
  if bad:
    warnings.warn(
      f"fit_ra: Sinkhorn did not converge on {bad} of {batch.num_pairs} training pairs "
      f"(threshold={threshold:g}); they are left out of the fit.",
      stacklevel=2,
    )
  keep = np.flatnonzero(ok)
  train = batch.take(keep)
  t_gt = time.perf_counter() - t0
  targets = regression_targets(train, gt.g[keep], centering, "f")
  eq_f = normal_equations(
    train,
    theta,
    targets,
    centering=centering,
    side="f",
    include_zero_weight_rows=include_zero_weight_rows,
    chunk_size=chunk_size,
  )
  alpha = ridge_solve(eq_f, ridge)
  beta = None
  if g_side:
    f_star = jnp.where(train.a > 0, gt.f[keep], -jnp.inf)
    eq_g = normal_equations(
      train,
      theta,
      regression_targets(train, f_star, centering, "g"),
      centering=centering,
      side="g",
      include_zero_weight_rows=include_zero_weight_rows,
      chunk_size=chunk_size,
    )
    beta = jnp.asarray(ridge_solve(eq_g, ridge), dtype=theta.dtype)
  summary = {
    "num_pairs": int(batch.num_pairs),
    "non_converged": bad,
    "ground_truth_threshold": float(threshold),
    "ground_truth_mean_iterations": float(np.mean(np.asarray(gt.n_iters)[keep])),
    "ridge": float(ridge),
    "rows": eq_f.rows,
    "ground_truth_seconds": t_gt,
    "fit_seconds": time.perf_counter() - t0,
  }
  return SlicedInitializer(
    theta,
    jnp.asarray(alpha, dtype=theta.dtype),
    beta,
    method="ra",
    epsilon=batch.epsilon,
    centering=centering,
    log_weight_offset=True,
    summary=summary,
  )


def _directions_for(batch: ProblemBatch, theta: Optional[jax.Array], num: int, rng: Optional[jax.Array]) -> jax.Array:
  if theta is not None:
    validation.check_points("theta", theta)
    if theta.shape[-1] != batch.dim:
      raise ValueError(f"`theta` has d={theta.shape[-1]} but the points have d={batch.dim}.")
    return jnp.asarray(theta)
  rng = jax.random.key(0) if rng is None else rng
  return directions(rng, batch.dim, num, dtype=batch.x.dtype)
