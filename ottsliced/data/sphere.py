"""Supply-demand transport on the sphere S^2, synthetic data.

**Deviation from the paper.** The paper samples demand locations from the GPWv4
population-density raster and supply locations uniformly over land. GPWv4 ships
in no package and nothing is downloaded here, so the "population" is a fixed,
seeded mixture of von Mises-Fisher (vMF) clusters on S^2
(:func:`population_density_points`, mixture seed :data:`POPULATION_SEED`) and
"land" is a broader version of it (same centres and mixture weights, every
concentration multiplied by :data:`LAND_KAPPA_SCALE`). Cluster centres lie
between latitudes -30 and +49 degrees, away from the north pole (the pole of the
stereographic projection). Everything else follows the method: 10,000 demand
points (seed 0), 100 supply points (seed 1), per-instance weights from Meta
OT's sampler, geodesic cost ``arccos(clip(<x, y>, -1 + delta, 1 - delta))``.

Coordinates. A :class:`~ottsliced.problems.batch.ProblemBatch` stores the points in
stereographic coordinates ``u = 2 x_{1:2} / (1 - x_3)`` (projection from the
north pole, :func:`to_stereographic`) and carries the cost
:class:`SphereGeodesic`, which maps plane points back to the sphere. So
ottsliced's sliced features (computed from the coordinates with the 1-D cost
``|s - t|^2``) live on the stereographic plane as the method specifies, while
Sinkhorn sees the geodesic cost.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import costs

from ottsliced.problems.batch import ProblemBatch

__all__ = [
  "LAND_KAPPA_SCALE",
  "POPULATION_SEED",
  "SphereGeodesic",
  "SphereProblems",
  "arccos",
  "from_stereographic",
  "land_points",
  "population_density_points",
  "sample_vmf",
  "supply_demand_pairs",
  "to_stereographic",
]

#: Seed of the fixed vMF mixture that plays the population density.
POPULATION_SEED = 2015
#: Concentration multiplier of the broader "land" mixture (supply locations).
LAND_KAPPA_SCALE = 0.1
_X3_MAX = 1.0 - 1e-6


def _xp(*arrays: Any):
  return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def to_stereographic(x: Any) -> Any:
  """Stereographic projection from the north pole, ``u = 2 x_{1:2} / (1 - x_3)``.

  ``x`` is first renormalised to unit length, then ``x_3`` is clamped to
  ``<= 1 - 1e-6`` (the north pole maps to a large but finite point); non-finite
  results (e.g. from a zero vector) become 0.

  Args:
    x: ``[..., 3]`` points (numpy or JAX; JAX in, JAX out).

  Returns:
    ``[..., 2]`` plane coordinates.
  """
  xp = _xp(x)
  if np.shape(x)[-1] != 3:
    raise ValueError(f"`x` must have a trailing dimension of 3, got shape {np.shape(x)}.")
  x = xp.asarray(x)
  with np.errstate(divide="ignore", invalid="ignore"):
    x = x / xp.linalg.norm(x, axis=-1, keepdims=True)
    x3 = xp.minimum(x[..., 2:3], _X3_MAX)
    u = 2.0 * x[..., :2] / (1.0 - x3)
  return xp.where(xp.isfinite(u), u, 0.0)


def from_stereographic(u: Any) -> Any:
  """Inverse of :func:`to_stereographic`: ``x = (4 u, |u|^2 - 4) / (|u|^2 + 4)``.

  (With the factor 2 in ``u = 2 x_{1:2} / (1 - x_3)`` the plane is tangent at
  the south pole, hence 4 rather than 1 in the usual formula.)

  Args:
    u: ``[..., 2]`` plane coordinates (numpy or JAX).

  Returns:
    ``[..., 3]`` unit vectors.
  """
  xp = _xp(u)
  if np.shape(u)[-1] != 2:
    raise ValueError(f"`u` must have a trailing dimension of 2, got shape {np.shape(u)}.")
  u = xp.asarray(u)
  sq = xp.sum(u * u, axis=-1, keepdims=True)
  return xp.concatenate([4.0 * u, sq - 4.0], axis=-1) / (sq + 4.0)


# arccos(t) = sqrt(1 - t) * poly(t) on [0, 1], absolute error below 2.2e-8 (Abramowitz and Stegun 4.4.46).
_ARCCOS_COEFFICIENTS = (
  -0.0012624911,
  0.0066700901,
  -0.0170881256,
  0.0308918810,
  -0.0501743046,
  0.0889789874,
  -0.2145988016,
  1.5707963050,
)


def arccos(t: jnp.ndarray) -> jnp.ndarray:
  r"""Elementwise :math:`\arccos` on ``[-1, 1]`` from a square root and a degree-7 polynomial.

  Absolute error below ``2.2e-8`` (float64; float32 rounds to its own
  precision), relative error about ``1e-9`` next to ``t = 1`` (short
  distances). XLA's ``arccos`` goes through ``atan2``, about 10x slower on
  CPU: 1.28 ms against 0.14 ms for the 100 x 1,000 cost of the solver
  suite's sphere case (``python benchmarks/sphere_cost.py``).

  Args:
    t: cosines, any shape.

  Returns:
    Angles in ``[0, pi]``, ``t``'s shape.
  """
  t = jnp.asarray(t)
  u = jnp.abs(t)
  poly = jnp.zeros_like(u)
  for c in _ARCCOS_COEFFICIENTS:
    poly = poly * u + c
  angle = jnp.sqrt(jnp.maximum(1.0 - u, 0.0)) * poly
  return jnp.where(t >= 0, angle, jnp.pi - angle)


@jax.tree_util.register_pytree_node_class
class SphereGeodesic(costs.CostFn):
  """Geodesic (great-circle) distance on S^2 between points in stereographic coordinates.

  ``c(u, v) = arccos(clip(<x, y>, -1 + delta, 1 - delta))`` with
  ``x = from_stereographic(u)``, ``y = from_stereographic(v)``.

  Why plane coordinates: the :class:`~ottsliced.problems.batch.ProblemBatch` (and the
  OTT ``PointCloud``) hold the stereographic coordinates ``u in R^2``, so
  ottsliced's sliced features, computed from the coordinates with the 1-D
  squared cost, live on the stereographic plane exactly as the method
  specifies, while Sinkhorn uses this geodesic cost. OTT's
  ``GaussianInitializer`` still runs on such a ``PointCloud`` but treats the
  plane coordinates as Euclidean (a baseline, not a sphere-aware method).
  The clip keeps ``arccos`` differentiable (its derivative is infinite at
  +-1); it makes the cost on the diagonal ``arccos(1 - delta)`` (about
  ``sqrt(2 delta)``, 4.5e-4 for the default) rather than 0.

  Args:
    delta: clipping margin (static, pytree aux data).
  """

  symmetric = True  # c(u, v) = c(v, u): solvers may form the transposed cost matrix directly

  def __init__(self, delta: float = 1e-7):
    super().__init__()
    delta = float(delta)
    if not 0.0 <= delta < 1.0:
      raise ValueError(f"`delta` must be in [0, 1), got {delta}.")
    self.delta = delta

  def __call__(self, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """Geodesic distance between the sphere points of plane points ``x, y`` ``[2]``."""
    xs, ys = from_stereographic(jnp.asarray(x)), from_stereographic(jnp.asarray(y))
    return self._angle(jnp.dot(xs, ys))

  def all_pairs(self, x: jnp.ndarray, y: jnp.ndarray) -> jnp.ndarray:
    """``[n, m]`` distances between plane points ``x [n, 2]`` and ``y [m, 2]``: one matrix product on the sphere.

    Maps each point to the sphere once (OTT's default maps both points of
    every pair) and takes the polynomial :func:`arccos`.
    """
    xs, ys = from_stereographic(jnp.asarray(x)), from_stereographic(jnp.asarray(y))
    return self._angle(xs @ ys.T)

  def _angle(self, cosines: jnp.ndarray) -> jnp.ndarray:
    return arccos(jnp.clip(cosines, -1.0 + self.delta, 1.0 - self.delta))

  def tree_flatten(self):  # noqa: D102
    return (), {"delta": self.delta}

  @classmethod
  def tree_unflatten(cls, aux_data, children):  # noqa: D102
    del children
    return cls(**aux_data)

  # Equal configurations compare equal, so jit caches keyed on pytree aux
  # (ProblemBatch, Sinkhorn) are shared across instances.
  def __eq__(self, other: Any) -> bool:
    return type(other) is type(self) and other.delta == self.delta

  def __hash__(self) -> int:
    return hash((type(self).__name__, self.delta))

  def __repr__(self) -> str:
    return f"SphereGeodesic(delta={self.delta:g})"


def sample_vmf(mu: np.ndarray, kappa: np.ndarray, u: np.ndarray) -> np.ndarray:
  """Von Mises-Fisher samples on S^2 from uniforms (vectorised, closed form).

  ``w = 1 + log(u_0 + (1 - u_0) e^{-2 kappa}) / kappa`` is the cosine to the
  mean direction, ``phi = 2 pi u_1`` the angle around it; samples around the
  north pole are reflected onto ``mu`` (a Householder reflection, which keeps
  the vMF law since it is rotation-symmetric about ``mu``).

  Args:
    mu: ``[N, 3]`` unit mean directions.
    kappa: ``[N]`` concentrations ``> 0``.
    u: ``[N, 2]`` uniforms in ``(0, 1]``.

  Returns:
    ``[N, 3]`` unit vectors.
  """
  mu, kappa, u = np.asarray(mu, np.float64), np.asarray(kappa, np.float64), np.asarray(u, np.float64)
  w = 1.0 + np.log(u[:, 0] + (1.0 - u[:, 0]) * np.exp(-2.0 * kappa)) / kappa
  w = np.clip(w, -1.0, 1.0)
  phi = 2.0 * np.pi * u[:, 1]
  r = np.sqrt(np.maximum(1.0 - w * w, 0.0))
  z = np.stack([r * np.cos(phi), r * np.sin(phi), w], axis=-1)  # around e3
  v = np.array([0.0, 0.0, 1.0]) - mu  # Householder vector mapping e3 -> mu
  vv = np.sum(v * v, axis=-1, keepdims=True)
  safe = vv > 1e-12
  proj = np.sum(z * v, axis=-1, keepdims=True)
  x = np.where(safe, z - 2.0 * proj * v / np.where(safe, vv, 1.0), z)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _mixture(num_clusters: int):
  """The fixed population mixture: centres ``[K, 3]``, concentrations ``[K]``, weights ``[K]``."""
  rs = np.random.default_rng([POPULATION_SEED, num_clusters])
  z = rs.uniform(np.sin(np.radians(-30.0)), np.sin(np.radians(49.0)), size=num_clusters)
  lon = rs.uniform(0.0, 2.0 * np.pi, size=num_clusters)
  r = np.sqrt(1.0 - z * z)
  centres = np.stack([r * np.cos(lon), r * np.sin(lon), z], axis=-1)
  kappa = np.exp(rs.uniform(np.log(20.0), np.log(200.0), size=num_clusters))
  weights = rs.dirichlet(np.full(num_clusters, 2.0))
  return centres, kappa, weights


def population_density_points(num: int, *, seed: int, num_clusters: int = 12, kappa_scale: float = 1.0) -> np.ndarray:
  """Draws from the synthetic population density, a fixed vMF mixture on S^2.

  The mixture (centres, concentrations log-uniform in [20, 200], Dirichlet
  mixture weights) is fixed by :data:`POPULATION_SEED` and ``num_clusters``;
  ``seed`` only drives the draws. ``kappa_scale < 1`` gives a broader version of
  the same mixture (:func:`land_points`).

  Args:
    num: number of points.
    seed: seed of the draws.
    num_clusters: number of mixture components.
    kappa_scale: multiplier of every concentration.

  Returns:
    ``[num, 3]`` float64 unit vectors.
  """
  if int(num) < 1:
    raise ValueError(f"`num` must be >= 1, got {num}.")
  if int(num_clusters) < 1:
    raise ValueError(f"`num_clusters` must be >= 1, got {num_clusters}.")
  if not kappa_scale > 0:
    raise ValueError(f"`kappa_scale` must be > 0, got {kappa_scale}.")
  centres, kappa, weights = _mixture(int(num_clusters))
  rs = np.random.default_rng(seed)
  comp = rs.choice(int(num_clusters), size=int(num), p=weights)
  u = 1.0 - rs.random((int(num), 2))  # (0, 1]
  return sample_vmf(centres[comp], kappa[comp] * float(kappa_scale), u)


def land_points(num: int, *, seed: int, num_clusters: int = 12) -> np.ndarray:
  """Draws from the synthetic "land" density (the population mixture, ``kappa * LAND_KAPPA_SCALE``).

  Returns:
    ``[num, 3]`` float64 unit vectors.
  """
  return population_density_points(num, seed=seed, num_clusters=num_clusters, kappa_scale=LAND_KAPPA_SCALE)


class SphereProblems(NamedTuple):
  """Supply-demand problems on S^2.

  Attributes:
    batch: :class:`ProblemBatch` with shared stereographic supports ``x``
      ``[n, 2]`` (supply) and ``y`` ``[m, 2]`` (demand), weights ``[B, n]``,
      ``[B, m]`` and ``cost_fn=SphereGeodesic()``.
    supply_xyz: ``[n, 3]`` supply locations on the sphere (for plotting).
    demand_xyz: ``[m, 3]`` demand locations on the sphere.
  """

  batch: ProblemBatch
  supply_xyz: np.ndarray
  demand_xyz: np.ndarray


def supply_demand_pairs(
  num_pairs: int,
  *,
  num_supply: int = 100,
  num_demand: int = 10_000,
  epsilon: float = 0.5,
  seed: int = 999,
  offset: int = 0,
  delta: float = 1e-7,
) -> SphereProblems:
  """Supply-demand problems with fixed locations and random weights (Meta OT's sampler).

  Locations are fixed: ``num_demand`` draws of :func:`population_density_points`
  (seed 0) and ``num_supply`` draws of :func:`land_points` (seed 1). Instance
  ``k`` (``0 <= k < num_pairs``) uses ``np.random.default_rng(seed + offset + k)``:
  supply weights ``Bernoulli(0.5) mask * U[0, 1]`` (all ones if fully masked),
  demand weights ``U[0, 1]``, both normalised.

  Train/test split: instances are identified by their seed, so train and test
  sets must use disjoint seed ranges, e.g. train ``seed=0`` with
  ``num_pairs=M <= 999`` (seeds ``0 .. M-1``) and test the default ``seed=999``
  (seeds ``999 .. 999+N-1``, the paper's protocol); ``offset`` shifts within one
  range (``seed=s, offset=k`` equals ``seed=s+k``).

  Args:
    num_pairs: number of instances ``B``.
    num_supply: number of supply points ``n``.
    num_demand: number of demand points ``m``.
    epsilon: entropic regularisation (the paper: 0.5).
    seed: base seed of the instance weights.
    offset: skip the first ``offset`` instances.
    delta: clipping margin of :class:`SphereGeodesic`.

  Returns:
    A :class:`SphereProblems` ``(batch, supply_xyz [n, 3], demand_xyz [m, 3])``.
  """
  num_pairs, offset = int(num_pairs), int(offset)
  if num_pairs < 1:
    raise ValueError(f"`num_pairs` must be >= 1, got {num_pairs}.")
  if offset < 0:
    raise ValueError(f"`offset` must be >= 0, got {offset}.")
  if int(num_supply) < 1 or int(num_demand) < 1:
    raise ValueError(f"`num_supply` and `num_demand` must be >= 1, got {num_supply} and {num_demand}.")
  demand_xyz = population_density_points(int(num_demand), seed=0)
  supply_xyz = land_points(int(num_supply), seed=1)
  a = np.empty((num_pairs, int(num_supply)), np.float64)
  b = np.empty((num_pairs, int(num_demand)), np.float64)
  for k in range(num_pairs):  # loop over instances, not atoms
    rs = np.random.default_rng(int(seed) + offset + k)
    mask = rs.random(int(num_supply)) < 0.5
    w = mask * rs.random(int(num_supply))
    a[k] = w if w.sum() > 0 else np.ones(int(num_supply))
    b[k] = rs.random(int(num_demand))
  a /= a.sum(axis=1, keepdims=True)
  b /= b.sum(axis=1, keepdims=True)
  x = to_stereographic(supply_xyz).astype(np.float32)
  y = to_stereographic(demand_xyz).astype(np.float32)
  batch = ProblemBatch(x, y, a.astype(np.float32), b.astype(np.float32), epsilon, SphereGeodesic(delta))
  return SphereProblems(batch, supply_xyz.astype(np.float32), demand_xyz.astype(np.float32))
