"""The solver benchmark: wall time to a marginal tolerance, ottsliced against OTT at its best, GeomLoss and POT.

One suite per YAML file (``configs/solvers_*.yaml``), run by ``ottsliced bench
configs/solvers_<suite>.yaml``; it writes ``metrics.json``, ``table.md`` and a
figure, from which the README and ``docs/`` tables are regenerated
(``python -m ottsliced.experiments.report``).

Protocol, for every case (a data set, its size, epsilon) and tolerance:

- **Metric**: wall time of one solve to an L1 marginal error (rows + columns of
  the returned potentials' plan, recomputed in float64 on the host) at most
  the tolerance, jit-compiled, ``block_until_ready``; compile time is the
  first call's excess over the median and is reported separately (with
  ``compile_workers`` > 1 the methods compile concurrently first, and each
  compile time also holds the wait for the others: an upper bound). Medians
  over repeats, then the median and quartiles over the pairs.
- **Side by side**: every repeat runs every pair with every method, the
  method order rotated from pair to pair, so a slow spell of the machine
  touches all of them.
- **Baselines as users run them**: OTT's ``Sinkhorn`` with its default
  (``inner_iterations=10``), Anderson acceleration, momentum, the Gaussian
  initializer, and epsilon scaling (``Epsilon(target, init, decay)``, a small
  grid, with and without Anderson), each with ``threshold`` = the tolerance;
  the fastest OTT configuration that meets the tolerance on every pair is
  named per case. GeomLoss (``SamplesLoss("sinkhorn")``, its own epsilon
  scaling, tensorized, CPU torch) and POT (``ot.sinkhorn(method="sinkhorn_log")``
  and ``sinkhorn_epsilon_scaling``) run where installed (``pip install
  ottsliced[bench]``), their accuracy knob (GeomLoss's ``scaling``, POT's
  ``stopThr``) taken from a grid: the fastest setting that meets the tolerance.
- **Accuracy**: besides the marginal error, the relative error of the
  transport cost :math:`\\langle C,P\\rangle` against a reference solved to
  ``reference_threshold`` in float64.
- **ottsliced**: :class:`~ottsliced.SlicedSinkhorn` with no argument but the
  threshold (nothing tuned per case), and, where ``amortized`` is set, the
  same solver warm-started by an RA-OT model fitted on other pairs of the same
  data (fit time reported, not included).
"""

import concurrent.futures
import dataclasses
import functools
import math
import os
import statistics
import time
from typing import Any, Callable, Dict, List, Literal, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import epsilon_scheduler, pointcloud
from ott.initializers.linear import initializers
from ott.problems.linear import linear_problem
from ott.solvers.linear import acceleration, sinkhorn

from ottsliced.experiments.timing import device_name
from ottsliced.fitting.regression import fit_ra
from ottsliced.problems.batch import ProblemBatch
from ottsliced.solvers.sliced_sinkhorn import SlicedSinkhorn

__all__ = [
  "CaseConfig",
  "Config",
  "OTTConfig",
  "PeersConfig",
  "compiled_solve",
  "format_scaling",
  "format_summary",
  "format_table",
  "program_megabytes",
  "run",
]

DATA = ("gmm", "mnist", "multires", "color", "sphere", "flow", "tabular", "photos")


@dataclasses.dataclass(frozen=True)
class CaseConfig:
  """One benchmark case: a data set at one size and one epsilon.

  Attributes:
    data: ``gmm`` (Gaussian mixtures, ``n`` atoms in dimension ``d``), ``mnist``
      (``n`` = image side), ``multires`` (28/20/14 grids, cross-resolution),
      ``color`` (``n``-colour palettes), ``sphere`` (100 x ``n``, geodesic
      cost), ``flow`` (batches of ``n``, Gaussian to 8 Gaussians), ``tabular``
      (classes of scikit-learn's ``name`` data set), ``photos`` (scikit-image
      photos as grey-level histograms on ``n x n`` grids).
    n: size (see ``data``).
    d: dimension (``gmm``).
    name: data set name (``tabular``).
    epsilon: the regularisation; with ``relative``, times the mean of the cost matrix (OTT's default is 0.05).
    relative: read ``epsilon`` relative to the mean cost.
    pairs: problems timed.
    seed: first seed of the pairs.
    online: OTT's online ``PointCloud`` (``batch_size=online``; 0: dense).
  """

  data: Literal["gmm", "mnist", "multires", "color", "sphere", "flow", "tabular", "photos"]
  n: int = 0
  d: int = 0
  name: str = ""
  epsilon: float = 0.05
  relative: bool = True
  pairs: int = 3
  seed: int = 0
  online: int = 0

  def label(self) -> str:
    """A short name for tables, e.g. ``gmm n=1000 d=3 eps=1e-3*mean``."""
    size = {
      "gmm": f"n={self.n} d={self.d}",
      "mnist": f"{self.n}x{self.n}",
      "multires": "28/20/14",
      "color": f"{self.n} colours",
      "sphere": f"100x{self.n}",
      "flow": f"B={self.n}",
      "tabular": self.name,
      "photos": f"{self.n}x{self.n}",
    }[self.data]
    eps = f"{self.epsilon:g}*mean" if self.relative else f"{self.epsilon:g}"
    return f"{self.data} {size} eps={eps}" + (" online" if self.online else "")


