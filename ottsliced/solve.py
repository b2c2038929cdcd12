"""Amortized solves: predicted potentials, c-transforms, optional refinement."""

import functools
from typing import Any, NamedTuple, Optional, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import epsilon_scheduler
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

from ottsliced import _validation, batching, compaction, sharding
from ottsliced.initializer import SlicedInitializer
from ottsliced.problems import ProblemBatch, make_geometry
from ottsliced.sliced_sinkhorn import SlicedSinkhorn

__all__ = [
  "AmortizedInfo",
  "amortized_solve",
  "amortized_solve_batch",
  "final_errors",
  "marginal_errors",
  "num_iterations",
  "sinkhorn_sweeps",
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


def final_errors(out: sinkhorn.SinkhornOutput) -> jax.Array:
  """The last recorded marginal error per pair, ``[B]`` for a batched output (``[]`` otherwise).

  OTT's ``errors`` trace holds one entry per ``inner_iterations`` block and
  ``-1`` after the stop; the error the solve ended with is its last
  non-negative entry (not its maximum, which is the first check's).
  """
  last = jnp.maximum(jnp.sum(out.errors != -1, axis=-1, keepdims=True) - 1, 0)
  return jnp.take_along_axis(out.errors, last, axis=-1)[..., 0]


def sinkhorn_sweeps(geom: Any, a: jax.Array, b: jax.Array, f: jax.Array, g: jax.Array, num_sweeps: int):
  r"""Exactly ``num_sweeps`` log-domain Sinkhorn iterations, no convergence checks.

  Each sweep is OTT's update order, :math:`g\leftarrow\mathcal T_b f` then
  :math:`f\leftarrow\mathcal T_a g` (two c-transform passes). The loop is a
  ``lax.fori_loop`` with a static trip count (lowered to a ``scan``): unlike
  OTT's ``Sinkhorn(min_iterations=K, max_iterations=K, inner_iterations=1)``
  it computes no marginal error per iteration, which is a third pass, so a
  batch costs the same on every call and ``2 K`` passes in all.

  Args:
    geom: an OTT geometry (dense or online ``PointCloud``).
    a: source weights ``[n]``.
    b: target weights ``[m]``.
    f: source potential ``[n]`` (OTT convention: ``-inf`` at zero weights).
    g: target potential ``[m]``.
    num_sweeps: number of iterations (a Python int).

  Returns:
    ``(f [n], g [m])`` after the sweeps; ``-inf`` at zero weights.
  """
  log_a, log_b = jnp.log(a), jnp.log(b)
  f = jnp.where(a > 0, f, -jnp.inf)

  def sweep(_, fg):
    f, g = fg
    g = geom.update_potential(f, g, log_b, axis=0)
    return geom.update_potential(f, g, log_a, axis=1), g

  return jax.lax.fori_loop(0, int(num_sweeps), sweep, (f, jnp.where(b > 0, g, -jnp.inf)))


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


class _Static:
  """A static jit argument compared by ``repr``: OTT's acceleration dataclasses are not hashable."""

  def __init__(self, value: Any):
    self.value = value

  def __eq__(self, other: Any) -> bool:
    return isinstance(other, _Static) and repr(self.value) == repr(other.value)

  def __hash__(self) -> int:
    return hash(repr(self.value))


@functools.partial(jax.jit, static_argnames=("solver_kwargs", "epsilon_scaling", "strategy", "chunk_size"))
def _solve_batch(
  batch: ProblemBatch,
  initializer: Any,
  threshold: Any,
  solver_kwargs: Tuple[Tuple[str, _Static], ...],
  epsilon_scaling: Optional[Tuple[float, float]],
  strategy: str,
  chunk_size: Optional[int],
):
  # `threshold` is a pytree child of OTT's Sinkhorn, so it is traced: a new value does not recompile.
  kwargs = {k: v.value for k, v in solver_kwargs}
  solver = sinkhorn.Sinkhorn(initializer=initializer, threshold=threshold, **kwargs)
  epsilon = batch.epsilon if epsilon_scaling is None else epsilon_scheduler.Epsilon(batch.epsilon, *epsilon_scaling)

  def one(x, y, a, b):
    geom = make_geometry(x, y, epsilon, batch.cost_fn, batch.online_batch_size)
    return solver(linear_problem.LinearProblem(geom, a, b))

  ax, ay = batch.point_axes
  args = (batch.x, batch.y, batch.a, batch.b)
  return batching.over_pairs(one, args, (ax, ay, 0, 0), strategy=strategy, chunk_size=chunk_size)


@functools.partial(jax.jit, static_argnames=("strategy", "chunk_size"))
def _solve_batch_sliced(batch: ProblemBatch, solver: SlicedSinkhorn, threshold: Any, strategy: str, chunk_size):
  solver = solver.replace(threshold=threshold)

  def one(x, y, a, b):
    return solver(linear_problem.LinearProblem(batch.geometry(x, y), a, b))

  ax, ay = batch.point_axes
  args = (batch.x, batch.y, batch.a, batch.b)
  return batching.over_pairs(one, args, (ax, ay, 0, 0), strategy=strategy, chunk_size=chunk_size)


def _sliced_batch(batch, solver, strategy, chunk_size, sinkhorn_kwargs) -> sinkhorn.SinkhornOutput:
  extra = set(sinkhorn_kwargs) - {"threshold", "max_iterations", "inner_iterations"}
  if extra:
    raise ValueError(f"`solver=SlicedSinkhorn(...)` takes threshold and max_iterations only, got {sorted(extra)}.")
  strategy = batching.resolve_strategy(strategy)
  if strategy == "compact":
    raise ValueError("strategy='compact' resumes OTT's Sinkhorn; with `solver=` use 'map' or 'vmap'.")
  if "max_iterations" in sinkhorn_kwargs:
    solver = solver.replace(max_iterations=int(sinkhorn_kwargs["max_iterations"]))
  threshold = jnp.asarray(sinkhorn_kwargs.get("threshold", solver.threshold), dtype=batch.a.dtype)
  return _solve_batch_sliced(batch, solver, threshold, strategy, chunk_size)


def _check_batch(batch: Any, initializer: Any) -> None:
  if not isinstance(batch, ProblemBatch):
    raise ValueError(f"`batch` must be a ProblemBatch, got {type(batch).__name__}.")
  if initializer is None:
    return
  if isinstance(initializer, SlicedInitializer):
    initializer._check_problem(batch.x, batch.y, batch.epsilon)  # noqa: SLF001


def solve_batch(
  batch: ProblemBatch,
  initializer: Any = None,
  *,
  mesh: Optional[jax.sharding.Mesh] = None,
  strategy: batching.Strategy = "auto",
  chunk_size: Optional[int] = None,
  compact_block: int = 8,
  epsilon_scaling: Optional[Tuple[float, float]] = None,
  solver: Optional[SlicedSinkhorn] = None,
  **sinkhorn_kwargs: Any,
) -> sinkhorn.SinkhornOutput:
  """OTT Sinkhorn on every pair of ``batch``, jit-compiled, each pair stopping at its own iteration count.

  Args:
    batch: the problems.
    initializer: any OTT Sinkhorn initializer (``None``: zeros). A
      :class:`SlicedInitializer` is a traced argument: a new ``alpha`` does
      not recompile; bind it to a shared support (:meth:`SlicedInitializer.bind`)
      so that the support is not sorted on every call.
    mesh: devices to split the pairs over (:func:`ottsliced.sharding.pair_mesh`).
      ``None``: all devices when there are several, else (or when called
      inside your own ``jax.jit``) the plain single-device path. The results
      do not depend on it, up to float rounding (see ``docs/scaling.md``).
    strategy: how the pairs run (:func:`ottsliced.batching.over_pairs`):
      ``"map"`` one pair (or ``chunk_size`` pairs) after another, each stopping
      at its own iteration count (the CPU default: 3-4x faster per pair there);
      ``"compact"`` all at once in blocks of ``compact_block`` iterations, the
      converged pairs taken out in between (:mod:`ottsliced.compaction`; the
      accelerator default for plain Sinkhorn: ``threshold``, ``max_iterations``
      and ``inner_iterations`` only); ``"vmap"`` all at once, until the
      slowest pair stops (the accelerator default otherwise; a split over
      devices always uses it). The potentials and iteration counts do not
      depend on it.
    chunk_size: pairs per step of ``"map"`` (default one).
    compact_block: iterations between two compactions of ``"compact"``.
    epsilon_scaling: ``(init, decay)``: OTT's epsilon scaling, iteration
      ``k`` runs at ``max(init * decay**k, 1) * epsilon``
      (:class:`ott.geometry.epsilon_scheduler.Epsilon`); ``None``: fixed epsilon.
    solver: a :class:`~ottsliced.sliced_sinkhorn.SlicedSinkhorn` to run
      instead of OTT's Sinkhorn (it carries its own initializer: leave
      ``initializer`` ``None``); takes ``threshold`` and ``max_iterations``
      (``inner_iterations`` is ignored: it reads every iteration's error at
      no cost); ``"map"`` or ``"vmap"``, one device.
    sinkhorn_kwargs: passed to :class:`ott.solvers.linear.sinkhorn.Sinkhorn`,
      e.g. ``threshold`` (traced: a new value reuses the compiled solver;
      OTT's default 1e-3), ``inner_iterations``, ``max_iterations``,
      ``anderson=AndersonAcceleration(memory=2)``, ``momentum=Momentum(value=1.5)``
      (static: a new value recompiles).

  Returns:
    A batched ``SinkhornOutput`` (leading axis ``B`` on every array). Count
    iterations per pair with :func:`num_iterations` (OTT's ``n_iters``
    property sums over the batch).
  """
  _check_batch(batch, initializer)
  if solver is not None:
    if not isinstance(solver, SlicedSinkhorn):
      raise ValueError(f"`solver` must be a SlicedSinkhorn, got {type(solver).__name__}.")
    if initializer is not None or epsilon_scaling is not None or mesh is not None:
      raise ValueError("with `solver=`, pass the initializer to the solver; epsilon_scaling and mesh do not apply.")
    return _sliced_batch(batch, solver, strategy, chunk_size, sinkhorn_kwargs)
  plain = epsilon_scaling is None and set(sinkhorn_kwargs) <= {"threshold", "max_iterations", "inner_iterations"}
  mesh = sharding.default_mesh(mesh, batch)
  # Compaction is a host loop between compiled blocks: concrete arrays (not inside a jit), one device.
  compactable = plain and mesh is None and _validation.is_concrete(batch.a, batch.b)
  strategy = batching.resolve_strategy(strategy, compactable=compactable)
  if strategy == "compact":
    if not compactable:
      raise ValueError(
        "strategy='compact' resumes plain Sinkhorn from its potentials between compiled blocks: it takes "
        "threshold, max_iterations and inner_iterations only, on one device, outside jax.jit; use 'map' or 'vmap'."
      )
    kw = {"threshold": 1e-3, "max_iterations": 2000, "inner_iterations": 10, **sinkhorn_kwargs}  # OTT's defaults
    return compaction.solve_compacted(batch, initializer, block=compact_block, **kw)
  threshold = jnp.asarray(sinkhorn_kwargs.pop("threshold", 1e-3), dtype=batch.a.dtype)
  kwargs = tuple(sorted((k, _Static(v)) for k, v in sinkhorn_kwargs.items()))
  if epsilon_scaling is not None:
    init, decay = (float(v) for v in epsilon_scaling)
    if not (init >= 1.0 and 0.0 < decay <= 1.0):
      raise ValueError(f"`epsilon_scaling` must be (init >= 1, 0 < decay <= 1), got {epsilon_scaling}.")
    epsilon_scaling = (init, decay)
  if mesh is None:
    return _solve_batch(batch, initializer, threshold, kwargs, epsilon_scaling, strategy, chunk_size)
  sharded, num = sharding.shard_batch(batch, mesh)
  initializer, threshold = sharding.replicate((initializer, threshold), mesh)
  out = _solve_batch(sharded, initializer, threshold, kwargs, epsilon_scaling, "vmap", None)
  return sharding.trim_pairs(out, num)


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

  The pairs are split over ``mesh`` (:func:`ottsliced.sharding.pair_mesh`);
  ``None``: over all devices when there are several, else (or when called
  inside your own ``jax.jit``) the plain single-device path. The results do
  not depend on it, up to float rounding (see ``docs/scaling.md``).
  """
  if not isinstance(initializer, SlicedInitializer):
    raise ValueError(f"`initializer` must be a SlicedInitializer, got {type(initializer).__name__}.")
  _check_batch(batch, initializer)
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
