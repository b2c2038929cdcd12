"""2-D toy distributions of the flow-matching experiments (torchcfm's samplers), jittable."""

from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["TOYS", "sample_toy"]

TOYS: Tuple[str, ...] = ("gaussian", "8gaussians", "moons", "scurve")


def sample_toy(
  name: str,
  key: jax.Array,
  num: int,
  *,
  scale: float = 5.0,
  variance: float = 0.1,
  moons_noise: float = 0.2,
  scurve_noise: float = 0.1,
) -> jax.Array:
  r"""``num`` points ``[num, 2]`` of a 2-D toy distribution, jittable (``name``, ``num`` static).

  Replicates the torchcfm helpers the authors use:

  - ``"gaussian"``: :math:`\mathcal N(0, I_2)`.
  - ``"8gaussians"``: torchcfm's ``eight_normal_sample(n, 2, scale=5, var=0.1)``:
    uniform over 8 centres at radius ``scale`` plus Gaussian noise whose
    covariance is :math:`\sqrt{\text{variance}}\,I` (torchcfm passes
    ``sqrt(var) * eye`` as the covariance, so the noise std is
    :math:`\text{variance}^{1/4}\approx0.56`).
  - ``"moons"``: torchdyn's ``generate_moons(n, noise=0.2)`` then ``3 x - 1``:
    two half circles at evenly spaced angles (``linspace``), shifted along the
    diagonal by one uniform :math:`U[0,\text{noise})` per point (torchdyn adds
    ``rand(n, 1) * noise`` to both coordinates).
  - ``"scurve"``: scikit-learn's ``make_s_curve(n, noise=0.1)``, coordinates
    :math:`(x, z)`.

  Args:
    name: one of :data:`TOYS`.
    key: PRNG key.
    num: number of points.
    scale: 8-Gaussians radius.
    variance: 8-Gaussians ``var`` argument (see above).
    moons_noise: moons noise amplitude.
    scurve_noise: S-curve Gaussian noise std.

  Returns:
    ``[num, 2]`` float array.
  """
  if name not in TOYS:
    raise ValueError(f"unknown toy {name!r}; choose one of {TOYS}.")
  if name == "gaussian":
    return jax.random.normal(key, (num, 2))
  if name == "8gaussians":
    s = 1.0 / np.sqrt(2.0)
    centres = jnp.array([(1, 0), (-1, 0), (0, 1), (0, -1), (s, s), (s, -s), (-s, s), (-s, -s)], dtype=float) * scale
    kc, kn = jax.random.split(key)
    idx = jax.random.randint(kc, (num,), 0, 8)
    return centres[idx] + jax.random.normal(kn, (num, 2)) * variance**0.25
  if name == "moons":
    n_out = num // 2
    n_in = num - n_out
    th_out, th_in = jnp.linspace(0.0, jnp.pi, n_out), jnp.linspace(0.0, jnp.pi, n_in)
    outer = jnp.stack([jnp.cos(th_out), jnp.sin(th_out)], axis=1)
    inner = jnp.stack([1.0 - jnp.cos(th_in), 1.0 - jnp.sin(th_in) - 0.5], axis=1)
    x = jnp.concatenate([outer, inner], axis=0) + jax.random.uniform(key, (num, 1)) * moons_noise
    return 3.0 * x - 1.0
  kt, ky, kn = jax.random.split(key, 3)
  del ky  # the S-curve's y coordinate is not used
  t = 3.0 * jnp.pi * (jax.random.uniform(kt, (num,)) - 0.5)
  x = jnp.stack([jnp.sin(t), jnp.sign(t) * (jnp.cos(t) - 1.0)], axis=1)
  return x + scurve_noise * jax.random.normal(kn, (num, 2))
