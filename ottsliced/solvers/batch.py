"""Batches of problems solved by OTT's Sinkhorn or :class:`SlicedSinkhorn`, each pair at its own iteration count."""

import functools
from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp
from ott.geometry import epsilon_scheduler
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

from ottsliced._internal import validation
from ottsliced.initializers.sliced_initializer import SlicedInitializer
from ottsliced.problems import batching, compaction, sharding
from ottsliced.problems.batch import ProblemBatch, make_geometry
from ottsliced.solvers.sliced_sinkhorn import SlicedSinkhorn

__all__ = ["solve_batch"]


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


def check_batch(batch: Any, initializer: Any) -> None:
  """Raise ``ValueError`` unless ``batch`` is a :class:`ProblemBatch` that ``initializer`` (if sliced) can serve."""
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
    mesh: devices to split the pairs over (:func:`ottsliced.problems.sharding.pair_mesh`).
      ``None``: all devices when there are several, else (or when called
      inside your own ``jax.jit``) the plain single-device path. The results
      do not depend on it, up to float rounding (see ``docs/scaling.md``).
    strategy: how the pairs run (:func:`ottsliced.problems.batching.over_pairs`):
      ``"map"`` one pair (or ``chunk_size`` pairs) after another, each stopping
      at its own iteration count (the CPU default: 3-4x faster per pair there);
      ``"compact"`` all at once in blocks of ``compact_block`` iterations, the
      converged pairs taken out in between (:mod:`ottsliced.problems.compaction`; the
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
    solver: a :class:`~ottsliced.solvers.sliced_sinkhorn.SlicedSinkhorn` to run
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
  check_batch(batch, initializer)
  if solver is not None:
    if not isinstance(solver, SlicedSinkhorn):
      raise ValueError(f"`solver` must be a SlicedSinkhorn, got {type(solver).__name__}.")
    if initializer is not None or epsilon_scaling is not None or mesh is not None:
      raise ValueError("with `solver=`, pass the initializer to the solver; epsilon_scaling and mesh do not apply.")
    return _sliced_batch(batch, solver, strategy, chunk_size, sinkhorn_kwargs)
  plain = epsilon_scaling is None and set(sinkhorn_kwargs) <= {"threshold", "max_iterations", "inner_iterations"}
  mesh = sharding.default_mesh(mesh, batch)
  # Compaction is a host loop between compiled blocks: concrete arrays (not inside a jit), one device.
  compactable = plain and mesh is None and validation.is_concrete(batch.a, batch.b)
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
