"""Amortized solves: predicted potentials, c-transforms, optional refinement."""

import functools
from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

from ottsliced import _validation, sliced
from ottsliced.initializer import SlicedInitializer
from ottsliced.problems import ProblemBatch, make_geometry

__all__ = [
  "amortized_solve",
  "amortized_solve_batch",
  "marginal_errors",
  "num_iterations",
  "solve_batch",
]


def marginal_errors(geom: Any, f: jax.Array, g: jax.Array, a: jax.Array, b: jax.Array) -> Tuple[jax.Array, jax.Array]:
  r"""L1 marginal errors ``(||P 1 - a||_1, ||P^T 1 - b||_1)`` of :math:`P=e^{(f\oplus g-C)/\varepsilon}`."""
  rows = geom.marginal_from_potentials(f, g, axis=1)
  cols = geom.marginal_from_potentials(f, g, axis=0)
  return jnp.sum(jnp.abs(rows - a)), jnp.sum(jnp.abs(cols - b))


def num_iterations(out: sinkhorn.SinkhornOutput) -> jax.Array:
  """Sinkhorn iterations per pair, ``[B]`` for a batched output (``[]`` otherwise).

  Use this instead of ``out.n_iters`` on the outputs of :func:`solve_batch`:
  OTT's property sums over every axis, i.e. over the whole batch.
  """
  return jnp.sum(out.errors != -1, axis=-1) * out.inner_iterations


def _c_transforms(
  prob: linear_problem.LinearProblem,
  f: jax.Array,
  g: Optional[jax.Array],
  refine_iterations: int,
  two_sided: bool,
  threshold: float,
) -> sinkhorn.SinkhornOutput:
  """From a predicted ``f`` (finite) to a ``SinkhornOutput``."""
  geom, a, b = prob.geom, prob.a, prob.b
  f = jnp.where(a > 0, f, -jnp.inf)
  if g is None:
    g = geom.update_potential(f, jnp.zeros_like(b), jnp.log(b), axis=0)  # columns exact
  if two_sided:
    f = geom.update_potential(jnp.zeros_like(a), g, jnp.log(a), axis=1)  # rows exact
  if refine_iterations > 0:
    solver = sinkhorn.Sinkhorn(
      min_iterations=refine_iterations,
      max_iterations=refine_iterations,
      inner_iterations=1,
      threshold=-1.0,
      implicit_diff=None,
    )
    out = solver(prob, init=(jnp.where(a > 0, f, -jnp.inf), jnp.where(b > 0, g, -jnp.inf)))
    f, g = out.f, out.g
  row_err, col_err = marginal_errors(geom, f, g, a, b)
  err = row_err + col_err
  out = sinkhorn.SinkhornOutput(
    (f, g),
    errors=err[None],
    threshold=jnp.asarray(threshold, dtype=err.dtype),
    converged=err < threshold,
    inner_iterations=1,
  )
  return out.set_cost(prob, lse_mode=True, use_danskin=True).set(ot_prob=prob)


@functools.partial(jax.jit, static_argnames=("refine_iterations", "two_sided"))
def _amortized_solve(prob, initializer, threshold, refine_iterations, two_sided):
  x, y = prob.geom.x, prob.geom.y
  f, g = initializer.predict(x, y, prob.a, prob.b, prob.geom.epsilon)
  return _c_transforms(prob, f, g, refine_iterations, two_sided, threshold)


def _check_problem(prob: Any, initializer: Any) -> None:
  if not isinstance(prob, linear_problem.LinearProblem):
    raise ValueError(f"`prob` must be an OTT LinearProblem, got {type(prob).__name__}.")
  if not isinstance(initializer, SlicedInitializer):
    raise ValueError(f"`initializer` must be a SlicedInitializer, got {type(initializer).__name__}.")
  geom = prob.geom
  x, y = getattr(geom, "x", None), getattr(geom, "y", None)
  if x is None or y is None:
    raise ValueError(f"`prob` needs a PointCloud geometry, got {type(geom).__name__}.")
  xs = _validation.check_points("x", x)
  ys = _validation.check_points("y", y)
  _validation.check_weights("a", prob.a, xs[:1])
  _validation.check_weights("b", prob.b, ys[:1])
  initializer._check_problem(x, y, geom.epsilon)  # noqa: SLF001


def amortized_solve(
  prob: linear_problem.LinearProblem,
  initializer: SlicedInitializer,
  *,
  refine_iterations: int = 0,
  two_sided: bool = True,
  threshold: float = 1e-2,
) -> sinkhorn.SinkhornOutput:
  r"""Solve ``prob`` from the model's prediction, without or with a few iterations.

  Steps: :math:`\hat f` from the model; :math:`g=\mathcal T_b\hat f` (column
  marginals exact); if ``two_sided``, :math:`f=\mathcal T_a g` (row marginals
  exact, one full Sinkhorn iteration); then ``refine_iterations`` Sinkhorn
  iterations.

  Args:
    prob: a balanced OTT problem on a ``PointCloud`` with explicit epsilon.
    initializer: a fitted :class:`SlicedInitializer`.
    refine_iterations: number of extra Sinkhorn iterations (static).
    two_sided: apply the second c-transform.
    threshold: sets ``converged`` (error below it); never stops anything.

  Returns:
    A ``SinkhornOutput``; ``errors[0]`` is the L1 marginal error (rows +
    columns) of the returned potentials, ``matrix``, ``reg_ot_cost`` and
    ``apply`` work as for Sinkhorn's own output.
  """
  _check_problem(prob, initializer)
  if int(refine_iterations) < 0:
    raise ValueError(f"`refine_iterations` must be >= 0, got {refine_iterations}.")
  return _amortized_solve(prob, initializer, threshold, int(refine_iterations), bool(two_sided))