@dataclasses.dataclass(frozen=True)
class OTTConfig:
  """OTT's configurations, as users set them: each one is a baseline, the fastest is named per case."""

  anderson: Tuple[int, ...] = (2, 5)
  momentum: Tuple[float, ...] = (1.5,)
  gaussian: bool = True
  epsilon_scaling: Tuple[Tuple[float, float], ...] = ((10.0, 0.9), (100.0, 0.9), (100.0, 0.95), (1000.0, 0.9))
  epsilon_scaling_anderson: int = 2


@dataclasses.dataclass(frozen=True)
class PeersConfig:
  """GeomLoss and POT, where installed; each accuracy knob is a grid, the fastest setting meeting the tolerance."""

  geomloss_scaling: Tuple[float, ...] = (0.9, 0.95, 0.99, 0.995)
  pot_stop_factors: Tuple[float, ...] = (1.0, 0.3, 0.1)
  # POT's sinkhorn_epsilon_scaling: off by default; called as below it did not converge on MNIST 28x28 at
  # epsilon = 1e-2 (marginal error 2 after 20,000 iterations, minutes per call).
  pot_epsilon_scaling: bool = False
  pot_max_entries: int = 4_000_000


@dataclasses.dataclass(frozen=True)
class Config:
  """A suite: its cases (listed, or ``grid_*`` expanded as a product), tolerances and methods."""

  suite: str
  tolerances: Tuple[float, ...]
  cases: Tuple[CaseConfig, ...] = ()
  grid_data: str = ""
  grid_n: Tuple[int, ...] = ()
  grid_d: Tuple[int, ...] = ()
  grid_epsilon: Tuple[float, ...] = ()
  grid_pairs: int = 3
  ott: OTTConfig = OTTConfig()
  peers: Optional[PeersConfig] = PeersConfig()
  amortized_train_pairs: int = 0
  repeats: int = 3
  max_iterations: int = 20_000
  time_limit_s: float = 30.0
  reference_threshold: float = 1e-6
  slack: float = 1.1
  figure: bool = True
  memory: bool = False  # also each jitted method's XLA buffer size (arguments, outputs, temporaries), in MB
  compile_workers: int = 1  # > 1: compile a case's methods in that many threads first (a many-core GPU host)

  def __post_init__(self):
    if not self.tolerances or any(t <= 0 for t in self.tolerances):
      raise ValueError("`tolerances` must be positive numbers")
    if self.repeats < 1 or self.max_iterations < 1 or self.time_limit_s <= 0 or self.compile_workers < 1:
      raise ValueError("`repeats`, `max_iterations`, `time_limit_s` and `compile_workers` must be positive")
    if not self.all_cases():
      raise ValueError("no case: give `cases` or `grid_data` with `grid_n`")
    if self.grid_data and self.grid_data not in DATA:
      raise ValueError(f"`grid_data` must be one of {DATA}, got {self.grid_data!r}")

  def all_cases(self) -> Tuple[CaseConfig, ...]:
    """``cases``, then the product ``grid_n x grid_d x grid_epsilon`` of ``grid_data``."""
    grid = ()
    if self.grid_data:
      grid = tuple(
        CaseConfig(self.grid_data, n=n, d=d, epsilon=e, pairs=self.grid_pairs)
        for n in self.grid_n
        for d in (self.grid_d or (0,))
        for e in (self.grid_epsilon or (0.05,))
      )
    return tuple(self.cases) + grid


# ------------------------------------------------------------------------------------------------ problems


class Pair(NamedTuple):
  """One problem: points, weights, epsilon and the cost function (``None``: squared Euclidean)."""

  x: np.ndarray
  y: np.ndarray
  a: np.ndarray
  b: np.ndarray
  epsilon: float
  cost_fn: Any = None


def _from_batch(batch: ProblemBatch, count: int) -> List[Tuple[np.ndarray, ...]]:
  out = []
  for i in range(count):
    x, y = batch.points(i)
    out.append((np.asarray(x), np.asarray(y), np.asarray(batch.a[i]), np.asarray(batch.b[i])))
  return out


