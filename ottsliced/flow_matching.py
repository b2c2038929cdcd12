r"""Mini-batch OT conditional flow matching with amortized couplings (method.md §9.4).

Couplings pair a source batch ``x0 [B, d]`` with a target batch ``x1 [B, d]``
and return index arrays ``(i0, i1)``; the flow-matching pairs are
``(x0[i0], x1[i1])``. All of them run inside ``jax.jit``:

- ``"independent"``: the batches as drawn (``i0 = i1 = arange(B)``); since the
  two batches are independent, this is an exact draw from :math:`a b^\top`.
- ``"exact"``: the exact OT plan of the batch (POT's ``ot.emd`` on the host
  through :func:`jax.pure_callback`; uniform weights give a permutation).
- ``"sinkhorn"``: OTT's Sinkhorn at a stated epsilon.
- ``"ra"`` / ``"oa"``: a fitted :class:`~ottsliced.SlicedInitializer` (RA-OT or
  OA-OT, fitted once on a few mini-batches by :func:`fit_flow_couplings`), then
  :func:`ottsliced.amortized_solve_batch` (prediction, two c-transforms and
  ``refine_iterations`` Sinkhorn iterations) gives ``(f, g)`` and the plan
  :math:`P_{ij}=\exp((f_i+g_j-C_{ij})/\varepsilon)` (OTT's
  ``transport_from_potentials``).

Pairs are drawn from the plan by ``sample``: ``"multinomial"`` draws one
target per source row, :math:`j\sim P_{i\cdot}/\sum_j P_{ij}` (every source
point is used once; the row conditional only depends on ``g``);
``"joint"`` draws ``B`` cells of the flattened plan with replacement
(torchcfm's ``OTPlanSampler``, the authors' protocol); ``"argmax"`` takes the
most likely target of each row.

The rest is the flow-matching pipeline of the paper's toy experiment: JAX
samplers for the 2-D toys, a flax velocity MLP, the conditional flow matching
loss (torchcfm's ``ConditionalFlowMatcher``), a training step that is one
``jax.jit`` function (batches, coupling, loss, gradient, AdamW update), an
Euler sampler, a jitted adaptive Dormand--Prince 5(4) solver and the metrics
(exact :math:`W_2`, normalised path energy, coupling time).
"""

import functools
import time
from typing import Any, Callable, Literal, NamedTuple, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

from ottsliced.initializer import SlicedInitializer
from ottsliced.objective import fit_oa
from ottsliced.problems import ProblemBatch
from ottsliced.regression import fit_ra
from ottsliced.solve import amortized_solve_batch

__all__ = [
  "COUPLINGS",
  "SAMPLE_MODES",
  "TOYS",
  "Coupling",
  "FlowCouplings",
  "ODESolution",
  "Pairing",
  "PathEnergy",
  "SampleMode",
  "TrainResult",
  "VelocityMLP",
  "cfm_loss",
  "coupling_time_ms",
  "couple",
  "dopri5",
  "draw_pairs",
  "euler_sample",
  "exact_permutation",
  "fit_flow_couplings",
  "make_train_step",
  "path_energy",
  "sample_toy",
  "train_flow",
  "trajectory",
  "w2_exact",
]

Coupling = Literal["independent", "exact", "sinkhorn", "ra", "oa"]
SampleMode = Literal["multinomial", "joint", "argmax"]
COUPLINGS: Tuple[str, ...] = ("independent", "exact", "sinkhorn", "ra", "oa")
SAMPLE_MODES: Tuple[str, ...] = ("multinomial", "joint", "argmax")
TOYS: Tuple[str, ...] = ("gaussian", "8gaussians", "moons", "scurve")


# --------------------------------------------------------------------------- toys
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


# --------------------------------------------------------------------------- couplings
class Pairing(NamedTuple):
  """Indices of the drawn pairs: the flow-matching pairs are ``(x0[i0], x1[i1])``.

  Attributes:
    i0: source indices ``[B]`` (int32).
    i1: target indices ``[B]`` (int32).
  """

  i0: jax.Array
  i1: jax.Array


