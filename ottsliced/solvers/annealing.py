r"""Epsilon scaling from the problem's own cost scale: the large-scale structure at large epsilon, cheaply.

From a cold start, Sinkhorn at a small :math:`\varepsilon` spends most of its
sweeps moving mass over long distances, about :math:`\sqrt\varepsilon` per
sweep. At a larger regularisation the same structure appears in a few sweeps;
decreasing :math:`\varepsilon` geometrically, one sweep per value, carries it
down to the target (Kosowsky and Yuille; Schmitzer; GeomLoss's
:math:`\varepsilon`-scaling). The start is read from the problem, not tuned per
task: :math:`\varepsilon_0=\max(\varepsilon,\ s\,\bar c)` with
:math:`\bar c=a^\top C b` the mean cost of the independent coupling and ``s =
0.1`` by default, so a problem whose target is already large (a few Sinkhorn
sweeps) is not annealed at all, and one whose target is a thousandth of the
cost scale is annealed over :math:`\log(\varepsilon_0/\varepsilon)/\log(1/\delta)`
sweeps (44 at ``decay`` :math:`\delta=0.9`).

The same schedule as OTT's :class:`~ott.geometry.epsilon_scheduler.Epsilon`
(:math:`\max(\text{init}\cdot\text{decay}^k, 1)\,\varepsilon`) with ``init``
derived from the cost; a warm start from a fitted model already holds the
potential at the target and skips it.
"""

from typing import Any, Callable, Optional, Tuple

import jax
import jax.numpy as jnp

__all__ = ["DEFAULT_ANNEALING", "anneal", "mean_cost", "schedule"]

DEFAULT_ANNEALING = (0.1, 0.9)  # (start relative to the mean cost, decay per sweep)


def mean_cost(geom: Any, a: jax.Array, b: jax.Array) -> jax.Array:
  r""":math:`a^\top C b`, the mean cost under the independent coupling (one pass; online geometries too)."""
  cb = geom.apply_cost(jnp.where(b > 0, b, 0.0), axis=1)
  cb = cb[:, 0] if cb.ndim == 2 else cb
  return jnp.sum(jnp.where(a > 0, a * cb, 0.0))


def schedule(cost_scale: jax.Array, epsilon: Any, start: float, decay: float) -> Tuple[jax.Array, jax.Array]:
  """``(epsilon_0, sweeps)``: the first value and the number of annealing sweeps before the target.

  Sweep ``k`` runs at ``max(epsilon_0 * decay**k, epsilon)``; ``sweeps`` is
  the first ``k`` at which that is the target (``0``: no annealing).
  """
  epsilon = jnp.asarray(epsilon, cost_scale.dtype)
  eps0 = jnp.maximum(epsilon, start * cost_scale)
  sweeps = jnp.ceil(jnp.log(eps0 / epsilon) / jnp.log(1.0 / decay))
  return eps0, jnp.maximum(sweeps, 0).astype(jnp.int32)


def anneal(
  rows: Callable[[jax.Array, Any], jax.Array],
  columns: Callable[[jax.Array, Any], jax.Array],
  f: jax.Array,
  g: jax.Array,
  eps0: jax.Array,
  sweeps: jax.Array,
  decay: float,
  epsilon: Any,
  progress: Optional[Callable[[jax.Array], None]] = None,
) -> Tuple[jax.Array, jax.Array]:
  r"""``sweeps`` Sinkhorn iterations :math:`f=\mathcal T_a g`, :math:`g=\mathcal T_b f` at decreasing epsilon.

  Args:
    rows: ``(g, eps) -> f``, the row update at ``eps``.
    columns: ``(f, eps) -> g``, the column update at ``eps``.
    f: ``[n]`` returned as is when ``sweeps`` is zero.
    g: ``[m]`` start.
    eps0: the first epsilon.
    sweeps: how many iterations (traced).
    decay: the factor between two iterations.
    epsilon: the target (a floor).
    progress: ``(sweeps done) -> None`` called after each sweep (static; ``None``: nothing).

  Returns:
    ``(f, g)`` after the last sweep (``g`` is its column update: columns exact at that sweep's epsilon).
  """

  def sweep(k, fg):
    eps_k = jnp.maximum(eps0 * decay ** k.astype(eps0.dtype), epsilon)
    f = rows(fg[1], eps_k)
    if progress is not None:
      progress(k + 1)
    return f, columns(f, eps_k)

  return jax.lax.fori_loop(0, sweeps, sweep, (f, g))
