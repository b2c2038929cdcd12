r"""Newton steps on the entropic semi-dual with the plan stored: the tail of Sinkhorn in a few exp passes.

Near its solution Sinkhorn is a linear fixed-point iteration whose contraction
tends to one as :math:`\varepsilon` shrinks: mass that must travel far moves by
about :math:`\sqrt\varepsilon` per sweep, and the tail takes hundreds or
thousands of sweeps. Each sweep evaluates ``n m`` exponentials. Newton's method
on the dual (Brauer, Clason, Lorenz and Wirth, 2017) needs a handful of steps,
and each step's linear system only needs products with the plan, which cost a
multiply-add per entry instead of an exponential once the plan is stored.

With the rows exact, :math:`f=\mathcal T_a g`, the plan is
:math:`P=\mathrm{diag}(a/s)\,e^{(g-C)/\varepsilon}` (``s`` the row sums of the
exponentials) and its columns :math:`c=P^\top\mathbf 1` miss ``b``. The
semi-dual :math:`D(g)=\langle a,\mathcal T_a g\rangle+\langle b,g\rangle` is
concave with gradient :math:`b-c`; eliminating the source update from the full
Newton system leaves the Schur complement

.. math::

  \big(\mathrm{diag}(c)-P^\top\mathrm{diag}(1/a)\,P\big)\,\Delta g=\varepsilon\,(b-c),

symmetric positive semi-definite (its null space is the constant gauge), solved
by conjugate gradients preconditioned by :math:`\mathrm{diag}(c)`: the
preconditioned operator is :math:`I-M` with :math:`M` Sinkhorn's own iteration
matrix, so a few CG iterations (``sqrt`` of Sinkhorn's sweeps) do what
Sinkhorn's tail does, each with two products with the stored plan.

A step :math:`g+t\Delta g` is accepted when it raises the semi-dual (``t`` =
1, 1/2, 1/4, ...) or, where the dual's change is within its round-off (near
the solution the rise is of the order of the squared error), when it lowers
the column error; the exponentials of that test are the next plan, so an
accepted step costs one exponential pass, and a refused one too (its plan is
dropped: the loop carries the accepted point's vectors and one plan, stored
factored as :math:`\mathrm{diag}(r)\,e`, never copied). When no step is
accepted (far from the solution, or float round-off in CG), a Sinkhorn
iteration is taken instead, from the accepted point's column sums with no
exponential: the dual never decreases by more than its round-off. On
ill-conditioned systems (a plan close to a permutation, e.g. self-transport)
a few CG iterations make little progress; for small ``m`` such a step's
system is factorised instead. The column error is read from the stored
plan at no extra cost. Needs the cost matrix: ``n m`` entries for the cost and
as many for the plan (:class:`~ottsliced.SlicedSinkhorn` chooses this tail only
below its ``max_plan_entries``).
"""

from typing import Any, Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp

from ottsliced.solvers.iterations import reported_error

__all__ = [
  "FALLBACK_TOLERANCE",
  "LAST_STEP",
  "NewtonState",
  "column_update",
  "column_update_rows",
  "newton_tail",
  "row_update",
]


class NewtonState(NamedTuple):
  """The loop state of :func:`newton_tail`.

  Attributes:
    k: iterations done (annealing and earlier phases included: the trace's next index).
    g: ``[m]`` target potential (``-inf`` at zero weights).
    f: ``[n]`` source potential :math:`\\mathcal T_a g` (rows exact).
    plan: the plan of ``(f, g)``, factored: ``(e [n, m], r [n])`` with :math:`P=\\mathrm{diag}(r)\\,e` (one
      ``[n, m]`` array written per exponential pass, not two).
    dual: the semi-dual :math:`\\langle a,f\\rangle+\\langle b,g\\rangle`.
    columns: ``[m]`` the plan's column sums.
    trace: ``[max_iterations]`` column L1 errors (``-1`` after the stop).
    done: stopped.
    damping: the Levenberg-Marquardt damping of the next step.
    error: the column L1 error of ``columns``.
    noise: the round-off of ``dual`` (:func:`_row_pass`).
    delta: ``[m]`` the Newton direction from ``g`` (zeros before the first).
    tries: trials refused from ``g`` along ``delta`` (the next one is at ``2**-tries``; past ``halvings``: a
      Sinkhorn iteration).
    fresh: ``plan`` is the plan of ``g`` (else of the last trial, refused): the next iteration solves for a new
      direction.
    staged: iterating at the stage's epsilon (``newton_tail``'s ``stage``; ``False`` without one).
    restart: the stage has ended: the next iteration evaluates ``g`` at the target epsilon, accepted.

  ``g``, ``f``, ``dual``, ``columns``, ``error`` and ``noise`` are the accepted point's; ``plan`` the plan of the
  last point evaluated, the only ``[n, m]`` array carried.
  """

  k: jax.Array
  g: jax.Array
  f: jax.Array
  plan: jax.Array
  dual: jax.Array
  columns: jax.Array
  trace: jax.Array
  done: jax.Array
  damping: jax.Array
  error: jax.Array
  noise: jax.Array
  delta: jax.Array
  tries: jax.Array
  fresh: jax.Array
  staged: jax.Array
  restart: jax.Array