def _emd_host(x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
  import ot

  x0, x1 = np.asarray(x0, np.float64), np.asarray(x1, np.float64)
  n = x0.shape[0]
  w = np.full(n, 1.0 / n)
  plan = ot.emd(w, w, ot.dist(x0, x1), numItermax=10_000_000)
  return np.argmax(plan, axis=1).astype(np.int32)


def exact_permutation(x0: jax.Array, x1: jax.Array) -> jax.Array:
  """The exact OT assignment ``perm [B]`` (``x0[i]`` goes to ``x1[perm[i]]``), jittable.

  Squared Euclidean cost, uniform weights, POT's ``ot.emd`` in float64 on the
  host through :func:`jax.pure_callback` (the plan of equal-size uniform
  measures is a permutation matrix, a vertex found by the network simplex).

  Args:
    x0: ``[B, d]`` source points.
    x1: ``[B, d]`` target points.

  Returns:
    ``[B]`` int32 permutation.
  """
  out = jax.ShapeDtypeStruct((x0.shape[0],), jnp.int32)
  return jax.pure_callback(_emd_host, out, x0, x1, vmap_method="sequential")


def _inverse_cdf(key: jax.Array, logits: jax.Array, num: int) -> jax.Array:
  """``num`` draws from ``softmax(logits)`` over the last axis of a 1-D ``logits`` (inverse CDF)."""
  cdf = jnp.cumsum(jax.nn.softmax(logits))
  u = jax.random.uniform(key, (num,), cdf.dtype) * cdf[-1]
  return jnp.minimum(jnp.searchsorted(cdf, u, side="right"), logits.shape[0] - 1)


def draw_pairs(key: jax.Array, f: jax.Array, g: jax.Array, cost: jax.Array, epsilon: Any, sample: str) -> Pairing:
  r"""``B`` pairs drawn from :math:`P=\exp((f\oplus g-C)/\varepsilon)`, jittable.

  Draws use the inverse CDF (one uniform per pair), not Gumbel noise on every
  cell of the plan.

  Args:
    key: PRNG key.
    f: ``[B]`` source potential (only used by ``"joint"``).
    g: ``[m]`` target potential.
    cost: ``[B, m]`` cost matrix.
    epsilon: entropic regularisation.
    sample: ``"multinomial"`` (one target per row, ``i0 = arange(B)``),
      ``"joint"`` (``B`` cells of the flattened plan, with replacement) or
      ``"argmax"`` (the most likely target of each row).

  Returns:
    :class:`Pairing`.
  """
  num, m = cost.shape
  rows = jnp.arange(num, dtype=jnp.int32)
  cond = (g[None, :] - cost) / epsilon  # row conditionals up to a per-row constant
  if sample == "argmax":
    return Pairing(rows, jnp.argmax(cond, axis=1).astype(jnp.int32))
  if sample == "multinomial":
    cdf = jnp.cumsum(jax.nn.softmax(cond, axis=1), axis=1)
    u = jax.random.uniform(key, (num, 1), cdf.dtype) * cdf[:, -1:]
    j = jnp.minimum(jnp.sum(cdf <= u, axis=1), m - 1)
    return Pairing(rows, j.astype(jnp.int32))
  flat = _inverse_cdf(key, (f[:, None] / epsilon + cond).reshape(-1), num)
  return Pairing((flat // m).astype(jnp.int32), (flat % m).astype(jnp.int32))


def _amortized_potentials(x0, x1, model, refine_iterations):
  n, m = x0.shape[0], x1.shape[0]
  a = jnp.full((1, n), 1.0 / n, x0.dtype)
  b = jnp.full((1, m), 1.0 / m, x1.dtype)
  batch = ProblemBatch(x0[None], x1[None], a, b, model.epsilon)
  out = amortized_solve_batch(batch, model, refine_iterations=refine_iterations)
  return out.f[0], out.g[0]


def _sinkhorn_potentials(x0, x1, epsilon, threshold, max_iterations):
  n, m = x0.shape[0], x1.shape[0]
  geom = pointcloud.PointCloud(x0, x1, epsilon=epsilon)
  prob = linear_problem.LinearProblem(geom, jnp.full(n, 1.0 / n, x0.dtype), jnp.full(m, 1.0 / m, x1.dtype))
  solver = sinkhorn.Sinkhorn(threshold=threshold, max_iterations=max_iterations, implicit_diff=None)
  out = solver(prob)
  return out.f, out.g


_STATIC = ("kind", "sample", "refine_iterations", "sinkhorn_max_iterations")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _couple(x0, x1, key, model, epsilon, kind, sample, refine_iterations, sinkhorn_threshold, sinkhorn_max_iterations):
  num = x0.shape[0]
  rows = jnp.arange(num, dtype=jnp.int32)
  if kind == "independent":
    return Pairing(rows, rows)
  if kind == "exact":
    perm = exact_permutation(x0, x1)
    if sample == "joint":
      i0 = jax.random.randint(key, (num,), 0, num).astype(jnp.int32)
      return Pairing(i0, perm[i0])
    return Pairing(rows, perm)
  if kind == "sinkhorn":
    f, g = _sinkhorn_potentials(x0, x1, epsilon, sinkhorn_threshold, sinkhorn_max_iterations)
  else:
    f, g = _amortized_potentials(x0, x1, model, refine_iterations)
    epsilon = model.epsilon
  cost = pointcloud.PointCloud(x0, x1, epsilon=epsilon).cost_matrix
  return draw_pairs(key, f, g, cost, epsilon, sample)


def couple(
  kind: Coupling,
  x0: jax.Array,
  x1: jax.Array,
  key: jax.Array,
  *,
  model: Optional[SlicedInitializer] = None,
  epsilon: Optional[float] = None,
  sample: SampleMode = "multinomial",
  refine_iterations: int = 1,
  sinkhorn_threshold: float = 1e-3,
  sinkhorn_max_iterations: int = 2000,
) -> Pairing:
  r"""Draw ``B`` pairs from a coupling of the batches ``x0``, ``x1`` (jit-compiled).

  Usable inside your own ``jax.jit`` (``kind``, ``sample`` and the iteration
  counts are static; ``model`` is a pytree argument, so a new ``alpha`` does
  not recompile). Squared Euclidean cost, uniform weights.

  Args:
    kind: ``"independent"``, ``"exact"``, ``"sinkhorn"``, ``"ra"`` or ``"oa"``.
    x0: source batch ``[B, d]``.
    x1: target batch ``[B, d]`` (same ``B``).
    key: PRNG key for the draw.
    model: the fitted :class:`~ottsliced.SlicedInitializer` (``"ra"``/``"oa"``;
      its fitted epsilon is used).
    epsilon: Sinkhorn's epsilon (``"sinkhorn"`` only; absolute, on the raw
      squared Euclidean cost).
    sample: ``"multinomial"`` (one draw per source row), ``"joint"`` (``B``
      draws from the flattened plan) or ``"argmax"``.
    refine_iterations: Sinkhorn iterations after the amortized prediction
      and its two c-transforms (``"ra"``/``"oa"``). The default 1 gives the
      row conditionals of the authors' final plan (two c-transforms, then
      row and column rescaling).
    sinkhorn_threshold: Sinkhorn's marginal-error threshold.
    sinkhorn_max_iterations: Sinkhorn's iteration cap.

  Returns:
    A :class:`Pairing` of ``[B]`` int32 index arrays. ``"multinomial"`` and
    ``"argmax"`` return ``i0 = arange(B)``; ``"exact"`` then returns the
    optimal permutation in ``i1``.
  """
  if kind not in COUPLINGS:
    raise ValueError(f"unknown coupling {kind!r}; choose one of {COUPLINGS}.")
  if sample not in SAMPLE_MODES:
    raise ValueError(f"unknown sample mode {sample!r}; choose one of {SAMPLE_MODES}.")
  if np.ndim(x0) != 2 or np.shape(x0) != np.shape(x1):
    raise ValueError(f"`x0` and `x1` must both be [B, d] with the same shape, got {np.shape(x0)} and {np.shape(x1)}.")
  if kind in ("ra", "oa"):
    if not isinstance(model, SlicedInitializer):
      raise ValueError(f"coupling {kind!r} needs `model`, a fitted SlicedInitializer (see fit_flow_couplings).")
    if model.dim != np.shape(x0)[1]:
      raise ValueError(f"`model` was fitted on d={model.dim} points, the batches have d={np.shape(x0)[1]}.")
  if kind == "sinkhorn" and (epsilon is None or not float(epsilon) > 0):
    raise ValueError(f"coupling 'sinkhorn' needs a positive `epsilon`, got {epsilon!r}.")
  if int(refine_iterations) < 0:
    raise ValueError(f"`refine_iterations` must be >= 0, got {refine_iterations}.")
  eps = 1.0 if epsilon is None else float(epsilon)
  model = model if kind in ("ra", "oa") else None
  return _couple(
    x0,
    x1,
    key,
    model,
    eps,
    kind,
    sample,
    int(refine_iterations),
    float(sinkhorn_threshold),
    int(sinkhorn_max_iterations),
  )


class FlowCouplings(NamedTuple):
  """The amortized couplings fitted on mini-batches.

  Attributes:
    ra: RA-OT model (ridge regression on Sinkhorn potentials).
    oa: OA-OT model (semi-dual maximisation).
    ra_seconds: RA-OT pre-training wall time (batches, ground truth, fit).
    oa_seconds: OA-OT pre-training wall time (batches, features, steps).
  """

  ra: Optional[SlicedInitializer]
  oa: Optional[SlicedInitializer]
  ra_seconds: float
  oa_seconds: float


def fit_flow_couplings(
  sample_source: Callable[[jax.Array, int], jax.Array],
  sample_target: Callable[[jax.Array, int], jax.Array],
  key: jax.Array,
  *,
  num_batches: int = 50,
  batch_size: int = 512,
  num_projections: int = 100,
  ra_epsilon: Optional[float] = 2.0,
  ridge: float = 1e-3,
  ra_threshold: float = 1e-5,
  oa_epsilon: Optional[float] = 0.1,
  oa_steps: int = 5000,
  oa_learning_rate: float = 1e-3,
  progress: bool = False,
) -> FlowCouplings:
  r"""Fit RA-OT and OA-OT once on ``num_batches`` independent mini-batch pairs.

  Each training pair is ``(x0, x1)`` with ``x0 = sample_source(key, B)`` and
  ``x1 = sample_target(key', B)``, uniform weights, squared Euclidean cost.

  Args:
    sample_source: ``(key, num) -> [num, d]``.
    sample_target: ``(key, num) -> [num, d]``.
    key: PRNG key (batches and directions).
    num_batches: ``M``.
    batch_size: ``B`` of the training pairs.
    num_projections: ``L``.
    ra_epsilon: RA-OT epsilon (``None``: skip RA-OT).
    ridge: RA-OT ridge :math:`\lambda`.
    ra_threshold: Sinkhorn threshold of the RA-OT ground truth.
    oa_epsilon: OA-OT epsilon (``None``: skip OA-OT).
    oa_steps: OA-OT steps ``T``.
    oa_learning_rate: OA-OT peak learning rate.
    progress: progress bars.

  Returns:
    :class:`FlowCouplings`.
  """
  if num_batches < 1 or batch_size < 1:
    raise ValueError(f"`num_batches` and `batch_size` must be >= 1, got {num_batches}, {batch_size}.")
  kb, kd = jax.random.split(key)
  t0 = time.perf_counter()

  @jax.jit
  def batches(k):
    keys = jax.random.split(k, 2 * num_batches)
    x = jax.vmap(lambda kk: sample_source(kk, batch_size))(keys[:num_batches])
    y = jax.vmap(lambda kk: sample_target(kk, batch_size))(keys[num_batches:])
    return x, y

  x, y = batches(kb)
  x, y = jax.block_until_ready((x, y))
  t_batches = time.perf_counter() - t0
  w = jnp.full((num_batches, batch_size), 1.0 / batch_size, x.dtype)
  ra = oa = None
  ra_s = oa_s = 0.0
  if ra_epsilon is not None:
    t0 = time.perf_counter()
    ra = fit_ra(
      ProblemBatch(x, y, w, w, ra_epsilon),
      num_projections=num_projections,
      ridge=ridge,
      rng=kd,
      threshold=ra_threshold,
      progress=progress,
    )
    ra_s = t_batches + time.perf_counter() - t0
  if oa_epsilon is not None:
    t0 = time.perf_counter()
    oa = fit_oa(
      ProblemBatch(x, y, w, w, oa_epsilon),
      num_projections=num_projections,
      steps=oa_steps,
      learning_rate=oa_learning_rate,
      rng=kd,
      progress=progress,
    )
    oa_s = t_batches + time.perf_counter() - t0
  return FlowCouplings(ra, oa, ra_s, oa_s)


# --------------------------------------------------------------------------- model and training
class VelocityMLP(nn.Module):
  """Velocity field ``v(x, t)``: MLP on ``concat(x, t)`` (torchcfm's ``MLP(dim, time_varying=True)``).

  Attributes:
    dim: output dimension ``d``.
    width: hidden width.
    depth: number of hidden layers.
  """

  dim: int = 2
  width: int = 64
  depth: int = 3

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array) -> jax.Array:
    """``x [N, d]``, ``t`` scalar or ``[N]`` -> ``[N, d]``."""
    t = jnp.broadcast_to(jnp.asarray(t, x.dtype).reshape(-1, 1), (x.shape[0], 1))
    h = jnp.concatenate([x, t], axis=1)
    for _ in range(self.depth):
      h = nn.selu(nn.Dense(self.width)(h))
    return nn.Dense(self.dim)(h)


def cfm_loss(params: Any, apply_fn: Callable, x0: jax.Array, x1: jax.Array, key: jax.Array, sigma: float) -> jax.Array:
  r"""Conditional flow matching loss (torchcfm's ``ConditionalFlowMatcher(sigma)``).

  :math:`t\sim U[0,1]`, :math:`x_t=(1-t)x_0+t x_1+\sigma\xi`, target
  :math:`u=x_1-x_0`; mean squared error over all entries.

  Args:
    params: network parameters.
    apply_fn: ``apply_fn(params, x [B, d], t [B]) -> [B, d]``.
    x0: paired source points ``[B, d]``.
    x1: paired target points ``[B, d]``.
    key: PRNG key (times and noise).
    sigma: path noise.

  Returns:
    Scalar loss.
  """
  kt, kn = jax.random.split(key)
  t = jax.random.uniform(kt, (x0.shape[0],), x0.dtype)
  xt = (1.0 - t[:, None]) * x0 + t[:, None] * x1 + sigma * jax.random.normal(kn, x0.shape, x0.dtype)
  return jnp.mean((apply_fn(params, xt, t) - (x1 - x0)) ** 2)


def make_train_step(
  kind: Coupling,
  sample_source: Callable[[jax.Array, int], jax.Array],
  sample_target: Callable[[jax.Array, int], jax.Array],
  apply_fn: Callable,
  optimizer: optax.GradientTransformation,
  *,
  batch_size: int = 512,
  sigma: float = 0.1,
  sample: SampleMode = "multinomial",
  sinkhorn_epsilon: Optional[float] = None,
  refine_iterations: int = 1,
  sinkhorn_threshold: float = 1e-3,
  sinkhorn_max_iterations: int = 2000,
) -> Callable:
  """One jit-compiled training step: batches, coupling, loss, gradient, update.

  The returned ``step(params, opt_state, key, step_index, model) -> (params,
  opt_state, loss)`` draws ``x0 [B, d]`` and ``x1 [B, d]`` from the keys
  ``fold_in(key, step_index)``, pairs them with :func:`couple`, and takes one
  optimizer step on :func:`cfm_loss`. ``model`` (a
  :class:`~ottsliced.SlicedInitializer` or ``None``) is a traced pytree: the
  function compiles once. ``step.num_traces()`` counts how many times it was
  traced.
  """
  if kind not in COUPLINGS:
    raise ValueError(f"unknown coupling {kind!r}; choose one of {COUPLINGS}.")
  if sample not in SAMPLE_MODES:
    raise ValueError(f"unknown sample mode {sample!r}; choose one of {SAMPLE_MODES}.")
  if kind == "sinkhorn" and (sinkhorn_epsilon is None or not sinkhorn_epsilon > 0):
    raise ValueError("coupling 'sinkhorn' needs a positive `sinkhorn_epsilon`.")
  traces = [0]
  eps = 1.0 if sinkhorn_epsilon is None else float(sinkhorn_epsilon)

  @jax.jit
  def step(params, opt_state, key, step_index, model):
    traces[0] += 1
    key = jax.random.fold_in(key, step_index)
    k0, k1, kc, kl = jax.random.split(key, 4)
    x0, x1 = sample_source(k0, batch_size), sample_target(k1, batch_size)
    pair = _couple(
      x0,
      x1,
      kc,
      model,
      eps,
      kind,
      sample,
      refine_iterations,
      sinkhorn_threshold,
      sinkhorn_max_iterations,
    )
    loss, grads = jax.value_and_grad(cfm_loss)(params, apply_fn, x0[pair.i0], x1[pair.i1], kl, sigma)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  step.num_traces = lambda: traces[0]
  return step


class TrainResult(NamedTuple):
  """Output of :func:`train_flow`.

  Attributes:
    params: trained network parameters.
    losses: ``[steps]`` training losses.
    seconds: training wall time (compilation included).
    num_traces: how many times the step was traced (1 expected).
  """

  params: Any
  losses: np.ndarray
  seconds: float
  num_traces: int


def train_flow(
  kind: Coupling,
  sample_source: Callable[[jax.Array, int], jax.Array],
  sample_target: Callable[[jax.Array, int], jax.Array],
  key: jax.Array,
  *,
  steps: int = 20_000,
  batch_size: int = 512,
  sigma: float = 0.1,
  learning_rate: float = 1e-3,
  weight_decay: float = 1e-5,
  width: int = 64,
  depth: int = 3,
  model: Optional[SlicedInitializer] = None,
  sample: SampleMode = "multinomial",
  sinkhorn_epsilon: Optional[float] = None,
  refine_iterations: int = 1,
  sinkhorn_threshold: float = 1e-3,
  sinkhorn_max_iterations: int = 2000,
  progress: bool = False,
) -> TrainResult:
  """Train a :class:`VelocityMLP` by conditional flow matching with coupling ``kind``.

  AdamW (``learning_rate``, ``weight_decay``), ``steps`` calls of the jitted
  :func:`make_train_step`. Returns a :class:`TrainResult`.
  """
  if steps < 1 or batch_size < 1:
    raise ValueError(f"`steps` and `batch_size` must be >= 1, got {steps}, {batch_size}.")
  if kind in ("ra", "oa") and not isinstance(model, SlicedInitializer):
    raise ValueError(f"coupling {kind!r} needs `model`, a fitted SlicedInitializer.")
  t0 = time.perf_counter()
  kinit, ktrain = jax.random.split(key)
  dim = sample_source(kinit, 1).shape[-1]
  net = VelocityMLP(dim=dim, width=width, depth=depth)
  params = net.init(kinit, jnp.zeros((1, dim)), jnp.zeros((1,)))
  optimizer = optax.adamw(learning_rate, weight_decay=weight_decay)
  opt_state = optimizer.init(params)
  step = make_train_step(
    kind,
    sample_source,
    sample_target,
    net.apply,
    optimizer,
    batch_size=batch_size,
    sigma=sigma,
    sample=sample,
    sinkhorn_epsilon=sinkhorn_epsilon,
    refine_iterations=refine_iterations,
    sinkhorn_threshold=sinkhorn_threshold,
    sinkhorn_max_iterations=sinkhorn_max_iterations,
  )
  model = model if kind in ("ra", "oa") else None
  losses = []
  it = range(steps)
  if progress:
    from tqdm.auto import tqdm

    it = tqdm(it, desc=f"CFM {kind}", unit="step", mininterval=1.0)
  for k in it:
    params, opt_state, loss = step(params, opt_state, ktrain, k, model)
    losses.append(loss)
  losses = np.asarray(jax.block_until_ready(jnp.stack(losses)))
  return TrainResult(params, losses, time.perf_counter() - t0, step.num_traces())


# --------------------------------------------------------------------------- sampling
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


class PathEnergy(NamedTuple):
  r"""Normalised path energy of generated trajectories (method.md §9.4).

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


def coupling_time_ms(
  kind: Coupling,
  x0: jax.Array,
  x1: jax.Array,
  key: jax.Array,
  *,
  repeats: int = 10,
  **couple_kwargs: Any,
) -> float:
  """Median wall time (ms) of :func:`couple` on ``x0``, ``x1``, after a warm-up call.

  Each call gets a fresh key and is synchronised with ``block_until_ready``.
  """
  if repeats < 1:
    raise ValueError(f"`repeats` must be >= 1, got {repeats}.")
  jax.block_until_ready(couple(kind, x0, x1, key, **couple_kwargs))
  times = []
  for r in range(repeats):
    k = jax.random.fold_in(key, r)
    t0 = time.perf_counter()
    jax.block_until_ready(couple(kind, x0, x1, k, **couple_kwargs))
    times.append(time.perf_counter() - t0)
  return 1e3 * float(np.median(times))
