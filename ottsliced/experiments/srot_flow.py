r"""Gradient flows of particles under the SROT and Sinkhorn divergences (issue 33's example).

A cloud of ``n`` particles :math:`x \in \mathbb R^{n\times d}` (uniform weights)
is moved toward a fixed target cloud :math:`y` by explicit Euler steps on a
divergence :math:`\mathcal L(x, y)`,

.. math::

  x_{k+1} = x_k - \tau\, n\, \nabla_x \mathcal L(x_k, y),

the factor ``n`` being the usual Lagrangian scaling (each particle carries mass
``1 / n``, so ``n \nabla_{x_i}`` is the gradient of the first variation at
:math:`x_i`). The whole flow is one ``jax.jit``-compiled ``jax.lax.scan``.

Losses: :func:`srot_loss` (the debiased SROT divergence,
:func:`ottsliced.srot_divergence`) and :func:`sinkhorn_loss` (OTT's own
:func:`ott.tools.sinkhorn_divergence.sinkhorn_divergence`, the baseline). Both
are differentiated by Danskin's theorem (the solver loops are not unrolled).
The metric is the exact OT cost :math:`W_2^2` of the flowed cloud to the
target (:func:`exact_ot_cost`).
"""

import time
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
from ott.tools import sinkhorn_divergence as ott_divergence

from ottsliced.solvers.srot import SROT
from ottsliced.solvers.srot_divergence import srot_divergence

__all__ = [
  "FlowRun",
  "LossFn",
  "exact_ot_cost",
  "flow_figure",
  "gradient_flow",
  "ot_cost_curve",
  "run_flow",
  "sinkhorn_loss",
  "srot_loss",
]

LossFn = Callable[[jax.Array, jax.Array], jax.Array]
"""``loss(x [n, d], y [m, d]) -> scalar``, differentiable in ``x``."""


def srot_loss(epsilon: float, solver: Optional[SROT] = None) -> LossFn:
  """The SROT divergence as a flow loss.

  Args:
    epsilon: the entropic regularisation of the three terms (squared Euclidean cost, not rescaled).
    solver: the :class:`~ottsliced.SROT` solving them (``None``: its defaults, ``smoothing=0.5``, ``L=16``).
      Its directions are fixed (its ``rng``), so every step uses the same ``L`` directions.

  Returns:
    ``loss(x [n, d], y [m, d]) -> scalar``, uniform weights.
  """
  solver = SROT() if solver is None else solver

  def loss(x: jax.Array, y: jax.Array) -> jax.Array:
    return srot_divergence(x, y, solver=solver, epsilon=epsilon).divergence

  return loss


def sinkhorn_loss(epsilon: float, threshold: float = 1e-3, **solve_kwargs: Any) -> LossFn:
  """OTT's Sinkhorn divergence as a flow loss (the baseline).

  Args:
    epsilon: the entropic regularisation (squared Euclidean cost, not rescaled).
    threshold: OTT ``Sinkhorn``'s marginal-error threshold (its default, also :class:`~ottsliced.SROT`'s).
    **solve_kwargs: further keywords of OTT's ``Sinkhorn`` (``max_iterations``, ``inner_iterations``...).

  Returns:
    ``loss(x [n, d], y [m, d]) -> scalar``, uniform weights.
  """
  kwargs = {"threshold": threshold, **solve_kwargs}

  def loss(x: jax.Array, y: jax.Array) -> jax.Array:
    value, _ = ott_divergence.sinkhorn_divergence(pointcloud.PointCloud, x, y, epsilon=epsilon, solve_kwargs=kwargs)
    return value

  return loss


def _flow(x0: jax.Array, y: jax.Array, step: jax.Array, loss_fn: LossFn, num_steps: int):
  """The scan: trajectory ``[num_steps + 1, n, d]`` and the loss at each of its points ``[num_steps + 1]``."""
  scale = step * x0.shape[0]
  value_and_grad = jax.value_and_grad(loss_fn)

  def body(x, _):
    value, grad = value_and_grad(x, y)
    x_next = x - scale * grad
    return x_next, (x_next, value)

  last, (xs, values) = jax.lax.scan(body, x0, None, length=num_steps)
  trajectory = jnp.concatenate([x0[None], xs], axis=0)
  losses = jnp.append(values, loss_fn(last, y))
  return trajectory, losses


_flow_jit = jax.jit(_flow, static_argnames=("loss_fn", "num_steps"))


def gradient_flow(x0: jax.Array, y: jax.Array, loss_fn: LossFn, step: float, num_steps: int) -> jax.Array:
  """Explicit Euler on the particles, ``x <- x - step * n * grad_x loss_fn(x, y)``, one jitted ``lax.scan``.

  The compiled flow is cached per ``(loss_fn, num_steps)`` and shapes: reuse the same ``loss_fn`` object to
  avoid recompiling (the factories return a new one per call).

  Args:
    x0: initial particles ``[n, d]`` (uniform weights ``1 / n``).
    y: target points ``[m, d]``.
    loss_fn: ``loss(x [n, d], y [m, d]) -> scalar``, e.g. :func:`srot_loss` or :func:`sinkhorn_loss`.
    step: the step size ``tau`` (traced: a new value does not recompile).
    num_steps: number of Euler steps (static).

  Returns:
    The trajectory ``[num_steps + 1, n, d]``, ``x0`` first.
  """
  x0, y = jnp.asarray(x0), jnp.asarray(y)
  return _flow_jit(x0, y, jnp.asarray(step, x0.dtype), loss_fn=loss_fn, num_steps=int(num_steps))[0]


