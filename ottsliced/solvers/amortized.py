"""Amortized solves: the model's prediction, entropic c-transforms, optional refinement or fallback."""

import functools
from typing import Any, NamedTuple, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

from ottsliced._internal import validation
from ottsliced.initializers.sliced_initializer import SlicedInitializer
from ottsliced.problems import batching, sharding
from ottsliced.problems.batch import ProblemBatch
from ottsliced.solvers.batch import check_batch
from ottsliced.solvers.iterations import marginal_errors, sinkhorn_sweeps

__all__ = ["AmortizedInfo", "amortized_solve", "amortized_solve_batch"]


class AmortizedInfo(NamedTuple):
  """What :func:`amortized_solve` did, per pair (``[B]`` for batches).

  Attributes:
    fell_back: the prediction was non-finite and zeros were used instead.
    predicted_error: L1 marginal error (rows + columns) after the
      c-transforms and ``refine_iterations``, before any fallback solve.
    fallback_solved: Sinkhorn was run to ``fallback_threshold`` because
      ``predicted_error`` exceeded it.
  """

  fell_back: jax.Array
  predicted_error: jax.Array
  fallback_solved: jax.Array


def _c_transforms(
  prob: linear_problem.LinearProblem,
  f: jax.Array,
  g: Optional[jax.Array],
  refine_iterations: int,
  two_sided: bool,
  threshold: float,
  fallback_threshold: Optional[jax.Array] = None,
  fallback_max_iterations: int = 10_000,
) -> Tuple[sinkhorn.SinkhornOutput, jax.Array, jax.Array]:
  """From a predicted ``f`` (finite) to ``(SinkhornOutput, predicted_error, fallback_solved)``."""
  geom, a, b = prob.geom, prob.a, prob.b
  f = jnp.where(a > 0, f, -jnp.inf)
  if g is None:
    g = geom.update_potential(f, jnp.zeros_like(b), jnp.log(b), axis=0)  # columns exact
  if two_sided:
    f = geom.update_potential(jnp.zeros_like(a), g, jnp.log(a), axis=1)  # rows exact
  if refine_iterations > 0:
    f, g = sinkhorn_sweeps(geom, a, b, f, g, refine_iterations)
  row_err, col_err = marginal_errors(geom, f, g, a, b)
  err = predicted = row_err + col_err
  solved = jnp.zeros((), bool)
  if fallback_threshold is not None:
    # Out-of-distribution pair: pay Sinkhorn iterations, never accuracy.
    solved = ~(predicted <= fallback_threshold)  # NaN error -> solve
    # Half the threshold: OTT measures columns only, and in its own float
    # rounding; the margin keeps the returned rows + columns error below it.
    fallback = sinkhorn.Sinkhorn(
      threshold=0.5 * fallback_threshold, inner_iterations=1, max_iterations=fallback_max_iterations, implicit_diff=None
    )

    def run(fg):
      o = fallback(prob, init=(jnp.where(a > 0, fg[0], -jnp.inf), jnp.where(b > 0, fg[1], -jnp.inf)))
      return o.f, o.g

    f, g = jax.lax.cond(solved, run, lambda fg: fg, (f, g))
    row_err, col_err = marginal_errors(geom, f, g, a, b)
    err = row_err + col_err
  out = sinkhorn.SinkhornOutput(
    (f, g),
    errors=err[None],
    threshold=jnp.asarray(threshold, dtype=err.dtype),
    converged=err < threshold,
    inner_iterations=1,
  )
  return out.set_cost(prob, lse_mode=True, use_danskin=True).set(ot_prob=prob), predicted, solved


def _predict_and_solve(prob, initializer, px, py, threshold, refine_iterations, two_sided, fallback, fallback_iters):
  f, g, fell_back = initializer.predict_from_projections(px, py, prob.a, prob.b, prob.geom.epsilon, prob.geom.x)
  out, predicted, solved = _c_transforms(prob, f, g, refine_iterations, two_sided, threshold, fallback, fallback_iters)
  return out, AmortizedInfo(fell_back, predicted, solved)


