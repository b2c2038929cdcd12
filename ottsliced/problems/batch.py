"""A batch of entropic OT problems stored as padded arrays."""

from typing import Any, Optional, Sequence, Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import costs, pointcloud
from ott.problems.linear import linear_problem

from ottsliced._internal import validation

__all__ = ["ProblemBatch", "as_problem_batch", "make_geometry"]


def _canonical_cost(cost_fn: Optional[costs.CostFn]) -> Optional[costs.CostFn]:
  # A parameter-free SqEuclidean is the default: store None so that two batches
  # built with different SqEuclidean() instances share one compiled function.
  if cost_fn is None or type(cost_fn) is costs.SqEuclidean:
    return None
  return cost_fn


def make_geometry(
  x: jax.Array,
  y: jax.Array,
  epsilon: Any,
  cost_fn: Optional[costs.CostFn] = None,
  online_batch_size: Optional[int] = None,
) -> pointcloud.PointCloud:
  """``PointCloud(x, y)`` with an explicit epsilon and our default cost.

  ``online_batch_size`` is OTT's ``PointCloud(batch_size=...)``: costs are
  recomputed in blocks of that many rows/columns and the ``[n, m]`` matrix
  is never stored (memory ``O(batch_size * max(n, m))`` instead of ``O(n m)``).
  """
  return pointcloud.PointCloud(x, y, cost_fn=cost_fn, epsilon=epsilon, batch_size=online_batch_size)


