"""One call from a geometry to OTT's ``SinkhornOutput``: :func:`solve`.

The function form of :class:`~ottsliced.SlicedSinkhorn` for users who do not
keep a solver object: it checks the inputs on the host (shapes, finite points,
weights that are finite, non-negative and of positive mass, a positive
epsilon), builds OTT's ``LinearProblem`` and runs the jit-compiled solver. A
second call with the same shapes and options reuses the compiled program.
"""

from typing import Any, Optional

import jax
import numpy as np
from ott.geometry import geometry
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn, sinkhorn_lr

from ottsliced._internal import validation
from ottsliced.solvers.sliced_sinkhorn import SlicedSinkhorn, has_points, stores_cost

__all__ = ["solve"]


@jax.jit
def _run(solver: SlicedSinkhorn, prob: linear_problem.LinearProblem) -> sinkhorn.SinkhornOutput:
  return solver(prob)


def solve(
  geom: geometry.Geometry,
  a: Optional[jax.Array] = None,
  b: Optional[jax.Array] = None,
  tau_a: float = 1.0,
  tau_b: float = 1.0,
  rank: int = -1,
  **kwargs: Any,
) -> sinkhorn.SinkhornOutput:
  """Solve the entropic OT problem of ``geom`` between ``a`` and ``b`` with :class:`~ottsliced.SlicedSinkhorn`.

  Args:
    geom: an OTT geometry with its ``epsilon``: a ``PointCloud`` (dense or
      online, any cost function; the sliced machinery needs its points), or a
      ``Geometry`` from a cost or kernel matrix, a low-rank geometry or a
      ``Grid`` (epsilon scaling and Newton or Sinkhorn steps, no sliced part).
    a: source weights ``[n]``, uniform when ``None``.
    b: target weights ``[m]``, uniform when ``None``.
    tau_a: below 1, the source marginal is relaxed (unbalanced; as OTT's ``linear.solve``).
    tau_b: below 1, the target marginal is relaxed. An unbalanced problem is
      solved by OTT's own iterations (:meth:`SlicedSinkhorn.ott_reasons`).
    rank: above 0, OTT's low-rank ``LRSinkhorn(rank=rank, **kwargs)`` solves
      the problem, as in OTT's ``linear.solve`` (no sliced part).
    **kwargs: :class:`~ottsliced.SlicedSinkhorn`'s arguments, e.g.
      ``threshold=1e-3`` (the default), ``max_iterations``, ``initializer``.

  Returns:
    OTT's ``SinkhornOutput`` (``LRSinkhornOutput`` with ``rank``): potentials ``f [n]``, ``g [m]``, ``errors``
    (the column L1 error per iteration; rows when Newton steps run on ``f``, ``n < m``), ``converged``,
    ``reg_ot_cost``;
    ``out.matrix`` is the plan.

  Raises:
    ValueError: not an OTT geometry, weights of the wrong shape, negative,
      non-finite or of zero mass, non-finite points or cost entries, a
      non-positive epsilon.
  """
  if not isinstance(geom, geometry.Geometry):
    raise ValueError(f"`geom` must be an OTT geometry (PointCloud, Geometry, Grid, ...), got {type(geom).__name__}.")
  if has_points(geom):
    xs = validation.check_points("x", geom.x)
    ys = validation.check_points("y", geom.y)
    if xs[-1] != ys[-1]:
      raise ValueError(f"`x` and `y` must have the same dimension, got {xs[-1]} and {ys[-1]}.")
  elif stores_cost(geom) and validation.is_concrete(geom.cost_matrix):
    cost = np.asarray(geom.cost_matrix)
    if not np.all(np.isfinite(cost)):
      bad = int(cost.size - np.isfinite(cost).sum())
      raise ValueError(f"`geom`'s cost matrix has {bad} non-finite entries (NaN or inf).")
  n, m = geom.shape
  for name, w, shape in (("a", a, (n,)), ("b", b, (m,))):
    if w is not None:
      validation.check_weights(name, w, shape)
  eps = geom.epsilon
  if validation.is_concrete(eps) and not (np.isfinite(float(eps)) and float(eps) > 0):
    raise ValueError(f"`geom.epsilon` must be a positive finite float, got {float(eps)}.")
  prob = linear_problem.LinearProblem(geom, a=a, b=b, tau_a=tau_a, tau_b=tau_b)
  if rank > 0:
    return sinkhorn_lr.LRSinkhorn(rank=rank, **kwargs)(prob)
  solver = SlicedSinkhorn(**kwargs)
  # The solver's own path compiles itself (once per shapes and options); OTT's Sinkhorn, where it runs, is compiled
  # here, as OTT's loop would be compiled again at every call.
  return _run(solver, prob) if solver.ott_reasons(prob) else solver(prob)
