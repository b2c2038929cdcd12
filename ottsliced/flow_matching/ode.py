"""ODE solvers for sampling a trained flow: Euler, fixed-step RK4 trajectories, adaptive Dormand--Prince 5(4)."""

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

__all__ = ["ODESolution", "dopri5", "euler_sample", "trajectory"]


def euler_sample(apply_fn: Callable, params: Any, x0: jax.Array, num_steps: int = 1) -> jax.Array:
  """Explicit Euler from ``t=0`` to ``1`` in ``num_steps`` steps: ``[N, d] -> [N, d]``."""
  h = 1.0 / num_steps

  def body(k, x):
    return x + h * apply_fn(params, x, jnp.full((x.shape[0],), k * h, x.dtype))

  return jax.lax.fori_loop(0, num_steps, body, x0)


def trajectory(apply_fn: Callable, params: Any, x0: jax.Array, num_steps: int = 100) -> jax.Array:
  """Fixed-step RK4 trajectories from ``t=0`` to ``1``: ``[num_steps + 1, N, d]`` (for plots)."""
  h = 1.0 / num_steps

  def v(x, t):
    return apply_fn(params, x, jnp.full((x.shape[0],), t, x.dtype))

  def body(x, k):
    t = k * h
    k1 = v(x, t)
    k2 = v(x + 0.5 * h * k1, t + 0.5 * h)
    k3 = v(x + 0.5 * h * k2, t + 0.5 * h)
    k4 = v(x + h * k3, t + h)
    x = x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x, x

  _, xs = jax.lax.scan(body, x0, jnp.arange(num_steps, dtype=x0.dtype))
  return jnp.concatenate([x0[None], xs], axis=0)


class ODESolution(NamedTuple):
  """Output of :func:`dopri5`.

  Attributes:
    y: state at ``t1`` (same shape as ``y0``).
    num_steps: accepted steps.
    num_rejected: rejected steps.
    nfe: function evaluations.
    t: final time reached (``t1`` unless ``max_steps`` was hit).
  """

  y: jax.Array
  num_steps: jax.Array
  num_rejected: jax.Array
  nfe: jax.Array
  t: jax.Array


_A = (
  (),
  (1 / 5,),
  (3 / 40, 9 / 40),
  (44 / 45, -56 / 15, 32 / 9),
  (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
  (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
  (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_B5 = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)


@functools.partial(jax.jit, static_argnames=("fun", "max_steps"))
def dopri5(
  fun: Callable[[jax.Array, jax.Array], jax.Array],
  y0: jax.Array,
  t0: float = 0.0,
  t1: float = 1.0,
  rtol: float = 1e-5,
  atol: float = 1e-5,
  max_steps: int = 10_000,
) -> ODESolution:
  r"""Adaptive Dormand--Prince 5(4) for ``dy/dt = fun(t, y)``, one ``lax.while_loop``.

  Like ``torchdiffeq.odeint(method="dopri5")`` on a batch tensor: one step size
  for the whole array, error norm = RMS of
  :math:`e/(\text{atol}+\text{rtol}\max(|y|,|y_{new}|))`, FSAL, step factor
  :math:`0.9\,\text{err}^{-1/5}` clipped to ``[0.2, 10]``, Hairer's initial
  step. The 5th-order solution is propagated.

  Args:
    fun: ``(t scalar, y [...]) -> [...]`` (static: a new function recompiles).
    y0: initial state.
    t0: start time.
    t1: end time (``> t0``).
    rtol: relative tolerance.
    atol: absolute tolerance.
    max_steps: cap on attempted steps (static).

  Returns:
    :class:`ODESolution`.
  """
  dtype = y0.dtype
  t0 = jnp.asarray(t0, dtype)
  t1 = jnp.asarray(t1, dtype)

  def rms(z):
    return jnp.sqrt(jnp.mean(z**2))

  f0 = fun(t0, y0)
  scale0 = atol + rtol * jnp.abs(y0)
  d0, d1 = rms(y0 / scale0), rms(f0 / scale0)
  h0 = jnp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1)
  f1 = fun(t0 + h0, y0 + h0 * f0)
  d2 = rms((f1 - f0) / scale0) / h0
  h1 = jnp.where(jnp.maximum(d1, d2) <= 1e-15, jnp.maximum(1e-6, h0 * 1e-3), (0.01 / jnp.maximum(d1, d2)) ** 0.2)
  h = jnp.minimum(100 * h0, h1)

  def cond(state):
    t, _, _, _, _, _, _, k = state
    return (t < t1) & (k < max_steps)

  def body(state):
    t, y, f, h, acc, rej, nfe, k = state
    h = jnp.minimum(h, t1 - t)
    ks = [f]
    for i in range(1, 7):
      yi = y + h * sum(a * kk for a, kk in zip(_A[i], ks) if a != 0.0)
      ks.append(fun(t + _C[i] * h, yi))
    y_new = y + h * sum(b * kk for b, kk in zip(_B5, ks) if b != 0.0)
    err = h * sum((b5 - b4) * kk for b5, b4, kk in zip(_B5, _B4, ks) if b5 != b4)
    scale = atol + rtol * jnp.maximum(jnp.abs(y), jnp.abs(y_new))
    e = rms(err / scale)
    ok = e <= 1.0
    factor = jnp.clip(0.9 * jnp.where(e > 0, e, 1e-10) ** -0.2, 0.2, 10.0)
    t = jnp.where(ok, t + h, t)
    y = jnp.where(ok, y_new, y)
    f = jnp.where(ok, ks[6], f)
    return t, y, f, h * factor, acc + ok, rej + (~ok), nfe + 6, k + 1

  zero = jnp.zeros((), jnp.int32)
  state = (t0, y0, f0, h, zero, zero, jnp.asarray(2, jnp.int32), zero)
  t, y, _, _, acc, rej, nfe, _ = jax.lax.while_loop(cond, body, state)
  return ODESolution(y, acc, rej, nfe, t)