def _raw_pairs(case: CaseConfig, count: int, seed: int):
  """``count`` problems ``(x, y, a, b)`` of the case, from ``seed``; and the cost function."""
  from ottsliced import data

  if case.data == "gmm":
    return [data.clouds.gaussian_mixture_pair(seed + i, case.n, case.d) for i in range(count)], None
  if case.data == "tabular":
    return data.clouds.tabular_class_pairs(case.name, count, seed=seed), None
  if case.data == "flow":
    out = []
    for i in range(count):
      kx, ky = jax.random.split(jax.random.key(seed + i))
      x = np.asarray(data.toys.sample_toy("gaussian", kx, case.n), np.float32)
      y = np.asarray(data.toys.sample_toy("8gaussians", ky, case.n), np.float32)
      w = np.full(case.n, 1.0 / case.n, np.float32)
      out.append((x, y, w, w))
    return out, None
  if case.data == "mnist":
    batch = data.image_pairs(data.load_mnist(), count, epsilon=1.0, seed=seed, size=case.n)
    return _from_batch(batch, count), None
  if case.data == "photos":
    return _photo_pairs(case.n, count, seed), None
  if case.data == "multires":
    batch = data.multires_pairs(data.load_mnist(), count, epsilon=1.0, seed=seed).batch
    return _from_batch(batch, count), None
  if case.data == "color":
    crops = data.color.random_crops(data.color.load_images(), 2 * count, 128, seed=seed)
    palettes = [data.color.palette(c, case.n, seed=seed) for c in crops]
    batch = data.color.palette_pairs(palettes, count, epsilon=1.0, seed=seed).batch
    return _from_batch(batch, count), None
  if case.data == "sphere":
    batch = data.sphere.supply_demand_pairs(count, num_supply=100, num_demand=case.n, epsilon=1.0, seed=seed).batch
    return _from_batch(batch, count), batch.cost_fn
  raise ValueError(f"unknown data {case.data!r}")


def _photo_pairs(side: int, count: int, seed: int) -> List[Tuple[np.ndarray, ...]]:
  """Grey-level histograms of random crops of scikit-image's photos on a ``side x side`` grid (dense images)."""
  from ottsliced import data

  images = list(data.color.load_images().values())
  rs = np.random.default_rng(seed)
  grid = data.grid_points(side).astype(np.float32)
  out = []
  for _ in range(count):
    ws = []
    for _ in range(2):
      img = images[rs.integers(len(images))]
      grey = img[..., :3].mean(-1) if img.ndim == 3 else img
      h, w = grey.shape
      c = int(min(h, w) * rs.uniform(0.3, 0.6))
      top, left = rs.integers(h - c + 1), rs.integers(w - c + 1)
      crop = grey[top : top + c, left : left + c].astype(np.float64)
      idx = (np.arange(side) * c / side).astype(int)
      small = crop[np.ix_(idx, idx)] + 1e-3 * crop.max()
      ws.append((small / small.sum()).reshape(-1).astype(np.float32))
    out.append((grid, grid, ws[0], ws[1]))
  return out


def _mean_cost(x: np.ndarray, y: np.ndarray, cost_fn: Any) -> float:
  geom = pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y), cost_fn=cost_fn)
  return float(jnp.mean(geom.cost_matrix))


def make_pairs(case: CaseConfig, count: int, seed: int) -> List[Pair]:
  """The case's problems with their epsilon (relative: per pair, times the mean of its cost matrix)."""
  raw, cost_fn = _raw_pairs(case, count, seed)
  out = []
  for x, y, a, b in raw:
    eps = case.epsilon * (_mean_cost(x, y, cost_fn) if case.relative else 1.0)
    out.append(Pair(x, y, a, b, float(eps), cost_fn))
  return out


def _cost_matrix(pair: Pair) -> np.ndarray:
  """The cost in float64 on the host (the errors are measured with it)."""
  with jax.enable_x64(True):
    geom = pointcloud.PointCloud(
      jnp.asarray(pair.x, jnp.float64), jnp.asarray(pair.y, jnp.float64), cost_fn=pair.cost_fn
    )
    return np.asarray(geom.cost_matrix)


def marginal_error(cost: np.ndarray, pair: Pair, f: np.ndarray, g: np.ndarray) -> Tuple[float, float]:
  """``(rows + columns L1 error, <C, P>)`` of :math:`P=e^{(f\\oplus g-C)/\\varepsilon}` in float64."""
  f, g = np.asarray(f, np.float64), np.asarray(g, np.float64)
  with np.errstate(invalid="ignore", over="ignore"):
    z = (f[:, None] + g[None, :] - cost) / pair.epsilon
    plan = np.exp(np.where(np.isfinite(z), z, -np.inf))
  err = np.abs(plan.sum(1) - pair.a).sum() + np.abs(plan.sum(0) - pair.b).sum()
  return float(err), float(np.sum(plan * cost))


# ------------------------------------------------------------------------------------------------ methods


class Method(NamedTuple):
  """A way to solve a pair: ``solve(pair, tol, device_args) -> (f, g, iterations)`` (on device, jitted)."""

  name: str
  family: str  # "ours", "ott", "geomloss", "pot"
  prepare: Callable[[Pair], Any]  # host arrays -> arguments (device arrays), outside the timing
  solve: Callable[..., Any]


def _geometry(x, y, eps, cost_fn, online):
  kw = {"cost_fn": cost_fn} if cost_fn is not None else {}
  return pointcloud.PointCloud(x, y, epsilon=eps, batch_size=online or None, **kw)


def _device_args(pair: Pair) -> Tuple[Any, ...]:
  return tuple(jnp.asarray(v) for v in (pair.x, pair.y, pair.a, pair.b)) + (jnp.asarray(pair.epsilon, jnp.float32),)


