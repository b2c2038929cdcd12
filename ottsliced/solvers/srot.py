r"""Sliced-regularized optimal transport (SROT): entropic OT regularised toward a sliced plan instead of ``a ⊗ b``.

SROT (arXiv 2604.23944) solves

.. math::

  \min_{P \in \Pi(a, b)} \langle C, P\rangle + \varepsilon\,\mathrm{KL}(P \,\|\, Q),

with :math:`Q` a smoothed sliced OT plan. Its solution has Sinkhorn's form
:math:`P = \mathrm{diag}(e^{f/\varepsilon})\,(Q\odot e^{-C/\varepsilon})\,
\mathrm{diag}(e^{g/\varepsilon})`, so it is solved by Sinkhorn's alternating
updates with the kernel :math:`Q \odot e^{-C/\varepsilon}` (log domain: cost
:math:`C - \varepsilon\log Q`). With :math:`\sum Q = \sum a = \sum b = 1` its
value at the optimum is the dual :math:`\langle f, a\rangle + \langle g, b\rangle`.

**The reference plan** (the smoothing documented here):

.. math::

  Q = (1 - s)\,Q_\theta + s\,a \otimes b, \qquad
  Q_\theta = \frac1L\sum_{l=1}^L \pi_{\theta_l},

where :math:`\pi_{\theta_l}` is the monotone 1-D plan of the measures projected
on direction :math:`\theta_l`, lifted to the atoms
(:func:`ottsliced.sliced.sliced_plan`, at most :math:`L(n+m)` cells), and
``s = smoothing`` in ``[0, 1]``. ``s = 1`` is entropic OT exactly; ``s = 0``
restricts the plan to the union of the ``L`` sliced supports (every update is
then :math:`O(L(n+m))`, no ``[n, m]`` work at all). In between, mass off the
sliced supports pays :math:`-\varepsilon\log s` more than under entropic OT, and
a cell of the sliced plans is favoured by
:math:`\varepsilon\log(1 + (1-s)Q_{\theta,ij}/(s\,a_ib_j))`. Mixing with
:math:`a\otimes b` keeps :math:`Q \odot K` applicable without forming it: the
dense part is OTT's own kernel application (dense or online ``PointCloud``,
any ``CostFn``), the sparse part a segment log-sum-exp over the sliced cells.

**Cost per update**: one OTT kernel application (``n m`` cost entries, online
or not) plus ``L (n + m)`` cells; the directions' sorts are done once.
"""

from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem

from ottsliced import sliced
from ottsliced._internal import validation

__all__ = ["SROT", "SROTOutput", "cell_costs", "srot_plan_reference"]