_STATIC = ("refine_iterations", "two_sided", "fallback_max_iterations")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _amortized_solve(
  prob, initializer, threshold, fallback_threshold, refine_iterations, two_sided, fallback_max_iterations
):
  x, y = prob.geom.x, prob.geom.y
  initializer._check_problem(x, y, prob.geom.epsilon)  # noqa: SLF001  (shapes; values checked outside jit)
  px, py = initializer.projections(x, y)  # bound supports are not sorted again
  return _predict_and_solve(
    prob, initializer, px, py, threshold, refine_iterations, two_sided, fallback_threshold, fallback_max_iterations
  )


def _check_problem(prob: Any, initializer: Any) -> None:
  if not isinstance(prob, linear_problem.LinearProblem):
    raise ValueError(f"`prob` must be an OTT LinearProblem, got {type(prob).__name__}.")
  if not isinstance(initializer, SlicedInitializer):
    raise ValueError(f"`initializer` must be a SlicedInitializer, got {type(initializer).__name__}.")
  geom = prob.geom
  x, y = getattr(geom, "x", None), getattr(geom, "y", None)
  if x is None or y is None:
    raise ValueError(f"`prob` needs a PointCloud geometry, got {type(geom).__name__}.")
  xs = validation.check_points("x", x)
  ys = validation.check_points("y", y)
  validation.check_weights("a", prob.a, xs[:1])
  validation.check_weights("b", prob.b, ys[:1])
  initializer._check_problem(x, y, geom.epsilon)  # noqa: SLF001


def amortized_solve(
  prob: linear_problem.LinearProblem,
  initializer: SlicedInitializer,
  *,
  refine_iterations: int = 0,
  two_sided: bool = True,
  threshold: float = 1e-2,
  fallback_threshold: Optional[float] = None,
  fallback_max_iterations: int = 10_000,
  return_info: bool = False,
) -> Union[sinkhorn.SinkhornOutput, Tuple[sinkhorn.SinkhornOutput, AmortizedInfo]]:
  r"""Solve ``prob`` from the model's prediction, without or with a few iterations.

  Steps: :math:`\hat f` from the model; :math:`g=\mathcal T_b\hat f` (column
  marginals exact); if ``two_sided``, :math:`f=\mathcal T_a g` (row marginals
  exact, one full Sinkhorn iteration); then ``refine_iterations`` Sinkhorn
  iterations.

  Args:
    prob: a balanced OTT problem on a ``PointCloud`` with explicit epsilon.
    initializer: a fitted :class:`SlicedInitializer`.
    refine_iterations: a fixed number of extra Sinkhorn iterations (static),
      run by :func:`sinkhorn_sweeps` without convergence checks: every pair
      and every call costs the same (predictable throughput).
    two_sided: apply the second c-transform.
    threshold: sets ``converged`` (error below it); never stops anything.
    fallback_threshold: if given, a pair whose L1 marginal error after the
      above exceeds it (an out-of-distribution pair) is solved by Sinkhorn
      from the prediction (to half this threshold, so that the returned
      error is below it): it costs time, not accuracy.
    fallback_max_iterations: iteration cap of that Sinkhorn (static).
    return_info: also return an :class:`AmortizedInfo`.

  Returns:
    A ``SinkhornOutput``; ``errors[0]`` is the L1 marginal error (rows +
    columns) of the returned potentials, ``matrix``, ``reg_ot_cost`` and
    ``apply`` work as for Sinkhorn's own output. With ``return_info``,
    ``(output, info)``.
  """
  _check_problem(prob, initializer)
  _check_solve_args(refine_iterations, fallback_threshold, fallback_max_iterations)
  out, info = _amortized_solve(
    prob,
    initializer,
    threshold,
    fallback_threshold,
    int(refine_iterations),
    bool(two_sided),
    int(fallback_max_iterations),
  )
  return (out, info) if return_info else out


def _check_solve_args(refine_iterations: int, fallback_threshold: Optional[float], fallback_iters: int) -> None:
  if int(refine_iterations) < 0:
    raise ValueError(f"`refine_iterations` must be >= 0, got {refine_iterations}.")
  if fallback_threshold is not None and not (np.isfinite(fallback_threshold) and fallback_threshold > 0):
    raise ValueError(f"`fallback_threshold` must be a positive float or None, got {fallback_threshold}.")
  if int(fallback_iters) < 1:
    raise ValueError(f"`fallback_max_iterations` must be >= 1, got {fallback_iters}.")