def _ott_method(name: str, kwargs: Dict[str, Any], scaling: Optional[Tuple[float, float]], cost_fn, online, limit):
  @jax.jit
  def solve(x, y, a, b, eps, tol):
    epsilon = eps if scaling is None else epsilon_scheduler.Epsilon(eps, init=scaling[0], decay=scaling[1])
    prob = linear_problem.LinearProblem(_geometry(x, y, epsilon, cost_fn, online), a, b)
    out = sinkhorn.Sinkhorn(threshold=tol, max_iterations=limit, **kwargs)(prob)
    return out.f, out.g, out.n_iters

  return Method(name, "ott", _device_args, solve)


def _ours_method(name: str, cost_fn, online, limit, model=None):
  solver = SlicedSinkhorn(max_iterations=limit) if model is None else SlicedSinkhorn.from_initializer(model)
  solver = solver.replace(max_iterations=limit)

  @jax.jit
  def solve(solver, x, y, a, b, eps, tol):
    prob = linear_problem.LinearProblem(_geometry(x, y, eps, cost_fn, online), a, b)
    out = solver.replace(threshold=tol)(prob)
    return out.f, out.g, out.n_iters

  return Method(name, "ours", _device_args, functools.partial(solve, solver))


def ott_methods(cfg: OTTConfig, case: CaseConfig, cost_fn: Any, limit: int) -> List[Method]:
  """OTT's baselines for a case, as users configure them."""
  online = case.online
  methods = [_ott_method("OTT default", {}, None, cost_fn, online, limit)]
  for m in cfg.anderson:
    methods.append(
      _ott_method(
        f"OTT Anderson (m={m})", {"anderson": acceleration.AndersonAcceleration(memory=m)}, None, cost_fn, online, limit
      )
    )
  for v in cfg.momentum:
    methods.append(
      _ott_method(f"OTT momentum ({v:g})", {"momentum": acceleration.Momentum(value=v)}, None, cost_fn, online, limit)
    )
  if cfg.gaussian and cost_fn is None:
    ini = {"initializer": initializers.GaussianInitializer()}
    methods.append(_ott_method("OTT Gaussian init", ini, None, cost_fn, online, limit))
  for init, decay in cfg.epsilon_scaling:
    label = f"OTT eps-scaling ({init:g}, {decay:g})"
    methods.append(_ott_method(label, {}, (init, decay), cost_fn, online, limit))
    if cfg.epsilon_scaling_anderson:
      m = cfg.epsilon_scaling_anderson
      kw = {"anderson": acceleration.AndersonAcceleration(memory=m)}
      methods.append(_ott_method(f"{label} + Anderson (m={m})", kw, (init, decay), cost_fn, online, limit))
  return methods


def _geomloss_method(scaling: float):
  import torch
  from geomloss import SamplesLoss

  # On a machine whose JAX runs on a GPU, GeomLoss runs on torch's GPU too (when torch sees one): like for like.
  on_gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
  device = torch.device("cuda" if on_gpu else "cpu")

  def prepare(pair: Pair):
    t = lambda v: torch.as_tensor(np.array(v, np.float32), device=device)  # noqa: E731  (a copy: writable)
    return t(pair.x), t(pair.y), t(pair.a), t(pair.b), pair.epsilon

  def solve(x, y, a, b, eps, tol):
    # GeomLoss's cost for p = 2 is |x - y|^2 / 2 and its epsilon blur^2: the same plan at blur = sqrt(eps / 2).
    loss = SamplesLoss(
      "sinkhorn", p=2, blur=math.sqrt(eps / 2.0), scaling=scaling, debias=False, potentials=True, backend="tensorized"
    )
    f, g = loss(a, x, b, y)
    f, g = (2.0 * v.cpu().numpy().reshape(-1).astype(np.float64) for v in (f, g))  # .cpu() waits for the GPU
    a, b = a.cpu().numpy(), b.cpu().numpy()
    with np.errstate(divide="ignore"):
      return f + eps * np.log(a), g + eps * np.log(b), -1

  return Method(f"GeomLoss (scaling {scaling:g})", "geomloss", prepare, solve)


def _pot_method(kind: str, factor: float, limit: int):
  import ot

  def prepare(pair: Pair):
    return (
      pair.x.astype(np.float64),
      pair.y.astype(np.float64),
      pair.a.astype(np.float64),
      pair.b.astype(np.float64),
      pair.epsilon,
    )

  def solve(x, y, a, b, eps, tol):
    cost = ot.dist(x, y)  # squared Euclidean
    if kind == "log":
      _, log = ot.sinkhorn(a, b, cost, eps, method="sinkhorn_log", stopThr=factor * tol, numItermax=limit, log=True)
      return log["log_u"] * eps, log["log_v"] * eps, log.get("niter", -1)
    _, log = ot.bregman.sinkhorn_epsilon_scaling(a, b, cost, eps, stopThr=factor * tol, numItermax=limit, log=True)
    return log["alpha"], log["beta"], log.get("niter", -1)  # P = exp((alpha + beta - C) / eps)

  label = "POT sinkhorn_log" if kind == "log" else "POT epsilon scaling"
  return Method(f"{label} (stopThr {factor:g} tol)", "pot", prepare, solve)


