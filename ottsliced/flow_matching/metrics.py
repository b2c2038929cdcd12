"""Metrics of a trained flow: exact :math:`W_2` and the normalised path energy."""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ottsliced.flow_matching.ode import dopri5

__all__ = ["PathEnergy", "path_energy", "w2_exact"]


class PathEnergy(NamedTuple):
  r"""Normalised path energy of generated trajectories.

  Attributes:
    normalized: :math:`|\int_0^1\mathbb E\|v_t\|^2dt-W_2^2(x_0,\hat x_1)|/W_2^2(x_0,\hat x_1)`.
    energy: :math:`\int_0^1\mathbb E\|v_t\|^2dt` along the trajectories.
    w2_squared: :math:`W_2^2` between the starting points and the endpoints.
    nfe: velocity evaluations of the adaptive solver.
  """

  normalized: float
  energy: float
  w2_squared: float
  nfe: int


def path_energy(
  apply_fn: Callable, params: Any, x0: jax.Array, *, rtol: float = 1e-5, atol: float = 1e-5
) -> PathEnergy:
  r"""Normalised path energy of the flow started at ``x0 [N, d]`` (dopri5).

  The kinetic energy :math:`\int_0^1\|v_t(x_t)\|^2dt` of every trajectory is
  integrated together with the state (one augmented ODE, so the adaptive
  steps control its error too) and averaged; :math:`W_2^2(x_0,\hat x_1)` is
  the exact (POT ``emd2``) squared distance between the uniform measures on
  the ``N`` starting points and their endpoints. Straight, optimal paths
  give 0.
  """
  d = x0.shape[1]

  def fun(t, z):
    v = apply_fn(params, z[:, :d], jnp.full((z.shape[0],), t, z.dtype))
    return jnp.concatenate([v, jnp.sum(v**2, axis=1, keepdims=True)], axis=1)

  z0 = jnp.concatenate([x0, jnp.zeros((x0.shape[0], 1), x0.dtype)], axis=1)
  sol = dopri5(fun, z0, rtol=rtol, atol=atol)
  x1 = sol.y[:, :d]
  energy = float(jnp.mean(sol.y[:, d]))
  w2sq = w2_exact(x0, x1) ** 2
  return PathEnergy(abs(energy - w2sq) / w2sq, energy, w2sq, int(sol.nfe))


def w2_exact(x: Any, y: Any) -> float:
  r"""Exact :math:`W_2` between the uniform measures on ``x [n, d]`` and ``y [m, d]``.

  POT's ``ot.emd2`` on the squared Euclidean cost in float64
  (``numItermax=1e7``), then the square root (torchcfm's ``wasserstein``).
  """
  import ot

  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  a, b = np.full(len(x), 1.0 / len(x)), np.full(len(y), 1.0 / len(y))
  return float(np.sqrt(max(ot.emd2(a, b, ot.dist(x, y), numItermax=10_000_000), 0.0)))