def row_update(cost: jax.Array, a: jax.Array, b: jax.Array, g: jax.Array, epsilon: Any):
  r"""``(f, plan [n, m], dual, columns)`` of :math:`f=\mathcal T_a g`: one exponential pass over ``cost [n, m]``."""
  f, (e, r), columns, stats = _row_pass(cost, a, b, g, epsilon)
  return f, e * r[:, None], stats.dual, columns


class _RowStats(NamedTuple):
  dual: jax.Array
  noise: jax.Array
  error: jax.Array


def _row_pass(cost: jax.Array, a: jax.Array, b: jax.Array, g: jax.Array, epsilon: Any):
  r"""``(f, (e, r), columns, stats)`` of :math:`f=\mathcal T_a g`, the plan factored, the stats in one reduction.

  The plan is :math:`\mathrm{diag}(r)\,e` with ``e [n, m]`` the exponentials (each row's largest is 1) and ``r
  [n]`` the rows' scales: products with the plan take ``e`` and a vector, and the plan itself is never written.

  ``stats``: the semi-dual, its round-off (a few units in the last place of
  its terms' magnitude) and the column L1 error. Summed together over the
  concatenated rows and columns: on small problems every reduction is a few
  kernel launches, more than the sums themselves.
  """
  z = (g[None, :] - cost) / epsilon
  top = jnp.max(z, axis=1)
  top = jnp.where(jnp.isfinite(top), top, 0.0)
  e = jnp.exp(z - top[:, None])
  s = jnp.sum(e, axis=1)
  pos = a > 0
  f = jnp.where(pos, epsilon * (jnp.log(jnp.where(pos, a, 1.0)) - top - jnp.log(s)), -jnp.inf)
  r = jnp.where(pos, a, 0.0) / s
  columns = r @ e
  pos_b = b > 0
  source = jnp.where(pos, a * f, 0.0)
  target = jnp.where(pos_b, b * g, 0.0)
  terms = jnp.concatenate(
    [
      jnp.stack([source, jnp.abs(source), jnp.zeros_like(source)]),
      jnp.stack([target, jnp.abs(target), jnp.where(pos_b, jnp.abs(columns - b), 0.0)]),
    ],
    axis=1,
  )
  dual, scale, error = jnp.sum(terms, axis=1)
  return f, (e, r), columns, _RowStats(dual, 8.0 * jnp.finfo(scale.dtype).eps * scale, error)


def column_update(cost: jax.Array, b: jax.Array, f: jax.Array, epsilon: Any, transposed: bool = False) -> jax.Array:
  r""":math:`g=\mathcal T_b f` ``[m]`` (columns exact), ``-inf`` at zero weights: one exponential pass.

  ``cost`` is ``[n, m]``, or ``[m, n]`` with ``transposed`` (static).
  """
  return column_update_rows(cost, b, f, epsilon, transposed)[0]


def column_update_rows(
  cost: jax.Array, b: jax.Array, f: jax.Array, epsilon: Any, transposed: bool = False
) -> Tuple[jax.Array, jax.Array]:
  r"""``(g [m], rows [n])``: :math:`g=\mathcal T_b f` and the row sums of the plan of ``(f, g)``, one exp pass.

  ``cost`` is ``[n, m]``, or ``[m, n]`` with ``transposed`` (static): the
  matrix as the caller holds it, read in its own layout.
  """
  axis = 1 if transposed else 0
  z = ((f[None, :] if transposed else f[:, None]) - cost) / epsilon
  top = jnp.max(z, axis=axis, keepdims=True)
  top = jnp.where(jnp.isfinite(top), top, 0.0)
  e = jnp.exp(z - top)
  s = jnp.sum(e, axis=axis)
  pos = b > 0
  g = jnp.where(pos, epsilon * (jnp.log(jnp.where(pos, b, 1.0)) - jnp.squeeze(top, axis) - jnp.log(s)), -jnp.inf)
  w = jnp.where(pos, b, 0.0) / s
  return g, (w @ e if transposed else e @ w)