def peer_methods(cfg: Optional[PeersConfig], case: CaseConfig, cost_fn: Any, limit: int) -> List[Method]:
  """GeomLoss and POT methods where installed and applicable (squared Euclidean, dense)."""
  if cfg is None or cost_fn is not None or case.online:
    return []
  methods = []
  try:
    import geomloss  # noqa: F401
    import torch  # noqa: F401

    methods += [_geomloss_method(s) for s in cfg.geomloss_scaling]
  except ImportError:
    pass
  try:
    import ot  # noqa: F401

    for kind in ("log", "scaling") if cfg.pot_epsilon_scaling else ("log",):
      methods += [_pot_method(kind, f, limit) for f in cfg.pot_stop_factors]
  except ImportError:
    pass
  return methods


# ------------------------------------------------------------------------------------------------ timing


def _call(method: Method, args: Tuple[Any, ...], tol: float):
  t0 = time.perf_counter()
  out = method.solve(*args, tol) if method.family in ("geomloss", "pot") else method.solve(*args, jnp.float32(tol))
  out = jax.block_until_ready(out)
  return time.perf_counter() - t0, out


def compiled_solve(method: Method, args: Tuple[Any, ...], tol: float) -> Any:
  """A jitted method's solve compiled for ``args`` (``prepare``'s) and ``tol``: JAX's ``Compiled``.

  For inspection (``as_text``, ``memory_analysis``); a solve bound with
  ``functools.partial`` (ours: the solver) takes the bound arguments first
  when the result is called.
  """
  fn, bound = method.solve, ()
  if isinstance(fn, functools.partial):
    fn, bound = fn.func, fn.args
  return fn.lower(*bound, *args, jnp.float32(tol)).compile()


def program_megabytes(method: Method, args: Tuple[Any, ...], tol: float) -> float:
  """The XLA buffers of a jitted method's compiled solve (arguments, outputs, temporaries), in MB.

  What the compiler allocates for one call, read from the compiled program
  (``memory_analysis``) rather than sampled while it runs: the same on every
  machine with the same backend, and the quantity an online geometry keeps
  linear in ``n``.
  """
  stats = compiled_solve(method, args, tol).memory_analysis()
  total = stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
  return (total - stats.alias_size_in_bytes) / 2**20


def _reference(pair: Pair, threshold: float) -> float:
  """The transport cost of the pair solved to ``threshold`` in float64."""
  with jax.enable_x64(True):
    args = [jnp.asarray(v, jnp.float64) for v in (pair.x, pair.y, pair.a, pair.b)]
    prob = linear_problem.LinearProblem(_geometry(*args[:2], pair.epsilon, pair.cost_fn, 0), *args[2:])
    out = SlicedSinkhorn(threshold=threshold, max_iterations=20_000)(prob)
    _, cost = marginal_error(_cost_matrix(pair), pair, out.f, out.g)
  return cost


def _solve_times(method: Method, first_s: List[float]) -> List[float]:
  """The first calls' times without compilation: a jitted method's first one compiled it (unless warmed)."""
  return first_s[1:] if method.family in ("ours", "ott") else first_s


def bench_case(
  case: CaseConfig,
  config: Config,
  tol: float,
  methods: List[Method],
  pairs: List[Pair],
  references: List[float],
  progress: bool,
) -> Dict[str, Any]:
  """Every method on every pair at ``tol``, side by side; per-method medians and checks."""
  costs = [_cost_matrix(p) for p in pairs]
  args = {(m.name, i): m.prepare(p) for m in methods for i, p in enumerate(pairs)}
  results: Dict[str, Dict[str, Any]] = {
    m.name: {"first_s": [], "s": [[] for _ in pairs], "iterations": [], "error": [], "cost_rel_error": []}
    for m in methods
  }
  jitted = [m for m in methods if m.family in ("ours", "ott")]
  if config.compile_workers > 1 and jitted:  # compile concurrently (XLA releases the GIL); times are upper bounds
    with concurrent.futures.ThreadPoolExecutor(config.compile_workers) as pool:
      warm = list(pool.map(lambda m: _call(m, args[(m.name, 0)], tol)[0], jitted))
    for m, seconds in zip(jitted, warm):
      results[m.name]["warm_s"] = seconds
  skipped = set()
  # The JAX solvers (ours, OTT) run all their calls first, then the peers (GeomLoss, POT) theirs: interleaved, the
  # peers' thread pools (torch, BLAS) kept spinning after a call and slowed the next JAX solve up to 5x on 2 cores
  # (wine: ours 0.48 -> 2.36 ms, OTT default 0.44 -> 0.97 ms).
  for block in (("ours", "ott"), ("geomloss", "pot")):
    members = [m for m in methods if m.family in block]
    for i, pair in enumerate(pairs):  # first calls: compile (jitted methods), check accuracy, enforce the time limit
      for m in members:
        if m.name in skipped:
          continue
        first, out = _call(m, args[(m.name, i)], tol)
        err, cost = marginal_error(costs[i], pair, out[0], out[1])
        r = results[m.name]
        r["first_s"].append(first)
        r["iterations"].append(int(out[2]))
        r["error"].append(err)
        r["cost_rel_error"].append(abs(cost - references[i]) / max(abs(references[i]), 1e-30))
        if first > config.time_limit_s:  # too slow here: not timed further (a slow peer: its whole family)
          skipped.update(
            k.name for k in methods if k.name == m.name or (m.family in ("pot", "geomloss") and k.family == m.family)
          )
    # Solves slower than a second are timed once more, not `repeats` times: their noise is small relative to them.
    # A jitted method's first call on the first pair holds its compile time, which does not count here.
    slow = {m.name for m in members if max(_solve_times(m, results[m.name]["first_s"]), default=0.0) > 1.0}
    for rep in range(config.repeats):
      for i in range(len(pairs)):
        order = [m for m in members if m.name not in skipped and (rep == 0 or m.name not in slow)]
        shift = (i + rep) % max(len(order), 1)
        for m in order[shift:] + order[:shift]:
          seconds, _ = _call(m, args[(m.name, i)], tol)
          results[m.name]["s"][i].append(seconds)
  out = {}
  for m in methods:
    r = results[m.name]
    complete = m.name not in skipped and all(r["s"])
    per_pair = [statistics.median(s) for s in r["s"]] if complete else []
    steady = statistics.median(per_pair) if per_pair else float("nan")
    out[m.name] = {
      "family": m.family,
      "complete": complete,
      "ms": 1e3 * steady,
      "ms_q25": 1e3 * float(np.percentile(per_pair, 25)) if per_pair else float("nan"),
      "ms_q75": 1e3 * float(np.percentile(per_pair, 75)) if per_pair else float("nan"),
      "compile_s": max(0.0, r.get("warm_s", r["first_s"][0]) - per_pair[0]) if per_pair else float("nan"),
      "iterations": float(np.median(r["iterations"])) if r["iterations"] else float("nan"),
      "error_max": max(r["error"]) if r["error"] else float("nan"),
      "cost_rel_error_max": max(r["cost_rel_error"]) if r["cost_rel_error"] else float("nan"),
      "met": complete and bool(np.all(np.asarray(r["error"]) <= config.slack * tol)),
    }
  return out