def _batch_axes(batch: ProblemBatch) -> Tuple[Optional[int], Optional[int]]:
  return (None if batch.shared_x else 0), (None if batch.shared_y else 0)


@functools.partial(jax.jit, static_argnames=("solver_kwargs",))
def _solve_batch(batch: ProblemBatch, initializer: Any, solver_kwargs: Tuple[Tuple[str, Any], ...]):
  solver = sinkhorn.Sinkhorn(initializer=initializer, **dict(solver_kwargs))

  def one(x, y, a, b):
    geom = make_geometry(x, y, batch.epsilon, batch.cost_fn)
    return solver(linear_problem.LinearProblem(geom, a, b))

  ax, ay = _batch_axes(batch)
  return jax.vmap(one, in_axes=(ax, ay, 0, 0))(batch.x, batch.y, batch.a, batch.b)


def _check_batch(batch: Any, initializer: Any) -> None:
  if not isinstance(batch, ProblemBatch):
    raise ValueError(f"`batch` must be a ProblemBatch, got {type(batch).__name__}.")
  if initializer is None:
    return
  if isinstance(initializer, SlicedInitializer):
    initializer._check_problem(batch.x, batch.y, batch.epsilon)  # noqa: SLF001


def solve_batch(batch: ProblemBatch, initializer: Any = None, **sinkhorn_kwargs: Any) -> sinkhorn.SinkhornOutput:
  """OTT Sinkhorn on every pair of ``batch``, vmapped and jit-compiled.

  Args:
    batch: the problems.
    initializer: any OTT Sinkhorn initializer (``None``: zeros). A
      :class:`SlicedInitializer` is a traced argument: a new ``alpha`` does
      not recompile.
    sinkhorn_kwargs: passed to :class:`ott.solvers.linear.sinkhorn.Sinkhorn`
      (static: a new value recompiles), e.g. ``threshold``,
      ``inner_iterations``, ``max_iterations``.

  Returns:
    A batched ``SinkhornOutput`` (leading axis ``B`` on every array). Count
    iterations per pair with :func:`num_iterations` (OTT's ``n_iters``
    property sums over the batch).
  """
  _check_batch(batch, initializer)
  kwargs = tuple(sorted(sinkhorn_kwargs.items()))
  return _solve_batch(batch, initializer, kwargs)


@functools.partial(jax.jit, static_argnames=("refine_iterations", "two_sided"))
def _amortized_solve_batch(batch, initializer, threshold, refine_iterations, two_sided):
  theta = initializer.theta
  sort = lambda z: sliced.sort_projections(z, theta)  # noqa: E731
  ax, ay = _batch_axes(batch)
  # Shared supports are projected and sorted once for the whole batch.
  px = sort(batch.x) if batch.shared_x else jax.vmap(sort)(batch.x)
  py = sort(batch.y) if batch.shared_y else jax.vmap(sort)(batch.y)

  def one(x, y, px, py, a, b):
    phi, psi = sliced.sliced_potentials_sorted(px, py, a, b, initializer.centering)
    f, g = initializer.potentials_from_features(phi, psi, a, b, batch.epsilon)
    prob = linear_problem.LinearProblem(make_geometry(x, y, batch.epsilon, batch.cost_fn), a, b)
    return _c_transforms(prob, f, g, refine_iterations, two_sided, threshold)

  return jax.vmap(one, in_axes=(ax, ay, ax, ay, 0, 0))(batch.x, batch.y, px, py, batch.a, batch.b)


def amortized_solve_batch(
  batch: ProblemBatch,
  initializer: SlicedInitializer,
  *,
  refine_iterations: int = 0,
  two_sided: bool = True,
  threshold: float = 1e-2,
) -> sinkhorn.SinkhornOutput:
  """:func:`amortized_solve` on every pair of ``batch`` (vmapped, jit-compiled).

  A support shared by all pairs is projected and sorted once for the batch.
  Returns a batched ``SinkhornOutput``.
  """
  if not isinstance(initializer, SlicedInitializer):
    raise ValueError(f"`initializer` must be a SlicedInitializer, got {type(initializer).__name__}.")
  _check_batch(batch, initializer)
  if int(refine_iterations) < 0:
    raise ValueError(f"`refine_iterations` must be >= 0, got {refine_iterations}.")
  return _amortized_solve_batch(batch, initializer, threshold, int(refine_iterations), bool(two_sided))