@functools.partial(jax.jit, static_argnames=(*_STATIC, "strategy", "chunk_size"))
def _amortized_solve_batch(
  batch,
  initializer,
  threshold,
  fallback_threshold,
  refine_iterations,
  two_sided,
  fallback_max_iterations,
  strategy,
  chunk_size,
):
  # Shared supports: looked up (bound) or sorted once for the batch; per-pair ones in the pair's own step,
  # where a bound bank of supports is looked up without sorting.
  shared = None
  if batch.shared_x and batch.shared_y:
    shared = initializer.projections(batch.x, batch.y)
  elif batch.shared_x or batch.shared_y:
    shared = (
      initializer.side_projections("x", batch.x) if batch.shared_x else None,
      initializer.side_projections("y", batch.y) if batch.shared_y else None,
    )

  def one(x, y, a, b):
    px = shared[0] if batch.shared_x else initializer.side_projections("x", x)
    py = shared[1] if batch.shared_y else initializer.side_projections("y", y)
    prob = linear_problem.LinearProblem(batch.geometry(x, y), a, b)
    return _predict_and_solve(
      prob,
      initializer,
      px,
      py,
      threshold,
      refine_iterations,
      two_sided,
      fallback_threshold,
      fallback_max_iterations,
    )

  ax, ay = batch.point_axes
  args = (batch.x, batch.y, batch.a, batch.b)
  return batching.over_pairs(one, args, (ax, ay, 0, 0), strategy=strategy, chunk_size=chunk_size)


def amortized_solve_batch(
  batch: ProblemBatch,
  initializer: SlicedInitializer,
  *,
  refine_iterations: int = 0,
  two_sided: bool = True,
  threshold: float = 1e-2,
  fallback_threshold: Optional[float] = None,
  fallback_max_iterations: int = 10_000,
  return_info: bool = False,
  mesh: Optional[jax.sharding.Mesh] = None,
  strategy: batching.Strategy = "auto",
  chunk_size: Optional[int] = None,
) -> Union[sinkhorn.SinkhornOutput, Tuple[sinkhorn.SinkhornOutput, AmortizedInfo]]:
  """:func:`amortized_solve` on every pair of ``batch`` (jit-compiled; ``strategy`` as in :func:`solve_batch`).

  A support shared by all pairs is projected and sorted once for the batch,
  and not at all when the model is bound to it (:meth:`SlicedInitializer.bind`).
  Returns a batched ``SinkhornOutput`` (and, with ``return_info``, an
  :class:`AmortizedInfo` of ``[B]`` arrays: ``info.fell_back.sum()`` is the
  number of pairs whose prediction fell back to zeros).

  The pairs are split over ``mesh`` (:func:`ottsliced.problems.sharding.pair_mesh`);
  ``None``: over all devices when there are several, else (or when called
  inside your own ``jax.jit``) the plain single-device path. The results do
  not depend on it, up to float rounding (see ``docs/scaling.md``).
  """
  if not isinstance(initializer, SlicedInitializer):
    raise ValueError(f"`initializer` must be a SlicedInitializer, got {type(initializer).__name__}.")
  check_batch(batch, initializer)
  _check_solve_args(refine_iterations, fallback_threshold, fallback_max_iterations)
  strategy = batching.resolve_strategy(strategy)
  if strategy == "compact":
    raise ValueError("strategy='compact' applies to solve_batch; amortized_solve_batch takes 'map' or 'vmap'.")
  mesh, num = sharding.default_mesh(mesh, batch), None
  if mesh is not None:
    batch, num = sharding.shard_batch(batch, mesh)
    initializer, threshold, fallback_threshold = sharding.replicate((initializer, threshold, fallback_threshold), mesh)
    strategy, chunk_size = "vmap", None
  out, info = _amortized_solve_batch(
    batch,
    initializer,
    threshold,
    fallback_threshold,
    int(refine_iterations),
    bool(two_sided),
    int(fallback_max_iterations),
    strategy,
    chunk_size,
  )
  if num is not None:
    out, info = sharding.trim_pairs((out, info), num)
  return (out, info) if return_info else out