@jax.tree_util.register_pytree_node_class
class ProblemBatch:
  """``B`` entropic OT problems between point clouds, as padded arrays.

  Pairs of different sizes are padded with zero weights (see
  :meth:`from_problems`). A support shared by all pairs (an image grid, fixed
  locations) is given once, as a 2-D array, and is sorted once per direction.

  Args:
    x: source points, ``[B, n, d]``, or ``[n, d]`` when shared by all pairs.
    y: target points, ``[B, m, d]``, or ``[m, d]`` when shared by all pairs.
    a: source weights ``[B, n]`` (>= 0, positive total per pair).
    b: target weights ``[B, m]`` (>= 0, positive total per pair).
    epsilon: entropic regularisation (a positive float, explicit).
    cost_fn: ground cost; ``None`` is squared Euclidean.
    online_batch_size: if set, every geometry built for these pairs is an
      online ``PointCloud`` that evaluates costs in blocks of this many
      rows/columns and never stores the ``[n, m]`` cost matrix (large ``n``;
      see :func:`make_geometry`). ``None``: the dense default.
  """

  def __init__(
    self,
    x: jax.Array,
    y: jax.Array,
    a: jax.Array,
    b: jax.Array,
    epsilon: float,
    cost_fn: Optional[costs.CostFn] = None,
    online_batch_size: Optional[int] = None,
  ):
    xs = validation.check_points("x", x, ranks=(2, 3))
    ys = validation.check_points("y", y, ranks=(2, 3))
    if xs[-1] != ys[-1]:
      raise ValueError(f"dimension mismatch: x has d={xs[-1]} but y has d={ys[-1]}.")
    if np.ndim(a) != 2 or np.ndim(b) != 2:
      raise ValueError(f"`a` and `b` must be [B, n] and [B, m] arrays, got shapes {np.shape(a)} and {np.shape(b)}.")
    num = np.shape(a)[0]
    validation.check_weights("a", a, (num, xs[-2]))
    validation.check_weights("b", b, (num, ys[-2]))
    for name, shape in (("x", xs), ("y", ys)):
      if len(shape) == 3 and shape[0] != num:
        raise ValueError(f"`{name}` holds {shape[0]} point clouds but the weights hold {num} pairs.")
    validation.check_epsilon(epsilon)
    self.x, self.y = jnp.asarray(x), jnp.asarray(y)
    self.a, self.b = jnp.asarray(a), jnp.asarray(b)
    self.epsilon = float(epsilon)
    self.cost_fn = _canonical_cost(cost_fn)
    integral = isinstance(online_batch_size, (int, np.integer)) and not isinstance(online_batch_size, bool)
    if online_batch_size is not None and not (integral and online_batch_size >= 1):
      raise ValueError(f"`online_batch_size` must be a positive int or None, got {online_batch_size!r}.")
    self.online_batch_size = None if online_batch_size is None else int(online_batch_size)

  def geometry(self, x: jax.Array, y: jax.Array) -> pointcloud.PointCloud:
    """The OTT geometry of one pair with points ``x [n, d]``, ``y [m, d]`` (this batch's epsilon and cost)."""
    return make_geometry(x, y, self.epsilon, self.cost_fn, self.online_batch_size)

  @property
  def num_pairs(self) -> int:
    """Number of pairs ``B``."""
    return self.a.shape[0]

  @property
  def shape(self) -> Tuple[int, int]:
    """``(n, m)``, padded sizes."""
    return self.a.shape[1], self.b.shape[1]

  @property
  def dim(self) -> int:
    """Ambient dimension ``d``."""
    return self.x.shape[-1]

  @property
  def shared_x(self) -> bool:
    """Whether all pairs share one source support."""
    return self.x.ndim == 2

  @property
  def shared_y(self) -> bool:
    """Whether all pairs share one target support."""
    return self.y.ndim == 2

  @property
  def point_axes(self) -> Tuple[Optional[int], Optional[int]]:
    """``jax.vmap`` axes of ``(x, y)`` over the pairs: ``None`` for a shared support, else 0."""
    return (None if self.shared_x else 0), (None if self.shared_y else 0)

  def points(self, i: int) -> Tuple[jax.Array, jax.Array]:
    """``(x_i [n, d], y_i [m, d])`` of pair ``i``."""
    return (self.x if self.shared_x else self.x[i]), (self.y if self.shared_y else self.y[i])

  def supports(self) -> Tuple[np.ndarray, np.ndarray]:
    """The distinct supports ``(x, y)``, for :meth:`ottsliced.SlicedInitializer.bind`.

    A shared support is returned as is (``[n, d]``); per-pair supports as the
    ``[K, n, d]`` bank of their distinct values (e.g. the three padded grids
    of multi-resolution pairs). When both sides hold the same supports, the
    same array is returned twice, so binding sorts them once. Needs concrete
    arrays (call it outside ``jax.jit``).
    """

    def distinct(z):
      if z.ndim == 2:
        return z
      flat = np.asarray(z).reshape(z.shape[0], -1)
      return np.unique(flat, axis=0).reshape((-1, *z.shape[1:]))  # sorted: equal sets give equal banks

    x = distinct(self.x)
    if self.y is self.x:
      return x, x
    y = distinct(self.y)
    same = x.shape == y.shape and np.array_equal(np.asarray(x), np.asarray(y))
    return x, (x if same else y)

  def problem(self, i: int) -> linear_problem.LinearProblem:
    """Pair ``i`` as an OTT :class:`LinearProblem` (padding kept, zero weight)."""
    geom = self.geometry(*self.points(i))
    return linear_problem.LinearProblem(geom, self.a[i], self.b[i])

  def take(self, idx: Union[slice, np.ndarray, Sequence[int]]) -> "ProblemBatch":
    """The sub-batch of pairs ``idx``."""
    idx = np.arange(self.num_pairs)[idx]
    return ProblemBatch(
      self.x if self.shared_x else self.x[idx],
      self.y if self.shared_y else self.y[idx],
      self.a[idx],
      self.b[idx],
      self.epsilon,
      self.cost_fn,
      self.online_batch_size,
    )

  @classmethod
  def from_problems(cls, problems: Sequence[linear_problem.LinearProblem]) -> "ProblemBatch":
    """Stack OTT problems on point clouds, padding with zero weights.

    All problems must share epsilon (given explicitly) and the cost function.
    Padded atoms repeat the cloud's first point and get weight 0.
    """
    problems = list(problems)
    if not problems:
      raise ValueError("`problems` is empty: give at least one problem.")
    xs, ys, as_, bs, epss, costs_, blocks = [], [], [], [], [], [], []
    for k, prob in enumerate(problems):
      if not isinstance(prob, linear_problem.LinearProblem):
        raise ValueError(f"problems[{k}] is a {type(prob).__name__}, expected an OTT LinearProblem.")
      geom = prob.geom
      if not isinstance(geom, pointcloud.PointCloud):
        raise ValueError(
          f"problems[{k}] has a {type(geom).__name__} geometry; sliced features need point "
          "coordinates, so use a PointCloud."
        )
      if not prob.is_balanced:
        raise ValueError(f"problems[{k}] is unbalanced (tau_a/tau_b < 1); only balanced OT is supported.")
      if geom._epsilon_init is None:  # noqa: SLF001
        raise ValueError(
          f"problems[{k}] has no explicit epsilon; build its PointCloud with epsilon=... "
          "(OTT's default depends on the cost statistics, padding included)."
        )
      xs.append(np.asarray(geom.x))
      ys.append(np.asarray(geom.y))
      as_.append(np.asarray(prob.a))
      bs.append(np.asarray(prob.b))
      epss.append(float(geom.epsilon))
      costs_.append(_canonical_cost(geom.cost_fn))
      # The requested block size: OTT's `batch_size` property clips it to min(n, m), which
      # differs between pairs of different sizes built with the same request.
      blocks.append(geom._batch_size)  # noqa: SLF001
    if not np.allclose(epss, epss[0], rtol=1e-6, atol=0):
      raise ValueError(f"problems have different epsilons ({min(epss):g} .. {max(epss):g}); batch equal ones.")
    if any(type(c) is not type(costs_[0]) for c in costs_):
      raise ValueError("problems have different cost functions; batch problems with one cost.")
    if len(set(blocks)) != 1:
      raise ValueError(f"problems have different online batch sizes {sorted(set(blocks), key=str)}; use one.")
    dims = {x.shape[-1] for x in xs} | {y.shape[-1] for y in ys}
    if len(dims) != 1:
      raise ValueError(f"problems have points of different dimensions {sorted(dims)}.")
    n, m = max(x.shape[0] for x in xs), max(y.shape[0] for y in ys)

    def pad(z, size):
      return np.concatenate([z, np.repeat(z[:1], size - z.shape[0], axis=0)], axis=0)

    def padw(w, size):
      return np.concatenate([w, np.zeros(size - w.shape[0], w.dtype)])

    return cls(
      np.stack([pad(x, n) for x in xs]),
      np.stack([pad(y, m) for y in ys]),
      np.stack([padw(a, n) for a in as_]),
      np.stack([padw(b, m) for b in bs]),
      epss[0],
      costs_[0],
      blocks[0],
    )

  def tree_flatten(self):  # noqa: D102
    return (self.x, self.y, self.a, self.b), (self.epsilon, self.cost_fn, self.online_batch_size)

  @classmethod
  def tree_unflatten(cls, aux, children):  # noqa: D102
    obj = object.__new__(cls)
    obj.x, obj.y, obj.a, obj.b = children
    obj.epsilon, obj.cost_fn, obj.online_batch_size = aux
    return obj

  def __repr__(self) -> str:
    n, m = self.shape
    return (
      f"ProblemBatch(num_pairs={self.num_pairs}, n={n}, m={m}, d={self.dim}, epsilon={self.epsilon:g}, "
      f"shared_x={self.shared_x}, shared_y={self.shared_y}"
      + ("" if self.online_batch_size is None else f", online_batch_size={self.online_batch_size}")
      + ")"
    )


def as_problem_batch(problems: Any) -> ProblemBatch:
  """Accept a :class:`ProblemBatch`, one ``LinearProblem`` or a list of them."""
  if isinstance(problems, ProblemBatch):
    return problems
  if isinstance(problems, linear_problem.LinearProblem):
    return ProblemBatch.from_problems([problems])
  if isinstance(problems, (list, tuple)):
    return ProblemBatch.from_problems(problems)
  raise ValueError(f"`problems` must be a ProblemBatch or a list of OTT LinearProblems, got {type(problems).__name__}.")