def _fastest(rows: Dict[str, Dict[str, Any]], family: str) -> Optional[str]:
  met = [(v["ms"], k) for k, v in rows.items() if v["family"] == family and v["met"]]
  return min(met)[1] if met else None


def _amortized_model(case: CaseConfig, config: Config, cost_fn: Any):
  """An RA-OT model fitted on ``amortized_train_pairs`` other pairs of the case (seeds after the timed ones)."""
  train = make_pairs(case, config.amortized_train_pairs, case.seed + 1000)
  problems = [
    linear_problem.LinearProblem(
      _geometry(jnp.asarray(p.x), jnp.asarray(p.y), p.epsilon, cost_fn, 0), jnp.asarray(p.a), jnp.asarray(p.b)
    )
    for p in train
  ]
  t0 = time.perf_counter()
  model = fit_ra(ProblemBatch.from_problems(problems), num_projections=16, progress=False)
  return model, time.perf_counter() - t0


def run(config: Config, out_dir: str, progress: bool = True) -> Dict[str, Any]:
  """Run every case of the suite; the metrics (also written by the runner) and the figure."""
  cases_out = []
  for case in config.all_cases():
    pairs = make_pairs(case, case.pairs, case.seed)
    cost_fn = pairs[0].cost_fn
    limit = config.max_iterations
    methods = [_ours_method("ottsliced", cost_fn, case.online, limit)]
    fit_s = None
    if config.amortized_train_pairs and pairs[0].epsilon == pairs[-1].epsilon and len({p.x.shape for p in pairs}) == 1:
      model, fit_s = _amortized_model(case, config, cost_fn)
      methods.append(_ours_method("ottsliced + RA-OT model", cost_fn, case.online, limit, model))
    methods += ott_methods(config.ott, case, cost_fn, limit)
    methods += peer_methods(config.peers, case, cost_fn, limit)
    references = [_reference(p, config.reference_threshold) for p in pairs]
    megabytes = {}
    if config.memory:
      megabytes = {
        m.name: program_megabytes(m, m.prepare(pairs[0]), config.tolerances[0])
        for m in methods
        if m.family in ("ours", "ott")
      }
    per_tol = {}
    for tol in config.tolerances:
      rows = bench_case(case, config, tol, methods, pairs, references, progress)
      for name, mb in megabytes.items():
        rows[name]["memory_mb"] = mb
      best = _fastest(rows, "ott")
      ours = rows["ottsliced"]
      per_tol[str(tol)] = {
        "methods": rows,
        "best_ott": best,
        "best_geomloss": _fastest(rows, "geomloss"),
        "best_pot": _fastest(rows, "pot"),
        "ratio_to_best_ott": ours["ms"] / rows[best]["ms"] if best and ours["met"] else float("nan"),
        "ratio_to_ott_default": ours["ms"] / rows["OTT default"]["ms"]
        if ours["met"] and rows["OTT default"]["met"]
        else float("nan"),
      }
      if progress:
        best_ms = rows[best]["ms"] if best else float("nan")
        print(
          f"{case.label()} tol={tol:g}: ottsliced {ours['ms']:.2f} ms, best OTT {best} {best_ms:.2f} ms", flush=True
        )
    cases_out.append({"case": dataclasses.asdict(case), "label": case.label(), "fit_s": fit_s, "tolerances": per_tol})
    _write_partial(out_dir, config, cases_out)
  metrics = {"suite": config.suite, "device": device_name(), "jax": jax.__version__, "cases": cases_out, "figures": {}}
  if config.figure:
    metrics["figures"]["ratios"] = _figure(metrics, out_dir)
    if len({c["case"]["n"] for c in cases_out}) > 2:
      metrics["figures"]["scaling"] = _scaling_figure(metrics, out_dir)
  return metrics