def _system(a, b, columns, epsilon):
  """``(1 / a, diag(c) floored, right-hand side)`` of the Newton system.

  The right-hand side is the gradient ``b - c`` in the form whose
  preconditioned step is Sinkhorn's own update ``eps log(b / c)``: equal to
  first order near the solution, and bounded where a column holds almost none
  of its mass. It is projected off the constant gauge, the operator's null
  space, which float32 round-off would otherwise amplify.
  """
  pos_b = b > 0
  inv_a = jnp.where(a > 0, 1.0 / jnp.where(a > 0, a, 1.0), 0.0)
  floor = jnp.finfo(columns.dtype).tiny / jnp.finfo(columns.dtype).eps
  diag = jnp.where(pos_b, jnp.maximum(columns, floor), 1.0)
  rhs = jnp.where(pos_b, epsilon * diag * jnp.log(jnp.where(pos_b, b, 1.0) / diag), 0.0)
  rhs = jnp.where(pos_b, rhs - diag * jnp.sum(rhs) / jnp.sum(jnp.where(pos_b, diag, 0.0)), 0.0)
  return inv_a, diag, rhs


def _direct_direction(plan, a, b, columns, epsilon, damping):
  r"""The damped Newton system solved by a dense Cholesky factorisation (small ``m``): ``(delta_g, 0)``.

  ``plan``: factored, ``(e [n, m], r [n])`` (:func:`_row_pass`).

  The Schur complement's null space, the constant gauge, is lifted by the
  rank-one term :math:`cc^\top/\sum c`: the right-hand side sums to zero, so
  the solution still has :math:`c^\top\Delta g=0` and solves the damped
  system, now positive definite (Cholesky, LAPACK's ``potrf``: half of LU's
  time at ``m = 48``, and no pivoting loop).
  """
  inv_a, diag, rhs = _system(a, b, columns, epsilon)
  weights = jnp.where(b > 0, diag, 0.0)
  e, r = plan
  schur = (1.0 + damping) * jnp.diag(diag) - (e * (r * (r * inv_a))[:, None]).T @ e
  schur = schur + weights[:, None] * weights[None, :] / jnp.sum(weights)
  x = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(schur), rhs)
  x = jnp.where((b > 0) & jnp.isfinite(x), x, 0.0)
  fallback = rhs / diag / (1.0 + damping)  # a failed factorisation (NaN): the linearised Sinkhorn step
  return jnp.where(jnp.all(jnp.isfinite(x)) & jnp.any(x != 0), x, fallback), 0


# newton_tail(fallback=True): a step's system is factorised where CG's preconditioned residual stays above this
# fraction of the first after cg_iterations (a stall: self-transport, where inexact steps stop converging). At the
# CG tolerance (0.3) instead, steps that CG still improves were factorised too: at epsilon = 1e-3 x mean cost that
# took up to 1.6x the time of CG alone (benchmarks/newton_solve.py); the stall rule, 1.05-1.15x.
FALLBACK_TOLERANCE = 0.9
# A step whose next error, predicted from the last step's rate times LAST_STEP[0], misses the threshold runs CG to
# cg_tolerance * threshold / prediction (at least LAST_STEP[1]): the step that can reach the threshold does.
LAST_STEP = (2.0, 0.05)