class FlowRun(NamedTuple):
  """Output of :func:`run_flow`.

  Attributes:
    trajectory: ``[num_steps + 1, n, d]`` particles, ``x0`` first.
    losses: ``[num_steps + 1]`` the loss at each point of the trajectory.
    compile_seconds: ahead-of-time compilation of the whole flow.
    seconds_per_step: run time of the compiled flow (``num_steps`` values and gradients, one last loss value)
      divided by ``num_steps``.
  """

  trajectory: np.ndarray
  losses: np.ndarray
  compile_seconds: float
  seconds_per_step: float


def run_flow(x0: jax.Array, y: jax.Array, loss_fn: LossFn, step: float, num_steps: int) -> FlowRun:
  """:func:`gradient_flow`, compiled ahead of time, with the loss curve and the timings.

  Args:
    x0: initial particles ``[n, d]``.
    y: target points ``[m, d]``.
    loss_fn: ``loss(x [n, d], y [m, d]) -> scalar``.
    step: the step size ``tau``.
    num_steps: number of Euler steps.

  Returns:
    :class:`FlowRun` (NumPy arrays).
  """
  x0, y = jnp.asarray(x0), jnp.asarray(y)
  step = jnp.asarray(step, x0.dtype)
  t0 = time.perf_counter()
  compiled = _flow_jit.lower(x0, y, step, loss_fn=loss_fn, num_steps=int(num_steps)).compile()
  t1 = time.perf_counter()
  trajectory, losses = jax.block_until_ready(compiled(x0, y, step))
  t2 = time.perf_counter()
  return FlowRun(np.asarray(trajectory), np.asarray(losses), t1 - t0, (t2 - t1) / max(int(num_steps), 1))


def exact_ot_cost(x: Any, y: Any) -> float:
  r"""The exact OT cost :math:`W_2^2` between the uniform measures on ``x [n, d]`` and ``y [m, d]``.

  Squared Euclidean cost, float64. POT's ``ot.emd2`` (the ``flow`` extra) when installed; without POT, equal
  sizes are solved exactly as an assignment problem (SciPy's ``linear_sum_assignment``: uniform measures of
  the same size have an optimal plan that is a permutation).

  Raises:
    ImportError: POT is not installed and ``n != m``.
  """
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  cost = np.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)
  try:
    import ot
  except ImportError:
    ot = None
  if ot is not None:
    a, b = np.full(len(x), 1.0 / len(x)), np.full(len(y), 1.0 / len(y))
    return float(max(ot.emd2(a, b, cost, numItermax=10_000_000), 0.0))
  if len(x) != len(y):
    raise ImportError("the exact OT cost of clouds of different sizes needs POT: pip install 'ottsliced[flow]'")
  from scipy.optimize import linear_sum_assignment

  rows, cols = linear_sum_assignment(cost)
  return float(np.mean(cost[rows, cols]))


def ot_cost_curve(trajectory: Any, y: Any) -> np.ndarray:
  """:func:`exact_ot_cost` of every point of a trajectory ``[K, n, d]`` to ``y [m, d]``, ``[K]``."""
  return np.array([exact_ot_cost(x, y) for x in np.asarray(trajectory)])


def flow_figure(
  trajectories: Dict[str, Any],
  y: Any,
  costs: Dict[str, Any],
  snapshots: Sequence[int],
  title: str = "",
):
  """Snapshots of each flow (one row per flow) over the target, and the exact OT cost to the target per step.

  Args:
    trajectories: per flow name, the trajectory ``[K + 1, n, 2]``.
    y: target points ``[m, 2]`` (grey, in every snapshot).
    costs: per flow name, :func:`ot_cost_curve` ``[K + 1]`` (log scale, right panel).
    snapshots: the steps shown, e.g. ``(0, 5, 15, K)``.
    title: figure title.

  Returns:
    A matplotlib ``Figure`` (no pyplot state; ``fig.savefig`` or display it).
  """
  try:
    from matplotlib.figure import Figure
  except ImportError as err:  # pragma: no cover - exercised without the extra
    raise ImportError("figures need matplotlib: pip install 'ottsliced[plots]'") from err
  y = np.asarray(y)
  rows, cols = len(trajectories), len(snapshots)
  fig = Figure(figsize=(2.0 * cols + 4.0, 2.1 * rows + 0.5), layout="constrained")
  grid = fig.add_gridspec(rows, cols + 1, width_ratios=[1.0] * cols + [1.9])
  pts = np.concatenate([y] + [np.asarray(t)[list(snapshots)].reshape(-1, 2) for t in trajectories.values()])
  lo, hi = pts.min(0), pts.max(0)
  centre, half = (lo + hi) / 2, 0.55 * float(np.max(hi - lo))
  for r, (name, traj) in enumerate(trajectories.items()):
    traj = np.asarray(traj)
    for c, k in enumerate(snapshots):
      ax = fig.add_subplot(grid[r, c])
      ax.scatter(y[:, 0], y[:, 1], s=4, c="0.75", linewidths=0)
      ax.scatter(traj[k, :, 0], traj[k, :, 1], s=4, c=f"C{r}", linewidths=0)
      ax.set_xlim(centre[0] - half, centre[0] + half)
      ax.set_ylim(centre[1] - half, centre[1] + half)
      ax.set_aspect("equal")
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title(f"step {k}", fontsize=9)
      if c == 0:
        ax.set_ylabel(name, fontsize=9)
  ax = fig.add_subplot(grid[:, cols])
  for r, (name, curve) in enumerate(costs.items()):
    ax.semilogy(np.asarray(curve), c=f"C{r}", label=name)
  ax.set_xlabel("step")
  ax.set_ylabel(r"exact OT cost $W_2^2$ to the target")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=8)
  if title:
    fig.suptitle(title, fontsize=10)
  return fig