def _write_partial(out_dir: str, config: Config, cases: List[Dict[str, Any]]) -> None:
  """The cases done so far, as ``partial.json`` (a long suite can be inspected while it runs)."""
  import json

  from ottsliced.experiments import _jsonable

  with open(os.path.join(out_dir, "partial.json"), "w") as fh:
    partial = {"suite": config.suite, "device": device_name(), "jax": jax.__version__, "cases": cases}
    json.dump(_jsonable(partial), fh, indent=1)


def _pyplot():
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt


def _save_figure(fig: Any, out_dir: str, name: str) -> str:
  """Lay out, write ``out_dir/name`` (110 dpi), close; the path."""
  fig.tight_layout()
  path = os.path.join(out_dir, name)
  fig.savefig(path, dpi=110)
  _pyplot().close(fig)
  return path


def _figure(metrics: Dict[str, Any], out_dir: str) -> str:
  plt = _pyplot()
  labels, ratios = [], []
  for c in metrics["cases"]:
    for tol, t in c["tolerances"].items():
      labels.append(f"{c['label']} tol={float(tol):g}")
      ratios.append(t["ratio_to_best_ott"])
  fig, ax = plt.subplots(figsize=(8, 0.28 * len(labels) + 1.2))
  ypos = np.arange(len(labels))
  ax.barh(ypos, ratios, color=["tab:green" if r <= 0.67 else "tab:orange" if r <= 1 else "tab:red" for r in ratios])
  ax.axvline(1.0, color="k", lw=0.8)
  ax.axvline(0.67, color="k", lw=0.8, ls="--")
  ax.set_yticks(ypos, labels, fontsize=7)
  ax.set_xscale("log")
  ax.set_xlabel("ottsliced wall time / best OTT configuration's (below 1: faster)")
  ax.set_title(f"suite {metrics['suite']}")
  return _save_figure(fig, out_dir, "ratios.png")


def _scaling_figure(metrics: Dict[str, Any], out_dir: str) -> str:
  """Wall time (and buffer MB, where measured) against ``n``: ottsliced and the best OTT configuration per n."""
  plt = _pyplot()
  memory = any(
    "memory_mb" in r for c in metrics["cases"] for t in c["tolerances"].values() for r in t["methods"].values()
  )
  fig, axes = plt.subplots(1, 2 if memory else 1, figsize=(9 if memory else 5, 3.6), squeeze=False)
  tols = list(metrics["cases"][0]["tolerances"])
  for k, tol in enumerate(tols):
    ns, ours, best, ours_mb, best_mb = [], [], [], [], []
    for c in metrics["cases"]:
      t = c["tolerances"].get(tol)
      if t is None:
        continue
      rows, name = t["methods"], t["best_ott"]
      ns.append(c["case"]["n"])
      ours.append(rows["ottsliced"]["ms"] if rows["ottsliced"]["met"] else np.nan)
      best.append(rows[name]["ms"] if name else np.nan)
      ours_mb.append(rows["ottsliced"].get("memory_mb", np.nan))
      best_mb.append(rows[name].get("memory_mb", np.nan) if name else np.nan)
    color = f"C{k}"
    axes[0, 0].loglog(ns, ours, "o-", color=color, label=f"ottsliced, tol {float(tol):g}")
    axes[0, 0].loglog(ns, best, "s--", color=color, label=f"best OTT, tol {float(tol):g}")
    if memory and k == 0:
      axes[0, 1].loglog(ns, ours_mb, "o-", color="k", label="ottsliced")
      axes[0, 1].loglog(ns, best_mb, "s--", color="tab:gray", label="best OTT (at the first tol)")
  axes[0, 0].set_xlabel("n (atoms per side)")
  axes[0, 0].set_ylabel("median ms per solve")
  axes[0, 0].legend(fontsize=7)
  if memory:
    axes[0, 1].set_xlabel("n (atoms per side)")
    axes[0, 1].set_ylabel("XLA buffers of the compiled solve, MB")
    axes[0, 1].legend(fontsize=7)
  fig.suptitle(f"suite {metrics['suite']}")
  return _save_figure(fig, out_dir, "scaling.png")


def _ms(row: Dict[str, Any]) -> str:
  if not row["complete"]:
    return "over time limit"
  mark = "" if row["met"] else " (missed)"
  return f"{row['ms']:.2f} ({row['iterations']:.0f}){mark}"