class SROTOutput(NamedTuple):
  """Output of :class:`SROT`, with OTT ``SinkhornOutput``'s names.

  Attributes:
    f: source potential ``[n]`` (0 on zero-weight atoms).
    g: target potential ``[m]``.
    errors: ``[max_iterations // inner_iterations]`` L1 error of the source
      marginal at each check, ``-1`` after the last (OTT's convention).
    converged: whether the error fell below ``threshold``.
    n_iters: number of iterations (one source and one target update each).
    reg_ot_cost: :math:`\\langle C, P\\rangle + \\varepsilon\\,\\mathrm{KL}(P\\|Q)`
      at the solution (the dual value), differentiable in the points and
      weights by Danskin's theorem.
    geom: the problem's ``PointCloud``.
    a: source weights ``[n]``.
    b: target weights ``[m]``.
    reference: the sliced part :math:`Q_\\theta` of the reference plan (sparse).
    smoothing: ``s``, the weight of ``a ⊗ b`` in the reference plan.
  """

  f: jax.Array
  g: jax.Array
  errors: jax.Array
  converged: jax.Array
  n_iters: jax.Array
  reg_ot_cost: jax.Array
  geom: pointcloud.PointCloud
  a: jax.Array
  b: jax.Array
  reference: sliced.SlicedPlan
  smoothing: float

  @property
  def reference_matrix(self) -> jax.Array:
    """The reference plan :math:`Q` as a dense ``[n, m]`` matrix (forms it)."""
    n, m = self.geom.shape
    return _dense_reference(self.reference, self.a, self.b, self.smoothing, n, m)

  @property
  def matrix(self) -> jax.Array:
    """The plan :math:`P` as a dense ``[n, m]`` matrix (forms it)."""
    logits = (self.f[:, None] + self.g[None, :] - self.geom.cost_matrix) / self.geom.epsilon
    return jnp.exp(logits) * self.reference_matrix

  @property
  def transport_cost(self) -> jax.Array:
    r""":math:`\langle C, P\rangle`, the plan's cost without the regulariser.

    Never forms ``[n, m]`` on an online geometry: the ``a ⊗ b`` part of the
    plan is summed over blocks of ``batch_size`` rows, the sliced part over its
    cells.
    """
    geom, eps, s = self.geom, self.geom.epsilon, self.smoothing
    total = jnp.zeros((), self.f.dtype)
    if s > 0.0:
      n, d = geom.x.shape
      block = geom.batch_size if geom.is_online else n
      pad = (-n) % block
      xs = jnp.concatenate([geom.x, jnp.zeros((pad, d), geom.x.dtype)]).reshape(-1, block, d)
      fs = jnp.concatenate([self.f, jnp.zeros((pad,), self.f.dtype)]).reshape(-1, block)
      as_ = jnp.concatenate([self.a, jnp.zeros((pad,), self.a.dtype)]).reshape(-1, block)

      def rows(args):
        xb, fb, ab = args
        cost = geom.cost_fn.all_pairs(xb, geom.y) * geom.inv_scale_cost
        plan = ab[:, None] * self.b[None, :] * jnp.exp((fb[:, None] + self.g[None, :] - cost) / eps)
        return jnp.sum(jnp.where(plan > 0, plan * cost, 0.0))

      total += s * jnp.sum(jax.lax.map(rows, (xs, fs, as_)))
    if s < 1.0:
      ref = self.reference
      cost = cell_costs(geom, ref)
      plan = ref.mass * jnp.exp((self.f[ref.rows] + self.g[ref.cols] - cost) / eps)
      total += (1.0 - s) * jnp.sum(jnp.where(plan > 0, plan * cost, 0.0))
    return total

  @property
  def kl(self) -> jax.Array:
    r""":math:`\mathrm{KL}(P\|Q)` (generalised, with :math:`-\sum P + \sum Q`), from the two costs."""
    return (self.reg_ot_cost - self.transport_cost) / self.geom.epsilon


def _dense_reference(plan: sliced.SlicedPlan, a, b, smoothing: float, n: int, m: int) -> jax.Array:
  return smoothing * a[:, None] * b[None, :] + (1.0 - smoothing) * plan.todense(n, m)


def cell_costs(geom: pointcloud.PointCloud, plan: sliced.SlicedPlan) -> jax.Array:
  """The ground cost ``[L * (n + m)]`` on the cells of a sliced plan (the geometry's cost function and scaling)."""
  return jax.vmap(geom.cost_fn)(geom.x[plan.rows], geom.y[plan.cols]) * geom.inv_scale_cost


def srot_plan_reference(
  geom: pointcloud.PointCloud, a: jax.Array, b: jax.Array, theta: jax.Array
) -> Tuple[sliced.SlicedPlan, jax.Array]:
  """The sliced plan of a problem and the ground cost on its cells, ``(plan, cost [L * (n + m)])``."""
  plan = sliced.sliced_plan(geom.x, geom.y, a, b, theta)
  return plan, cell_costs(geom, plan)


def _safe_log(w: jax.Array) -> jax.Array:
  return jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), -jnp.inf)


def _segment_logsumexp(values: jax.Array, segments: jax.Array, num: int) -> jax.Array:
  """``log sum exp`` of ``values`` per segment ``[num]`` (``-inf`` where a segment is empty or all ``-inf``)."""
  top = jax.ops.segment_max(values, segments, num_segments=num)
  top = jnp.where(jnp.isfinite(top), top, 0.0)
  total = jax.ops.segment_sum(jnp.exp(values - top[segments]), segments, num_segments=num)
  return _safe_log(total) + top


