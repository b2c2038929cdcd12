"""Sinkhorn iterations without a stopping rule, marginal errors, and iteration counts of OTT outputs."""

from typing import Any, Tuple

import jax
import jax.numpy as jnp
from ott.solvers.linear import sinkhorn

__all__ = ["final_errors", "marginal_errors", "num_iterations", "reported_error", "sinkhorn_sweeps"]


def marginal_errors(geom: Any, f: jax.Array, g: jax.Array, a: jax.Array, b: jax.Array) -> Tuple[jax.Array, jax.Array]:
  r"""L1 marginal errors ``(||P 1 - a||_1, ||P^T 1 - b||_1)`` of :math:`P=e^{(f\oplus g-C)/\varepsilon}`."""
  rows = geom.marginal_from_potentials(f, g, axis=1)
  cols = geom.marginal_from_potentials(f, g, axis=0)
  return jnp.sum(jnp.abs(rows - a)), jnp.sum(jnp.abs(cols - b))


def reported_error(err: jax.Array, k: jax.Array, min_iterations: int, max_iterations: int) -> jax.Array:
  """The error recorded for iteration ``k + 1`` (0-based ``k``): ``inf`` before ``min_iterations``, as OTT.

  OTT reports no error before ``min_iterations``, except at the last
  iteration (so ``min_iterations = max_iterations`` still ends with one).
  """
  if not min_iterations:
    return err
  return jnp.where((k > min_iterations - 1) | (k == max_iterations - 1), err, jnp.inf)


def num_iterations(out: sinkhorn.SinkhornOutput) -> jax.Array:
  """Sinkhorn iterations per pair, ``[B]`` for a batched output (``[]`` otherwise).

  Use this instead of ``out.n_iters`` on the outputs of :func:`solve_batch`:
  OTT's property sums over every axis, i.e. over the whole batch.
  """
  return jnp.sum(out.errors != -1, axis=-1) * out.inner_iterations


def final_errors(out: sinkhorn.SinkhornOutput) -> jax.Array:
  """The last recorded marginal error per pair, ``[B]`` for a batched output (``[]`` otherwise).

  OTT's ``errors`` trace holds one entry per ``inner_iterations`` block and
  ``-1`` after the stop; the error the solve ended with is its last
  non-negative entry (not its maximum, which is the first check's).
  """
  last = jnp.maximum(jnp.sum(out.errors != -1, axis=-1, keepdims=True) - 1, 0)
  return jnp.take_along_axis(out.errors, last, axis=-1)[..., 0]


def sinkhorn_sweeps(geom: Any, a: jax.Array, b: jax.Array, f: jax.Array, g: jax.Array, num_sweeps: int):
  r"""Exactly ``num_sweeps`` log-domain Sinkhorn iterations, no convergence checks.

  Each sweep is OTT's update order, :math:`g\leftarrow\mathcal T_b f` then
  :math:`f\leftarrow\mathcal T_a g` (two c-transform passes). The loop is a
  ``lax.fori_loop`` with a static trip count (lowered to a ``scan``): unlike
  OTT's ``Sinkhorn(min_iterations=K, max_iterations=K, inner_iterations=1)``
  it computes no marginal error per iteration, which is a third pass, so a
  batch costs the same on every call and ``2 K`` passes in all.

  Args:
    geom: an OTT geometry (dense or online ``PointCloud``).
    a: source weights ``[n]``.
    b: target weights ``[m]``.
    f: source potential ``[n]`` (OTT convention: ``-inf`` at zero weights).
    g: target potential ``[m]``.
    num_sweeps: number of iterations (a Python int).

  Returns:
    ``(f [n], g [m])`` after the sweeps; ``-inf`` at zero weights.
  """
  log_a, log_b = jnp.log(a), jnp.log(b)
  f = jnp.where(a > 0, f, -jnp.inf)

  def sweep(_, fg):
    f, g = fg
    g = geom.update_potential(f, g, log_b, axis=0)
    return geom.update_potential(f, g, log_a, axis=1), g

  return jax.lax.fori_loop(0, int(num_sweeps), sweep, (f, jnp.where(b > 0, g, -jnp.inf)))
