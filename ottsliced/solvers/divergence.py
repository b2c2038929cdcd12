r"""The Sinkhorn divergence with :class:`~ottsliced.SlicedSinkhorn`: OTT's ``sinkhorn_divergence``, our solver.

OTT's :func:`ott.tools.sinkhorn_divergence.sinkhorn_divergence` builds its own
``Sinkhorn`` through ``ott.solvers.linear.solve``, so no other solver can be
passed to it. :func:`sinkhorn_divergence` has the same signature and returns
the same ``SinkhornDivergenceOutput``; ``solve_kwargs`` go to
:class:`~ottsliced.SlicedSinkhorn` (OTT's keywords among them). The divergence

.. math::

  S_\varepsilon(a, b) = \mathrm{OT}_\varepsilon(a, b)
  - \tfrac12\,\mathrm{OT}_\varepsilon(a, a) - \tfrac12\,\mathrm{OT}_\varepsilon(b, b)

(Feydy et al., 2019) is non-negative, zero for identical measures, and
differentiable in the points: each ``reg_ot_cost`` is differentiated by
Danskin's theorem, as in OTT.
"""

from types import MappingProxyType
from typing import Any, Mapping, Optional, Tuple, Type

import jax
import jax.numpy as jnp
from ott.geometry import geometry
from ott.problems.linear import linear_problem
from ott.tools import sinkhorn_divergence as ott_divergence
from ott.tools.sinkhorn_divergence import SinkhornDivergenceOutput

from ottsliced.solvers.sliced_sinkhorn import SlicedSinkhorn

__all__ = ["sinkhorn_divergence"]


def sinkhorn_divergence(
  geom: Type[geometry.Geometry],
  *args: Any,
  a: Optional[jax.Array] = None,
  b: Optional[jax.Array] = None,
  solve_kwargs: Mapping[str, Any] = MappingProxyType({}),
  static_b: bool = False,
  offset_static_b: Optional[float] = None,
  share_epsilon: bool = True,
  symmetric_sinkhorn: bool = True,
  **kwargs: Any,
) -> Tuple[jax.Array, SinkhornDivergenceOutput]:
  """The Sinkhorn divergence between two measures, each term solved by :class:`~ottsliced.SlicedSinkhorn`.

  Args:
    geom: the geometry class, e.g. ``PointCloud``.
    *args: positional arguments of its ``prepare_divergences`` (e.g. ``x [n, d]``, ``y [m, d]``).
    a: ``[n]`` weights of the first measure (uniform when ``None``).
    b: ``[m]`` weights of the second measure (uniform when ``None``).
    solve_kwargs: :class:`~ottsliced.SlicedSinkhorn`'s keywords (OTT ``Sinkhorn``'s keywords included),
      e.g. ``{"threshold": 1e-4}``, and ``tau_a``/``tau_b`` for the unbalanced divergence (all three terms
      unbalanced, as OTT's; solved by OTT's own iterations, see :meth:`SlicedSinkhorn.ott_reasons`);
      ``rank > 0``: OTT's low-rank divergence (``LRSinkhorn``), computed by OTT.
    static_b: do not solve the second measure against itself; its term is ``offset_static_b`` (or 0).
    offset_static_b: the precomputed ``reg_ot_cost`` of ``b`` against itself, with ``static_b``.
    share_epsilon: the self terms use the epsilon of the ``(a, b)`` geometry (OTT's default).
    symmetric_sinkhorn: OTT solves the self terms with symmetric (averaged) updates; here they are solved by
      the same solver as the cross term, to the same threshold, which gives the same divergence to that
      tolerance. Accepted for compatibility.
    **kwargs: keywords of the geometry's ``prepare_divergences`` (e.g. ``epsilon``, ``cost_fn``).

  Returns:
    ``(divergence, output)``: the scalar and OTT's ``SinkhornDivergenceOutput`` (potentials, errors,
    ``converged`` and ``n_iters`` of the three terms).

  Raises:
    ValueError: what the solver refuses.
  """
  if int(solve_kwargs.get("rank", -1)) > 0:  # low rank: OTT's LRSinkhorn solves the three terms, as in OTT
    return ott_divergence.sinkhorn_divergence(
      geom,
      *args,
      a=a,
      b=b,
      solve_kwargs=solve_kwargs,
      static_b=static_b,
      offset_static_b=offset_static_b,
      share_epsilon=share_epsilon,
      symmetric_sinkhorn=symmetric_sinkhorn,
      **kwargs,
    )
  del symmetric_sinkhorn  # see Args: the self terms use the same solver
  solve_kwargs = {k: v for k, v in solve_kwargs.items() if k != "rank"}  # rank <= 0: full rank, as OTT
  taus = {k: solve_kwargs.pop(k) for k in ("tau_a", "tau_b") if k in solve_kwargs}
  solver = SlicedSinkhorn(**solve_kwargs)
  geoms = geom.prepare_divergences(*args, static_b=static_b, **kwargs)
  geom_xy, geom_x, geom_y, *_ = (*geoms, None, None, None)
  num_a, num_b = geom_xy.shape
  if share_epsilon:
    geom_x = geom_x.copy_epsilon(geom_xy)
    geom_y = geom_y.copy_epsilon(geom_xy) if geom_y is not None else None
  a = jnp.full(num_a, 1.0 / num_a) if a is None else a
  b = jnp.full(num_b, 1.0 / num_b) if b is None else b

  out_xy = solver(linear_problem.LinearProblem(geom_xy, a, b, **taus))
  out_xx = solver(linear_problem.LinearProblem(geom_x, a, a, **taus))
  if geom_y is None:
    offset = jnp.asarray(0.0 if offset_static_b is None else offset_static_b, out_xy.reg_ot_cost.dtype)
    out_yy = None
    cost_yy, yy = offset, ((None, None), None, jnp.asarray(True), jnp.asarray(0))
  else:
    out_yy = solver(linear_problem.LinearProblem(geom_y, b, b, **taus))
    cost_yy, yy = out_yy.reg_ot_cost, ((out_yy.f, out_yy.g), out_yy.errors, out_yy.converged, out_yy.n_iters)
  eps = jax.lax.stop_gradient(geom_xy.epsilon)
  div = out_xy.reg_ot_cost - 0.5 * (out_xx.reg_ot_cost + cost_yy) + 0.5 * eps * (jnp.sum(a) - jnp.sum(b)) ** 2
  out = SinkhornDivergenceOutput(
    divergence=div,
    geoms=(geom_xy, geom_x, geom_y),
    a=a,
    b=b,
    potentials=((out_xy.f, out_xy.g), (out_xx.f, out_xx.g), yy[0]),
    factors=None,
    errors=(out_xy.errors, out_xx.errors, yy[1]),
    converged=(out_xy.converged, out_xx.converged, yy[2]),
    n_iters=(out_xy.n_iters, out_xx.n_iters, yy[3]),
  )
  return div, out