class _Kernel(NamedTuple):
  """What the updates need: the geometry, log-weights, the sliced cells and their costs."""

  geom: pointcloud.PointCloud
  log_a: jax.Array
  log_b: jax.Array
  rows: jax.Array
  cols: jax.Array
  log_mass: jax.Array
  cell_cost: jax.Array
  smoothing: float

  def log_apply(self, pot: jax.Array, other: jax.Array, eps: jax.Array, axis: int) -> jax.Array:
    r"""For ``axis=1``: :math:`\log\sum_j Q_{ij}\,e^{(g_j - C_{ij})/\varepsilon}` per row ``[n]`` (``pot = g``,
    ``other = f`` the row potential, used only to stabilise OTT's kernel); ``axis=0``: per column ``[m]``."""
    s = self.smoothing
    out_idx, in_idx = (self.rows, self.cols) if axis == 1 else (self.cols, self.rows)
    log_out, log_in = (self.log_a, self.log_b) if axis == 1 else (self.log_b, self.log_a)
    num = log_out.shape[0]
    terms = []
    if s > 0.0:
      shifted = pot + eps * log_in
      f, g = (other, shifted) if axis == 1 else (shifted, other)
      lse = self.geom.apply_lse_kernel(f, g, eps, axis=axis)[0] / eps
      terms.append(np.log(s) + log_out + lse)
    if s < 1.0:
      vals = self.log_mass + (pot[in_idx] - self.cell_cost) / eps
      terms.append(np.log1p(-s) + _segment_logsumexp(vals, out_idx, num))
    return terms[0] if len(terms) == 1 else jnp.logaddexp(terms[0], terms[1])

  def update(self, pot: jax.Array, other: jax.Array, eps: jax.Array, axis: int) -> jax.Array:
    """The new row (``axis=1``) or column (``axis=0``) potential; 0 on zero-weight atoms."""
    log_w = self.log_a if axis == 1 else self.log_b
    new = eps * (log_w - self.log_apply(pot, other, eps, axis))
    return jnp.where(jnp.isfinite(log_w), new, 0.0)


class _State(NamedTuple):
  f: jax.Array
  g: jax.Array
  f_next: jax.Array  # the source update from g: gives the error of (f, g) and starts the next block
  errors: jax.Array
  it: jax.Array
  err: jax.Array


