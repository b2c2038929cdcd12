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

Before Newton steps (:func:`paced_schedule`) the annealing only has to bring
the potential into Newton's region of fast convergence, which narrows as
:math:`\varepsilon` shrinks: a sweep moves mass by about
:math:`\sqrt\varepsilon`, so the large-scale structure at the target needs
about :math:`\sqrt{\bar c/\varepsilon}` sweeps, whatever the start. The paced
schedule runs ``ceil(pace * sqrt(mean cost / eps))`` sweeps from
:math:`0.3\,\bar c`, the decay set to end at the target: 10 sweeps (decay 0.71)
at a hundredth of the mean cost, 32 (decay 0.84) at a thousandth, where the
fixed decay 0.9 runs 22 and 44. Where the target is within ``cold_ratio = 30``
of the mean cost (OTT's default :math:`\varepsilon` is a twentieth of it)
Newton steps from a cold start take no more steps than the annealing would
take sweeps, and it is skipped.

At small :math:`\varepsilon` the sweeps leave the potential outside the
region where Newton converges fast: CG with a diagonal preconditioner gets
slow as the plan sharpens, and the steps converge linearly. Below a fiftieth
of the mean cost (:data:`NEWTON_STAGE`) the sweeps stop at
:math:`4\varepsilon`, Newton steps solve that problem to a column error of
0.01 (well conditioned: few steps), and the steps at the target start from its
potential. On Gaussian-mixture clouds at a thousandth of the mean cost that
cuts the Newton iterations by a third (n = 1,000, d = 3: 44 -> 31 to 1e-2);
above a thirtieth of the mean cost it costs more than it saves (the jump from
:math:`4\varepsilon` undoes the cheap first steps), hence the threshold.
"""

from typing import Any, Callable, Optional, Tuple

import jax
import jax.numpy as jnp

__all__ = ["DEFAULT_ANNEALING", "NEWTON_ANNEALING", "NEWTON_STAGE", "anneal", "mean_cost", "paced_schedule", "schedule"]

DEFAULT_ANNEALING = (0.1, 0.9)  # (start relative to the mean cost, decay per sweep): before Sinkhorn iterations
# Before Newton: (start relative to the mean cost, sweeps per sqrt(mean cost / eps), no sweep below this cost ratio).
NEWTON_ANNEALING = (0.3, 1.0, 30.0)
# Before Newton at small epsilon: (stage epsilon / target, stage above this mean cost / epsilon, stage tolerance floor).
NEWTON_STAGE = (4.0, 50.0, 1e-2)


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


def paced_schedule(
  cost_scale: jax.Array, epsilon: Any, start: float, pace: float, cold_ratio: float = 0.0
) -> Tuple[jax.Array, jax.Array, jax.Array]:
  r"""``(epsilon_0, sweeps, decay)``: ``ceil(pace * sqrt(cost_scale / epsilon))`` sweeps down to the target.

  ``epsilon_0 = max(epsilon, start * cost_scale)``; no sweep when that is the
  target or when ``cost_scale / epsilon <= cold_ratio``. ``decay = (epsilon /
  epsilon_0) ** (1 / sweeps)``, so that, as in :func:`schedule`, sweep
  ``sweeps`` would be the first at the target.
  """
  epsilon = jnp.asarray(epsilon, cost_scale.dtype)
  eps0 = jnp.maximum(epsilon, start * cost_scale)
  ratio = cost_scale / epsilon
  sweeps = jnp.where((eps0 > epsilon) & (ratio > cold_ratio), jnp.ceil(pace * jnp.sqrt(ratio)), 0).astype(jnp.int32)
  decay = (epsilon / eps0) ** (1.0 / jnp.maximum(sweeps, 1).astype(eps0.dtype))
  return eps0, sweeps, decay


def anneal(
  rows: Callable[[jax.Array, Any], jax.Array],
  columns: Callable[[jax.Array, Any], jax.Array],
  f: jax.Array,
  g: jax.Array,
  eps0: jax.Array,
  sweeps: jax.Array,
  decay: Any,
  epsilon: Any,
  progress: Optional[Callable[[jax.Array], None]] = None,
) -> Tuple[jax.Array, jax.Array]:
  r"""``sweeps`` Sinkhorn iterations :math:`f=\mathcal T_a g`, :math:`g=\mathcal T_b f` at decreasing epsilon.

  Args:
    rows: ``(g, eps, f) -> f'``, the row update at ``eps`` (``f``: the last one, which it may take as a
      shift: :func:`shifted_update`).
    columns: ``(f, eps, g) -> g'``, the column update at ``eps`` (``g``: the last one).
    f: ``[n]`` returned as is when ``sweeps`` is zero.
    g: ``[m]`` start.
    eps0: the first epsilon.
    sweeps: how many iterations (traced).
    decay: the factor between two iterations (a float or a traced scalar).
    epsilon: the target (a floor).
    progress: ``(sweeps done) -> None`` called after each sweep (static; ``None``: nothing).

  Returns:
    ``(f, g)`` after the last sweep (``g`` is its column update: columns exact at that sweep's epsilon).
  """

  def sweep(k, fg):
    eps_k = jnp.maximum(eps0 * decay ** k.astype(eps0.dtype), epsilon)
    f = rows(fg[1], eps_k, fg[0])
    if progress is not None:
      progress(k + 1)
    return f, columns(f, eps_k, fg[1])

  return jax.lax.fori_loop(0, sweeps, sweep, (f, g))


def shifted_update(
  cost: jax.Array, w: jax.Array, f: jax.Array, g: jax.Array, epsilon: Any, axis: int, exact: Callable[[], jax.Array]
) -> jax.Array:
  r"""The log-domain update of the side ``axis`` reduces over, in one pass over ``cost [n, m]``: ``[n]`` or ``[m]``.

  ``axis=1``: :math:`f'=\mathcal T_a g` with ``w = a`` and the last ``f`` as
  the shift of the log-sum-exp; ``axis=0``: :math:`g'=\mathcal T_b f`, ``w =
  b``, shifted by the last ``g``. A Sinkhorn sweep updates one side after an
  exact update of the other, so the shifted exponents
  :math:`(f_i+g_j-C_{ij})/\varepsilon` are entries of a plan whose rows (or
  columns) sum to weights at most one: never above zero, and at a smaller
  ``epsilon`` (annealing) only smaller. The usual log-sum-exp takes the
  maximum first (a second pass, and the exponents stored in between); this
  one reads the cost once. Where a sum is not finite or so small that its
  largest term may have lost digits (a first sweep from an arbitrary start,
  a row with no mass), ``exact()`` (the usual update) is taken instead.
  """
  shift = f if axis == 1 else g
  finite = jnp.isfinite(shift)
  shift = jnp.where(finite, shift, 0.0)
  inv = 1.0 / epsilon  # the vectors scaled, the cost multiplied: no division per entry, no broadcast epsilon stored
  u, v = (shift * inv, g * inv) if axis == 1 else (f * inv, shift * inv)
  s = jnp.sum(jnp.exp(u[:, None] + v[None, :] - cost * inv), axis=axis)
  pos = w > 0
  new = jnp.where(pos, epsilon * jnp.log(jnp.where(pos, w, 1.0)) + shift - epsilon * jnp.log(s), -jnp.inf)
  floor = jnp.finfo(s.dtype).tiny / jnp.finfo(s.dtype).eps  # above it the largest term is a normal float, exact
  ok = jnp.all(jnp.where(pos, (s > floor) & jnp.isfinite(s) & finite, True))
  return jax.lax.cond(ok, lambda: new, exact)