def _spread(row: Dict[str, Any]) -> str:
  return f"{_ms(row)} [{row['ms_q25']:.2f}–{row['ms_q75']:.2f}]" if row["complete"] and row["met"] else _ms(row)


def _peer(rows: Dict[str, Dict[str, Any]], name: Optional[str], family: str) -> str:
  if name:
    return f"{rows[name]['ms']:.2f}"
  return "missed" if any(v["family"] == family for v in rows.values()) else "–"


def format_table(metrics: Dict[str, Any]) -> str:
  """Markdown: per case and tolerance, ms (iterations) of OTT's default, OTT's best, ottsliced, and the peers."""
  lines = [
    f"Solver suite `{metrics['suite']}` on {metrics['device']}, jax {metrics.get('jax', '?')}: median ms per solve "
    "over pairs (median iterations), ottsliced's quartiles over pairs in brackets and its compile time; "
    "ratios are ottsliced's time over the best OTT configuration's and over OTT's default, measured side by side.",
    "",
    "| case | tol | OTT default | best OTT configuration | ottsliced [q25–q75] | compile s | × best OTT "
    "| × OTT default | amortized | GeomLoss | POT |",
    "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for c in metrics["cases"]:
    for tol, t in c["tolerances"].items():
      rows = t["methods"]
      best = t["best_ott"]
      best_cell = f"{best.removeprefix('OTT ')}: {_ms(rows[best])}" if best else "none met the tolerance"
      amort = rows.get("ottsliced + RA-OT model")
      ours = rows["ottsliced"]
      cells = [
        c["label"],
        f"{float(tol):g}",
        _ms(rows["OTT default"]),
        best_cell,
        _spread(ours),
        f"{ours['compile_s']:.1f}",
        f"{t['ratio_to_best_ott']:.2f}",
        f"{t['ratio_to_ott_default']:.2f}",
        _ms(amort) if amort else "–",
        _peer(rows, t.get("best_geomloss"), "geomloss"),
        _peer(rows, t.get("best_pot"), "pot"),
      ]
      lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def format_summary(metrics: Dict[str, Any]) -> str:
  """Markdown, the README's: per case and tolerance, OTT's best configuration and ottsliced, ms and ratios."""
  lines = [
    "| case | tol | best OTT configuration: ms (iterations) | ottsliced | × best OTT | × OTT default |",
    "|---|---:|---|---:|---:|---:|",
  ]
  for c in metrics["cases"]:
    for tol, t in c["tolerances"].items():
      rows, best = t["methods"], t["best_ott"]
      best_cell = f"{best.removeprefix('OTT ')}: {_ms(rows[best])}" if best else "none met the tolerance"
      lines.append(
        f"| {c['label']} | {float(tol):g} | {best_cell} | {_ms(rows['ottsliced'])} | "
        f"{t['ratio_to_best_ott']:.2f} | {t['ratio_to_ott_default']:.2f} |"
      )
  return "\n".join(lines)


def _slopes(values: List[Tuple[int, float]]) -> List[str]:
  """Log-log slopes between consecutive ``(n, value)`` points: the growth exponent in ``n``."""
  out = ["–"]
  for (n0, v0), (n1, v1) in zip(values, values[1:]):
    ok = v0 > 0 and v1 > 0 and np.isfinite(v0) and np.isfinite(v1)
    out.append(f"{math.log(v1 / v0) / math.log(n1 / n0):.2f}" if ok else "–")
  return out


def format_scaling(metrics: Dict[str, Any]) -> str:
  """Markdown: per tolerance and ``n``, ms and MB of ottsliced and the best OTT configuration, growth exponents."""
  lines = [
    "| tol | n | best OTT configuration: ms (iterations) | its MB | ottsliced | MB | × best OTT "
    "| growth exponent, best OTT / ottsliced |",
    "|---:|---:|---|---:|---:|---:|---:|---|",
  ]
  for tol in metrics["cases"][0]["tolerances"]:
    entries = [(c, c["tolerances"][tol]) for c in metrics["cases"] if tol in c["tolerances"]]
    best_ms = [
      (c["case"]["n"], t["methods"][t["best_ott"]]["ms"] if t["best_ott"] else float("nan")) for c, t in entries
    ]
    ours_ms = [
      (c["case"]["n"], t["methods"]["ottsliced"]["ms"] if t["methods"]["ottsliced"]["met"] else float("nan"))
      for c, t in entries
    ]
    for (c, t), g_best, g_ours in zip(entries, _slopes(best_ms), _slopes(ours_ms)):
      rows, best = t["methods"], t["best_ott"]
      mb = lambda row: f"{row['memory_mb']:.1f}" if "memory_mb" in row else "–"  # noqa: E731
      best_cell = f"{best.removeprefix('OTT ')}: {_ms(rows[best])}" if best else "none met the tolerance"
      lines.append(
        f"| {float(tol):g} | {c['case']['n']} | {best_cell} | {mb(rows[best]) if best else '–'} | "
        f"{_ms(rows['ottsliced'])} | {mb(rows['ottsliced'])} | {t['ratio_to_best_ott']:.2f} | {g_best} / {g_ours} |"
      )
  return "\n".join(lines)