def _newton_direction(plan, a, b, columns, epsilon, damping, cg_iterations, cg_tolerance, stall_tolerance):
  """Preconditioned CG on the damped Schur complement; ``(delta_g [m], cg iterations, progressed)``.

  ``plan``: factored, ``(e [n, m], r [n])`` (:func:`_row_pass`).

  ``progressed``: the preconditioned residual fell below ``stall_tolerance`` times the first, with no
  breakdown.

  ``damping`` (Levenberg-Marquardt) adds ``damping * diag(c)``: the near-null
  modes of the Schur complement (far-apart clusters that exchange almost no
  mass) then move by at most ``1 / damping`` times their gradient.
  """
  pos_b = b > 0
  inv_a, diag, rhs = _system(a, b, columns, epsilon)

  e, r = plan
  weights = r * (r * inv_a)  # P^T diag(1 / a) P = e^T diag(r^2 / a) e

  def op(v):
    # w @ e, not e.T @ w: XLA's CPU backend transposes the matrix for the latter (3x slower at n = 1000).
    return (1.0 + damping) * diag * v - ((e @ v) * weights) @ e

  def curvature(p, ap):
    # (1 + damping) diag - P^T P / a is at least damping * diag; anything below is float round-off.
    return jnp.vdot(p, ap) >= damping * jnp.vdot(p, diag * p)

  def body(st):
    i, x, r, p, rz, r0, _ = st
    ap = op(p)
    ok = curvature(p, ap)
    alpha = jnp.where(ok, rz / jnp.vdot(p, ap), 0.0)
    x = x + alpha * p
    r = r - alpha * ap
    z = r / diag
    rz_new = jnp.vdot(r, z)
    return i + 1, x, r, z + (rz_new / rz) * p, rz_new, r0, ok

  def cond(st):
    i, _, _, _, rz, r0, ok = st
    return ok & (i < cg_iterations) & jnp.isfinite(rz) & (rz > 0) & (jnp.sqrt(jnp.abs(rz)) > cg_tolerance * r0)

  z0 = rhs / diag
  rz0 = jnp.vdot(rhs, z0)
  start = (0, jnp.zeros_like(rhs), rhs, z0, rz0, jnp.sqrt(jnp.abs(rz0)), jnp.ones((), bool))
  st = jax.lax.while_loop(cond, body, start)
  x = jnp.where(pos_b & jnp.isfinite(st[1]), st[1], 0.0)
  # Nothing solved (round-off from the first iteration): the preconditioned gradient, a linearised Sinkhorn step.
  x = jnp.where(jnp.any(x != 0), x, z0 / (1.0 + damping))
  progressed = st[6] & (jnp.sqrt(jnp.abs(st[4])) <= stall_tolerance * st[5])
  return x, st[0], progressed


