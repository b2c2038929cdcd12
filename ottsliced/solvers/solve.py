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
from ott.solvers.linear import sinkhorn

from ottsliced._internal import validation
from ottsliced.solvers.sliced_sinkhorn import SlicedSinkhorn

__all__ = ["solve"]


@jax.jit
def _run(solver: SlicedSinkhorn, prob: linear_problem.LinearProblem) -> sinkhorn.SinkhornOutput:
  return solver(prob)


def solve(
  geom: geometry.Geometry, a: Optional[jax.Array] = None, b: Optional[jax.Array] = None, **kwargs: Any
) -> sinkhorn.SinkhornOutput:
  """Solve the entropic OT problem of ``geom`` between ``a`` and ``b`` with :class:`~ottsliced.SlicedSinkhorn`.

  Args:
    geom: an OTT ``PointCloud`` (dense or online, any cost function) with its
      ``epsilon``; the solver needs point coordinates.
    a: source weights ``[n]``, uniform when ``None``.
    b: target weights ``[m]``, uniform when ``None``.
    **kwargs: :class:`~ottsliced.SlicedSinkhorn`'s arguments, e.g.
      ``threshold=1e-3`` (the default), ``max_iterations``, ``initializer``.

  Returns:
    OTT's ``SinkhornOutput``: potentials ``f [n]``, ``g [m]``, ``errors``
    (the column L1 error per iteration), ``converged``, ``reg_ot_cost``;
    ``out.matrix`` is the plan.

  Raises:
    ValueError: a geometry without points, weights of the wrong shape,
      negative, non-finite or of zero mass, non-finite points, a non-positive
      epsilon.
  """
  x, y = getattr(geom, "x", None), getattr(geom, "y", None)
  if x is None or y is None:
    raise ValueError(f"`geom` must be an OTT PointCloud (the solver needs points), got {type(geom).__name__}.")
  xs = validation.check_points("x", x)
  ys = validation.check_points("y", y)
  if xs[-1] != ys[-1]:
    raise ValueError(f"`x` and `y` must have the same dimension, got {xs[-1]} and {ys[-1]}.")
  for name, w, shape in (("a", a, xs[:1]), ("b", b, ys[:1])):
    if w is not None:
      validation.check_weights(name, w, shape)
  eps = geom.epsilon
  if validation.is_concrete(eps) and not (np.isfinite(float(eps)) and float(eps) > 0):
    raise ValueError(f"`geom.epsilon` must be a positive finite float, got {float(eps)}.")
  prob = linear_problem.LinearProblem(geom, a=a, b=b)
  return _run(SlicedSinkhorn(**kwargs), prob)