@jax.tree_util.register_pytree_node_class
class SROT:
  r"""Sliced-regularized OT solver, called on an OTT ``LinearProblem`` over a ``PointCloud``.

  Sinkhorn's alternating log-domain updates with the kernel
  :math:`Q\odot e^{-C/\varepsilon}` (see the module doc for :math:`Q`), the
  stopping rule and defaults of OTT's ``Sinkhorn``: every ``inner_iterations``
  iterations the L1 error of the source marginal is checked against
  ``threshold``. The geometry's epsilon scheduler is honoured (OTT's
  ``Epsilon(target, init, decay)``: epsilon scaling). Jit-compiled under the
  caller's ``jit``, ``vmap``-able over problems, differentiable through
  ``reg_ot_cost`` (Danskin: the loop is not differentiated).

  Args:
    num_directions: ``L``, directions of the sliced plan (drawn from ``rng``).
    smoothing: ``s`` in ``[0, 1]``, the weight of ``a ⊗ b`` in :math:`Q`
      (1: entropic OT; 0: only the sliced supports).
    directions: explicit directions ``[L, d]`` instead of ``num_directions``.
    rng: PRNG key of the directions (``None``: ``jax.random.key(0)``).
    threshold: L1 marginal error to stop at (OTT's default ``1e-3``).
    max_iterations: most iterations (OTT's default 2000).
    inner_iterations: iterations between error checks (OTT's default 10).
  """

  def __init__(
    self,
    num_directions: int = 16,
    smoothing: float = 0.5,
    directions: Optional[jax.Array] = None,
    rng: Optional[jax.Array] = None,
    threshold: float = 1e-3,
    max_iterations: int = 2000,
    inner_iterations: int = 10,
  ):
    if not 0.0 <= float(smoothing) <= 1.0:
      raise ValueError(f"`smoothing` must be in [0, 1] (1: entropic OT), got {smoothing}.")
    if directions is not None:
      shape = tuple(np.shape(directions))
      if len(shape) != 2 or shape[0] < 1:
        raise ValueError(f"`directions` must be an [L, d] array with L >= 1, got shape {shape}.")
    elif int(num_directions) < 1:
      raise ValueError(f"`num_directions` must be >= 1, got {num_directions}.")
    if int(inner_iterations) < 1 or int(max_iterations) < int(inner_iterations):
      raise ValueError(f"need 1 <= inner_iterations <= max_iterations, got {inner_iterations} and {max_iterations}.")
    if not float(threshold) > 0:
      raise ValueError(f"`threshold` must be > 0, got {threshold}.")
    self.num_directions = int(num_directions) if directions is None else int(np.shape(directions)[0])
    self.smoothing = float(smoothing)
    self.directions = directions
    self.rng = rng
    self.threshold = float(threshold)
    self.max_iterations = int(max_iterations)
    self.inner_iterations = int(inner_iterations)

  def tree_flatten(self):  # noqa: D102
    aux = (
      ("num_directions", self.num_directions),
      ("smoothing", self.smoothing),
      ("threshold", self.threshold),
      ("max_iterations", self.max_iterations),
      ("inner_iterations", self.inner_iterations),
    )  # hashable: the static part of a jit's key
    return (self.directions, self.rng), aux

  @classmethod
  def tree_unflatten(cls, aux, children):  # noqa: D102
    obj = object.__new__(cls)
    obj.directions, obj.rng = children
    for k, v in aux:
      setattr(obj, k, v)
    return obj

  def theta(self, dim: int, dtype: Any) -> jax.Array:
    """The unit directions ``[L, dim]`` the reference plan is built from."""
    if self.directions is not None:
      theta = jnp.asarray(self.directions, dtype)
      if theta.shape[1] != dim:
        raise ValueError(f"the problem's points have dimension {dim} but `directions` are [L, {theta.shape[1]}].")
      return theta / jnp.linalg.norm(theta, axis=-1, keepdims=True)
    rng = jax.random.key(0) if self.rng is None else self.rng
    return sliced.directions(rng, dim, self.num_directions, dtype)

  def __call__(
    self, prob: linear_problem.LinearProblem, init: Optional[Tuple[Optional[jax.Array], Optional[jax.Array]]] = None
  ) -> SROTOutput:
    """Solve ``prob``; compiled once per shapes and options (a direct call does not compile its loop again).

    Args:
      prob: OTT ``LinearProblem`` over a ``PointCloud`` (dense or online, any
        cost function), balanced (``tau_a = tau_b = 1``).
      init: optional ``(f, g)`` warm start; only ``g [m]`` is used (the first
        update computes ``f`` from it).

    Returns:
      :class:`SROTOutput`.

    Raises:
      ValueError: not a ``PointCloud`` problem (no points to slice), an
        unbalanced problem, points or weights of wrong shape or non-finite,
        negative weights, zero total mass.
    """
    geom = prob.geom
    if not isinstance(geom, pointcloud.PointCloud):
      raise ValueError(
        f"SROT needs a PointCloud problem (its reference plan slices the points), got {type(geom).__name__}."
      )
    if not (prob.is_balanced):
      raise ValueError("SROT solves balanced problems (tau_a = tau_b = 1).")
    xs, ys = validation.check_points("x", geom.x), validation.check_points("y", geom.y)
    if xs[-1] != ys[-1]:
      raise ValueError(f"`x` and `y` must have the same dimension, got {xs[-1]} and {ys[-1]}.")
    validation.check_weights("a", prob.a, xs[:1])
    validation.check_weights("b", prob.b, ys[:1])
    theta = self.theta(xs[-1], jnp.result_type(geom.x.dtype, float))
    g0 = None if init is None else init[1]
    if g0 is not None and tuple(np.shape(g0)) != ys[:1]:
      raise ValueError(f"`init` g must have shape {ys[:1]}, got {tuple(np.shape(g0))}.")
    # Compiled once per shapes and options (called directly, the loop is not compiled again at every call).
    return _solve_compiled(self, geom, prob.a, prob.b, theta, g0)._replace(smoothing=self.smoothing)

  def _loop(self, kernel: _Kernel, geom: pointcloud.PointCloud, g0: jax.Array) -> _State:
    """Blocks of ``inner_iterations`` sweeps (target update, then source update) until the error is small."""
    a = jnp.exp(kernel.log_a)
    num_checks = self.max_iterations // self.inner_iterations

    def sweep(_, carry):
      _, f_next, g, it = carry
      eps = geom.epsilon_scheduler(it)
      f = f_next
      g = kernel.update(f, g, eps, axis=0)
      return f, kernel.update(g, f, eps, axis=1), g, it + 1

    def cond(state: _State):
      return jnp.logical_and(state.it < num_checks * self.inner_iterations, state.err >= self.threshold)

    def body(state: _State):
      carry = (state.f, state.f_next, state.g, state.it)
      f, f_next, g, it = jax.lax.fori_loop(0, self.inner_iterations, sweep, carry)
      # (f, g) has the exact target marginal; its source marginal is a * exp((f - f_next) / eps).
      eps = geom.epsilon_scheduler(it - 1)
      err = jnp.sum(jnp.abs(a * jnp.expm1((f - f_next) / eps)))
      errors = state.errors.at[it // self.inner_iterations - 1].set(err)
      return _State(f, g, f_next, errors, it, err)

    f_next0 = kernel.update(g0, jnp.zeros_like(kernel.log_a), geom.epsilon_scheduler(0), axis=1)
    errors = -jnp.ones((num_checks,), g0.dtype)
    init = _State(f_next0, g0, f_next0, errors, jnp.asarray(0), jnp.asarray(jnp.inf, g0.dtype))
    return jax.lax.while_loop(cond, body, init)


def _solve(
  solver: SROT, geom: pointcloud.PointCloud, a: jax.Array, b: jax.Array, theta: jax.Array, g0: Optional[jax.Array]
) -> SROTOutput:
  """The solve: the loop on stopped gradients, then the differentiable dual value at its potentials."""
  a = jnp.asarray(a, jnp.result_type(geom.x.dtype, float))
  b = jnp.asarray(b, a.dtype)

  def kernel_of(geom, a, b):
    plan, cell_cost = srot_plan_reference(geom, a, b, theta)
    log_mass = _safe_log(plan.mass)
    return plan, _Kernel(geom, _safe_log(a), _safe_log(b), plan.rows, plan.cols, log_mass, cell_cost, solver.smoothing)

  stopped = jax.lax.stop_gradient((geom, a, b))
  _, kernel = kernel_of(*stopped)
  g0 = jnp.zeros_like(b) if g0 is None else jnp.asarray(g0, b.dtype)
  state = solver._loop(kernel, stopped[0], jax.lax.stop_gradient(g0))
  f, g = jax.lax.stop_gradient((state.f, state.g))

  # Dual value <f, a> + <g, b> - eps (sum P - sum Q): equal to <C, P> + eps KL(P || Q) at the optimum; its
  # gradient in the points and weights at fixed optimal potentials is the solution's (Danskin).
  plan, kernel = kernel_of(geom, a, b)
  eps = jax.lax.stop_gradient(geom.epsilon)
  log_rows = kernel.log_apply(g, f, eps, axis=1)
  mass_p = jnp.sum(jnp.where(a > 0, jnp.exp(f / eps + log_rows), 0.0))
  s = solver.smoothing
  mass_q = s * jnp.sum(a) * jnp.sum(b) + (1.0 - s) * jnp.sum(plan.mass)
  cost = jnp.sum(jnp.where(a > 0, f * a, 0.0)) + jnp.sum(jnp.where(b > 0, g * b, 0.0)) - eps * (mass_p - mass_q)
  converged = state.err < solver.threshold
  return SROTOutput(f, g, state.errors, converged, state.it, cost, geom, a, b, jax.lax.stop_gradient(plan), s)


_solve_compiled = jax.jit(_solve)