def newton_tail(
  cost: jax.Array,
  a: jax.Array,
  b: jax.Array,
  epsilon: Any,
  g: jax.Array,
  k: jax.Array,
  trace: jax.Array,
  threshold: Any,
  *,
  min_iterations: int = 0,
  cg_iterations: int = 10,
  cg_tolerance: float = 0.3,
  halvings: int = 3,
  damping: float = 1e-3,
  direct: bool = False,
  fallback: bool = False,
  fallback_tolerance: float = FALLBACK_TOLERANCE,
  progress: Optional[Callable[[jax.Array, jax.Array], None]] = None,
  stage: Optional[Tuple[jax.Array, Any, Any]] = None,
  last_step: bool = True,
) -> NewtonState:
  """Newton steps from ``g`` until the column L1 error is below ``threshold`` or the trace is full.

  Args:
    cost: ``[n, m]`` cost matrix.
    a: ``[n]`` source weights.
    b: ``[m]`` target weights.
    epsilon: the regularisation.
    g: ``[m]`` start (``-inf`` at zero weights).
    k: iterations already in ``trace`` (the first Newton step's index).
    trace: ``[max_iterations]`` error trace to continue.
    threshold: stop below this column L1 error.
    min_iterations: no stop before this many iterations in all (static).
    cg_iterations: CG iterations per step at most (static).
    cg_tolerance: CG stops when the preconditioned residual falls below this fraction of the first.
    halvings: step halvings tried before a Sinkhorn iteration replaces the step (static).
    direct: solve each step's system by a dense Cholesky factorisation (``m x m``) instead of CG (static).
    fallback: with CG, solve a step's system by the factorisation where CG stalls: its preconditioned
      residual above ``fallback_tolerance`` times the first after ``cg_iterations`` (an ill-conditioned
      system, e.g. self-transport, on which inexact steps stall; static; for small ``m``: under ``jax.vmap``
      both solves run at every step).
    fallback_tolerance: the stall of ``fallback`` (:data:`FALLBACK_TOLERANCE`).
    damping: the first step's Levenberg-Marquardt damping (then adapted: a quarter after a full
      step, twice after a shortened one, eight times after a refused one).
    progress: ``(iterations done, trace) -> None`` called after each step (static; ``None``: nothing).
    stage: ``(staged, stage_epsilon, stage_threshold)`` (traced) or ``None``: when ``staged``, Newton
      steps at ``stage_epsilon`` first, until the column error is below ``stage_threshold`` (their
      errors recorded as ``inf``, at most ``max_iterations - 1`` iterations), then at ``epsilon`` from
      their ``g``; ``g`` is then the column update at ``stage_epsilon``.
    last_step: at the target epsilon of a problem without a stage, CG's tolerance for a step whose predicted
      next error (the last step's rate, times ``LAST_STEP[0]``) misses ``threshold`` shrinks to ``cg_tolerance *
      threshold / prediction`` (at least ``LAST_STEP[1]``: :data:`LAST_STEP`), so that a step that can reach the
      threshold does (static; ``False``: ``cg_tolerance`` throughout).

  Returns:
    The final :class:`NewtonState`; ``f`` has exact rows, ``trace[k - 1]`` its column error.
  """
  max_iterations = trace.shape[0]
  g = jnp.where(b > 0, g, -jnp.inf)

  def record(state: NewtonState, accepted: Any = True, at_target: Any = True, report: Any = True) -> NewtonState:
    """Logs an accepted iteration; a stage's errors (``at_target`` false) are not the target's: ``inf``.

    ``at_target`` and ``report`` are ``True`` or traced booleans.
    """
    k = state.k + jnp.asarray(accepted, state.k.dtype)
    err = reported_error(state.error, state.k, min_iterations, max_iterations)
    done = (k >= max_iterations) | ((k >= max(min_iterations, 1)) & ~(err >= threshold))
    if at_target is not True:  # a stage ends below its own threshold, with one iteration left for the target
      err = jnp.where(at_target, err, jnp.asarray(jnp.inf, err.dtype))
      done = jnp.where(at_target, done, (k >= max_iterations - 1) | ~(state.error >= stage[2]))
    trace = state.trace.at[state.k].set(jnp.where(accepted, err, state.trace[state.k]))
    if progress is not None:
      call = accepted if report is True else report & accepted
      if call is True:
        progress(k, trace)
      else:
        jax.lax.cond(call, lambda: progress(k, trace), lambda: None)
    return state._replace(k=k, trace=trace, done=done & accepted)

  def leave_stage(state: NewtonState, in_stage: Any) -> NewtonState:
    """A stage that is done hands over to the target: one more iteration (``restart``), not a stop."""
    if stage is None:
      return state
    leave = in_stage & state.done
    return state._replace(staged=in_stage & ~leave, restart=leave, done=state.done & ~in_stage)

  def forcing(state: NewtonState, tol: Any) -> jax.Array:
    """CG's tolerance for a step from ``state``: tighter where one step may reach ``tol`` (:data:`LAST_STEP`).

    The next error is predicted from the last step's rate, with a margin; where it misses ``tol``, CG's
    tolerance shrinks in proportion.
    """
    margin, floor = LAST_STEP
    error = state.error
    before = state.trace[jnp.maximum(state.k - 2, 0)]
    known = (state.k >= 2) & (before > 0) & jnp.isfinite(before)
    predicted = margin * error * error / jnp.where(known, before, 1.0)
    tight = jnp.clip(cg_tolerance * tol / predicted, floor, cg_tolerance)
    # Not on a staged problem (small epsilon): there Newton's region of fast convergence is narrow, and a step
    # solved tighter overshoots (3-D Gaussian mixtures at 1e-3 x mean cost: more steps, and each costs more CG).
    small_epsilon = False if stage is None else stage[0]
    return jnp.where(known & ~small_epsilon, tight, cg_tolerance).astype(error.dtype)

  def direction(state: NewtonState, epsilon, tol) -> jax.Array:
    if direct:
      return _direct_direction(state.plan, a, b, state.columns, epsilon, state.damping)[0]
    delta, _, solved = _newton_direction(
      state.plan,
      a,
      b,
      state.columns,
      epsilon,
      state.damping,
      cg_iterations,
      cg_tolerance if tol is None else forcing(state, tol),
      fallback_tolerance,
    )
    if not fallback:
      return delta
    # CG stalled (an ill-conditioned system): the dense factorisation.
    factorised = lambda: _direct_direction(state.plan, a, b, state.columns, epsilon, state.damping)[0]  # noqa: E731
    return jax.lax.cond(solved, lambda: delta, factorised)

  def iteration(state: NewtonState) -> NewtonState:
    r"""One trial, one exponential pass: the Newton point ``g + 2**-tries delta``, or a Sinkhorn iteration.

    A new direction is solved only after an accepted point (``fresh``); a refused trial's plan is dropped, and
    only the accepted point's vectors are kept, so no ``[n, m]`` array is copied or selected. Past ``halvings``
    refused trials, a Sinkhorn iteration: :math:`\mathcal T_b f=g+\varepsilon\log(b/c)` from the accepted
    point's columns ``c`` (no exponential; a column whose mass underflowed moves toward it by a bounded step,
    which still raises the dual), always accepted.

    The stage and the target share this one loop body (``staged`` picks the epsilon; compiled once): after
    the stage, a ``restart`` evaluates the stage's last ``g`` at the target epsilon, always accepted, with the
    first damping.
    """
    if stage is None:
      in_stage, restart, eps = False, False, epsilon
    else:
      in_stage, restart = state.staged, state.restart
      eps = jnp.where(in_stage, stage[1], epsilon)
    # A stage's steps use cg_tolerance: forcing() does too on a staged problem (its small_epsilon).
    tol = threshold if last_step else None
    fresh = state.fresh if stage is None else state.fresh & ~restart
    delta = jax.lax.cond(fresh, lambda: direction(state, eps, tol), lambda: state.delta)
    sinkhorn = state.tries > halvings
    sinkhorn = sinkhorn if stage is None else sinkhorn & ~restart
    t = jnp.asarray(0.5, state.dual.dtype) ** state.tries.astype(state.dual.dtype)
    _, diag, _ = _system(a, b, state.columns, eps)
    pos_b = b > 0
    g_sinkhorn = jnp.where(pos_b, state.g + eps * jnp.log(jnp.where(pos_b, b, 1.0) / diag), -jnp.inf)
    g_trial = jnp.where(sinkhorn, g_sinkhorn, state.g + t * delta)
    if stage is not None:
      g_trial = jnp.where(restart, state.g, g_trial)
    f, plan, columns, stats = _row_pass(cost, a, b, g_trial, eps)
    # The dual rises; or, where its change is within round-off (near the solution), the column error falls.
    rises = (stats.dual >= state.dual) | ((stats.dual >= state.dual - state.noise) & (stats.error < state.error))
    accepted = sinkhorn | rises | restart
    # Trust the model more after a full step, less after a shortened one or a Sinkhorn iteration.
    factor = jnp.where(sinkhorn, 8.0, jnp.where(state.tries == 0, 0.25, 2.0)).astype(state.damping.dtype)
    keep = lambda new, old: jnp.where(accepted, new, old)  # noqa: E731  vectors and scalars only
    new_damping = keep(jnp.clip(state.damping * factor, 1e-6, 1e3), state.damping)
    if stage is not None:
      new_damping = jnp.where(restart, jnp.asarray(damping, new_damping.dtype), new_damping)
    new = state._replace(
      g=keep(g_trial, state.g),
      f=keep(f, state.f),
      plan=plan,
      columns=keep(columns, state.columns),
      dual=keep(stats.dual, state.dual),
      noise=keep(stats.noise, state.noise),
      error=keep(stats.error, state.error),
      damping=new_damping,
      delta=delta,
      tries=jnp.where(accepted, 0, state.tries + 1),
      fresh=accepted,
      restart=jnp.zeros_like(state.restart),
    )
    return leave_stage(record(new, accepted, True if stage is None else ~in_stage), in_stage)

  if stage is not None:  # a stage needs one iteration left after it
    staged = stage[0] & (k < max_iterations - 1)
    start_epsilon = jnp.where(staged, stage[1], epsilon)
  else:
    staged, start_epsilon = jnp.zeros((), bool), epsilon
  f, plan, columns, stats = _row_pass(cost, a, b, g, start_epsilon)
  state = NewtonState(
    k,
    g,
    f,
    plan,
    stats.dual,
    columns,
    trace,
    jnp.zeros((), bool),
    jnp.asarray(damping, stats.dual.dtype),
    stats.error,
    stats.noise,
    jnp.zeros_like(g),
    jnp.zeros((), jnp.int32),
    jnp.ones((), bool),
    staged,
    jnp.zeros((), bool),
  )
  if stage is None:
    state = record(state)
  else:  # the stage's first error is not reported
    state = leave_stage(record(state, at_target=~staged, report=~staged), staged)
  return jax.lax.while_loop(lambda s: ~s.done, iteration, state)
