r"""The SROT divergence: the debiased sliced-regularized OT cost, the analogue of the Sinkhorn divergence.

.. math::

  S^Q_\varepsilon(a, b) = \mathrm{OT}^Q_\varepsilon(a, b)
  - \tfrac12\,\mathrm{OT}^Q_\varepsilon(a, a) - \tfrac12\,\mathrm{OT}^Q_\varepsilon(b, b),

each term the ``reg_ot_cost`` of :class:`~ottsliced.solvers.srot.SROT` (cost
plus :math:`\varepsilon\,\mathrm{KL}(P\|Q)`, with each problem's own reference
plan :math:`Q`, built from the same directions). It is zero for identical
inputs (the three terms are the same problem) and differentiable in the points
and weights (Danskin, as OTT's Sinkhorn divergence). With ``smoothing = 1`` it
is the Sinkhorn divergence. Its non-negativity is not proved for ``smoothing <
1``; the tests check it on random clouds.
"""

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem

from ottsliced.solvers.srot import SROT, SROTOutput

__all__ = ["SROTDivergenceOutput", "srot_divergence"]


class SROTDivergenceOutput(NamedTuple):
  """Output of :func:`srot_divergence`.

  Attributes:
    divergence: the scalar :math:`S^Q_\\varepsilon(a, b)`.
    cross: the ``(a, b)`` solve.
    source: the ``(a, a)`` solve.
    target: the ``(b, b)`` solve.
  """

  divergence: jax.Array
  cross: SROTOutput
  source: SROTOutput
  target: SROTOutput


def srot_divergence(
  x: jax.Array,
  y: jax.Array,
  a: Optional[jax.Array] = None,
  b: Optional[jax.Array] = None,
  *,
  solver: Optional[SROT] = None,
  share_epsilon: bool = True,
  **geom_kwargs: Any,
) -> SROTDivergenceOutput:
  """The SROT divergence between ``(x, a)`` and ``(y, b)``.

  Args:
    x: source points ``[n, d]``.
    y: target points ``[m, d]``.
    a: source weights ``[n]`` (uniform when ``None``).
    b: target weights ``[m]`` (uniform when ``None``).
    solver: the :class:`~ottsliced.solvers.srot.SROT` solving the three terms (``None``: its defaults).
    share_epsilon: the self terms use the cross geometry's epsilon (OTT's default for the Sinkhorn
      divergence); otherwise each geometry sets its own (e.g. 5% of its own mean cost).
    **geom_kwargs: ``PointCloud`` keywords: ``epsilon``, ``cost_fn``, ``batch_size``, ``scale_cost``...

  Returns:
    :class:`SROTDivergenceOutput`; ``.divergence`` is differentiable in ``x``, ``y``, ``a``, ``b``.

  Raises:
    ValueError: what :class:`~ottsliced.solvers.srot.SROT` refuses (shapes, non-finite points, bad weights).
  """
  solver = SROT() if solver is None else solver
  n, m = x.shape[0], y.shape[0]
  a = jnp.full(n, 1.0 / n, jnp.result_type(x.dtype, float)) if a is None else a
  b = jnp.full(m, 1.0 / m, jnp.result_type(y.dtype, float)) if b is None else b
  geom_xy = pointcloud.PointCloud(x, y, **geom_kwargs)
  geom_xx = pointcloud.PointCloud(x, x, **geom_kwargs)
  geom_yy = pointcloud.PointCloud(y, y, **geom_kwargs)
  if share_epsilon:
    geom_xx, geom_yy = geom_xx.copy_epsilon(geom_xy), geom_yy.copy_epsilon(geom_xy)
  cross = solver(linear_problem.LinearProblem(geom_xy, a, b))
  source = solver(linear_problem.LinearProblem(geom_xx, a, a))
  target = solver(linear_problem.LinearProblem(geom_yy, b, b))
  div = cross.reg_ot_cost - 0.5 * (source.reg_ot_cost + target.reg_ot_cost)
  return SROTDivergenceOutput(div, cross, source, target)
