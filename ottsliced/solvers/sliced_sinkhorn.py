r"""The ottsliced solver: epsilon scaling from the cost scale, then Newton steps or corrected Sinkhorn iterations.

:class:`SlicedSinkhorn` solves an OTT ``LinearProblem`` and returns OTT's
``SinkhornOutput``. With no argument it picks for the problem:

1. **Start.** Zeros, or a prediction: a fitted :class:`~ottsliced.SlicedInitializer`
   (sharing its sorted projections), any OTT initializer, or ``init=(f, g)``.
   As in OTT's Sinkhorn the solve starts from ``f`` (``g`` only when a
   sliced model predicts it too). Before Newton steps from a cold start
   that the schedule below leaves without sweeps, on a squared-Euclidean
   ``PointCloud`` in ``d <= 4`` with at least ``2**17`` cost entries, ``f``
   is the sum of the coordinates' exact 1-D OT potentials
   (:func:`axis_potential`: no training, a feasible dual point).
2. **Epsilon scaling** from a cold start (:mod:`ottsliced.solvers.annealing`):
   one Sinkhorn sweep per epsilon, geometrically down to the target. Before
   Newton steps :math:`\lceil\sqrt{a^\top Cb/\varepsilon}\rceil` sweeps from
   :math:`0.3\,a^\top Cb` (:func:`~ottsliced.solvers.annealing.paced_schedule`);
   before the Sinkhorn tail from :math:`0.1\,a^\top Cb`, decay 0.9. None when
   the target is already above the start or, before Newton steps, within 30
   of the mean cost (OTT's default, a twentieth: Newton from a cold start
   needs fewer steps than the sweeps), and none from a prediction (it holds
   the potential at the target already). Below a fiftieth of the mean cost
   the sweeps stop at :math:`4\varepsilon` and Newton steps solve that
   problem to a column error of ``max(threshold, 0.01)`` first
   (:data:`~ottsliced.solvers.annealing.NEWTON_STAGE`), their errors
   recorded as ``inf``.
3. **The tail at the target epsilon.**

   - ``"newton"`` (the default when the plan fits in ``max_plan_entries``):
     Newton steps on the semi-dual with the plan stored
     (:mod:`ottsliced.solvers.newton`), each a conjugate-gradient solve with
     products by the plan (no exponential) and, for ``min(n, m) <=``
     :data:`DIRECT_MAX`, a dense factorisation where CG stalls
     (:data:`~ottsliced.solvers.newton.FALLBACK_TOLERANCE`); a step is kept only if it raises the dual (or, where the
     dual's change is within round-off, lowers the error), else a Sinkhorn
     iteration is taken. The steps move the
     potential of the side with fewer atoms (``g``; ``f`` when ``n < m``:
     then columns are exact and the rows carry the error), so the system is
     ``min(n, m)`` square.
   - ``"sinkhorn"`` (online geometries, larger problems): OTT's log-domain
     iterations with **sliced corrections** at iterations 2 and 3 and Anderson
     acceleration after them, described below.

Every iteration reads its marginal error (columns, rows exact; the other
way round in Newton steps on ``f``) at no extra kernel pass, so the solver
stops at the first iteration below ``threshold`` (OTT checks every ``inner_iterations = 10``).

**Sliced corrections** (the Sinkhorn tail). A Sinkhorn sweep fixes the
marginal error *locally* (the kernel spreads information over about
:math:`\sqrt\varepsilon` per sweep); errors that are smooth at the scale of
the whole support, mass that has to travel far, are its slowest modes. After a
sweep, rows are exact and the column marginal :math:`c=P^\top\mathbf 1`
differs from :math:`b`. The exact 1-D OT potentials between :math:`c` and
:math:`b` on ``L`` directions see that large-scale displacement: their
combination :math:`\psi=\sum_\ell\beta_\ell\psi_\ell` added to :math:`g`,
then :math:`f=\mathcal T_a g`, is an approximate Newton step. Per correction:

1. :math:`c=b\,e^{(g-\mathcal T_b f)/\varepsilon}`: the column marginal comes
   for free from the update that the iteration computes anyway;
2. :math:`\psi` from :func:`ottsliced.sliced.combined_source_potentials` on the
   target's sorted projections (the swapped problem :math:`b\to c`);
3. candidates :math:`g_s=\mathcal T_b f+s\,\psi` for the multipliers ``s`` of
   ``line_search``, :math:`f_s=\mathcal T_a g_s`; the candidate of highest
   dual objective :math:`\langle a,f_s\rangle+\langle b,g_s\rangle` wins. With
   the default ``(0, 1)`` the plain Sinkhorn update (``s = 0``) is a candidate,
   so a correction never ascends more slowly than Sinkhorn.

With no corrections and no Anderson (``tail="sinkhorn", annealing=None,
steps=(), anderson_memory=0``) the solver runs OTT's iterations, stops at
OTT's iteration and returns OTT's potentials, up to float rounding (tested in
float64). ``safeguard=True`` races plain Sinkhorn's iterations in lockstep
(never more iterations than plain Sinkhorn, for two more kernel passes per
iteration).
"""

import functools
from typing import Any, Callable, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import costs, grid, pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import implicit_differentiation as implicit_lib
from ott.solvers.linear import sinkhorn

from ottsliced import sliced
from ottsliced._internal import validation
from ottsliced.initializers.sliced_initializer import SlicedInitializer
from ottsliced.sliced.directions import directions
from ottsliced.sliced.support import BoundSupport, bind_supports, bound_projections
from ottsliced.solvers import annealing as annealing_lib
from ottsliced.solvers import newton
from ottsliced.solvers.compaction import compaction_applies, solve_compacted, static_level
from ottsliced.solvers.iterations import reported_error

__all__ = [
  "DEFAULT_NUM_DIRECTIONS",
  "DIRECT_MAX",
  "NEWTON_SOLVES",
  "DEFAULT_STEPS",
  "SYMMETRIC_COSTS",
  "TAILS",
  "CorrectionState",
  "ProgressState",
  "SlicedSinkhorn",
  "column_marginal",
  "correction_features",
  "cost_matrix",
  "has_points",
  "stores_cost",
]

DEFAULT_STEPS = (2.0, 1.0)
DEFAULT_NUM_DIRECTIONS = 16  # L when the solver draws its own directions
TAILS = ("auto", "newton", "sinkhorn")
NEWTON_SOLVES = ("auto", "cg", "direct")
# A cold Newton start without sweeps, from the coordinates' 1-D potentials (axis_potential): up to this dimension,
# on plans of at least this many entries (the sorts cost about one small Newton step; they save about one: from
# 2**14, 0.80-1.35x the time on 16k-90k entries, benchmarks/axis_start_size.py).
AXIS_START_MAX_DIM = 4
AXIS_START_MIN_ENTRIES = 2**17
# ... and in place of the sweeps and the stage when the row L1 error of its plan, columns exact, is at most this.
AXIS_START_MAX_ROW_ERROR = 0.75
# newton_solve="auto": CG, and up to this many unknowns the dense factorisation of the Newton system for a step
# where CG stalls (newton.FALLBACK_TOLERANCE). CG alone is faster on small systems (benchmarks/newton_solve.py) but
# stalls on ill-conditioned ones (self-transport x -> x, n = 24-100: float32 at 1e-6, float64 at 1e-10), where the
# factorisation converges; beyond this size a factorisation costs more than CG's stall.
DIRECT_MAX = 192


def column_marginal(b: jax.Array, g: jax.Array, g_next: jax.Array, epsilon: Any) -> jax.Array:
  r"""Column marginal :math:`P^\top\mathbf 1` ``[m]`` of :math:`(f, g)` from :math:`g_{next}=\mathcal T_b f`.

  :math:`\mathcal T_b f=g+\varepsilon\log b-\varepsilon\log(P^\top\mathbf 1)`,
  so the marginal costs no kernel pass. Zero at zero-weight atoms.
  """
  ok = b > 0
  delta = jnp.where(ok, g - g_next, 0.0)
  return jnp.where(ok, b * jnp.exp(delta / epsilon), 0.0)


def correction_features(py: sliced.SortedProjections, b: jax.Array, c: jax.Array) -> jax.Array:
  r"""The ``L`` target-side 1-D OT potentials of :math:`c\to b`, ``[m, L]`` (for fitting steps).

  The source potentials of the swapped problem :math:`b\to c` on the target's
  sorted projections, ``b``-weighted mean zero per direction; finite values at
  zero-weight atoms (masked by the solver).
  """
  return sliced.source_potentials_sorted(py, py, b, c)


def _coefficients(name: str, steps: Any, theta: jax.Array, per_correction: bool) -> jax.Array:
  """Step sizes (the mean over the ``L`` directions, scaled) or per-direction coefficients, as coefficients.

  ``per_correction``: ``[K]`` or ``[K, L]`` -> ``[K, L]``; else a scalar or ``[L]`` -> ``[L]``.
  """
  if theta is None:  # directions drawn at the first call: keep the sizes (or [K, L] coefficients) as given
    coef = jnp.asarray(steps, dtype=jnp.result_type(float))
    if coef.ndim not in ((1, 2) if per_correction else (0, 1)):
      raise ValueError(f"`{name}` must be step sizes or coefficients, got shape {coef.shape}.")
    return coef
  coef = steps if isinstance(steps, jax.Array) else jnp.asarray(steps, dtype=theta.dtype)
  num = theta.shape[0]
  sizes_ndim = 1 if per_correction else 0
  if coef.ndim == sizes_ndim:
    coef = coef[..., None] * jnp.full((num,), 1.0 / num, coef.dtype)
  if coef.ndim != sizes_ndim + 1 or coef.shape[-1] != num:
    want = "[K] step sizes or [K, L={}]" if per_correction else "a step size or [L={}]"
    raise ValueError(f"`{name}` must be {want.format(num)} coefficients, got shape {coef.shape}.")
  return coef


def _check_annealing(annealing: Any) -> Any:
  """``"auto"``, ``None`` or ``(start, decay)`` with ``start > 0`` and ``0 < decay < 1``."""
  if annealing is None or (isinstance(annealing, str) and annealing == "auto"):
    return annealing
  try:
    start, decay = (float(v) for v in annealing)
  except (TypeError, ValueError):
    raise ValueError(f"`annealing` must be 'auto', None or (start, decay), got {annealing!r}.") from None
  if not (start > 0 and 0 < decay < 1):
    raise ValueError(f"`annealing` needs start > 0 and 0 < decay < 1, got {annealing!r}.")
  return (start, decay)


def _update(geom: Any, w: jax.Array, f: jax.Array, g: jax.Array, epsilon: Any, axis: int) -> jax.Array:
  r"""The log-domain update at ``epsilon``: :math:`\mathcal T_b f` (``axis=0``), :math:`\mathcal T_a g` (``axis=1``)."""
  lse = geom.apply_lse_kernel(f, g, epsilon, axis=axis)[0]
  pos = w > 0
  return jnp.where(pos, epsilon * jnp.log(jnp.where(pos, w, 1.0)) - jnp.where(jnp.isfinite(lse), lse, 0.0), -jnp.inf)


class ProgressState(NamedTuple):
  """What a ``progress_fn`` receives as its state: ``errors [max_iterations // inner_iterations, 1]``, as OTT's."""

  errors: jax.Array


OTT_OPTIONS = (
  "lse_mode",
  "norm_error",
  "momentum",
  "anderson",
  "parallel_dual_updates",
  "use_danskin",
  "implicit_diff",
)  # OTT ``Sinkhorn`` keywords kept as given: they decide whether OTT's own iterations run (:meth:`ott_reasons`)


def _ott_options(inner_iterations, implicit_diff, anderson, own, **options):
  """Check OTT ``Sinkhorn``'s keywords; return ``(anderson_memory, anderson_ridge, options)``.

  ``options`` are kept (a tuple in :data:`OTT_OPTIONS` order) with
  ``implicit_diff="default"`` resolved to OTT's ``ImplicitDiff()``. A value
  that is not one of OTT's is refused by name.
  """
  refused = []
  if int(inner_iterations) < 1:
    refused.append(f"inner_iterations={inner_iterations} (must be >= 1)")
  if not (implicit_diff in ("default", None) or isinstance(implicit_diff, implicit_lib.ImplicitDiff)):
    refused.append(f"implicit_diff={implicit_diff!r} (an ott ImplicitDiff or None)")
  if not float(options["norm_error"]) >= 1:
    refused.append(f"norm_error={options['norm_error']} (a power p >= 1)")
  if refused:
    raise ValueError("SlicedSinkhorn cannot honour: " + "; ".join(refused) + ".")
  options["implicit_diff"] = implicit_lib.ImplicitDiff() if implicit_diff == "default" else implicit_diff
  options["anderson"] = anderson
  opts = tuple(options[name] for name in OTT_OPTIONS)
  if anderson is None or getattr(anderson, "refresh_every", 1) != 1:
    return (*own, opts)
  return int(anderson.memory), float(anderson.ridge_identity), opts


def has_points(geom: Any) -> bool:
  """Whether ``geom`` has point coordinates to project (an OTT ``PointCloud``): the sliced machinery needs them."""
  return isinstance(geom, pointcloud.PointCloud)


def axis_start_applies(geom: Any) -> bool:
  """Whether :func:`axis_potential` applies to ``geom`` (static: type, cost, dimension and size)."""
  if not has_points(geom) or type(geom.cost_fn) is not costs.SqEuclidean:
    return False
  scale = getattr(geom, "_scale_cost", 1.0)
  if not isinstance(scale, (int, float)) or float(scale) != 1.0 or geom.x.shape[-1] > AXIS_START_MAX_DIM:
    return False
  return geom.shape[0] * geom.shape[1] >= AXIS_START_MIN_ENTRIES


def axis_potential(geom: Any, a: jax.Array, b: jax.Array) -> Optional[jax.Array]:
  r"""``f [n]``: the sum over coordinates of their exact 1-D OT potentials; ``None`` where it does not apply.

  The squared Euclidean cost is the sum of the coordinates' costs
  :math:`(x_k-y_k)^2`, so the coordinates' 1-D dual pairs sum to a feasible
  pair of the full problem: the sliced potentials on the ``d`` axes
  (:func:`ottsliced.sliced_potentials`), no training and no random direction.
  Applies to a ``PointCloud`` with OTT's unscaled ``SqEuclidean`` cost in
  dimension at most :data:`AXIS_START_MAX_DIM` (above it, ``L < d``
  directions scaled by ``d / L`` started Newton further from the solution
  than zeros did on 8-D Gaussian mixtures) with at least
  :data:`AXIS_START_MIN_ENTRIES` cost entries (on smaller plans the sorts
  cost more than the Newton step they save: 2-D flow batches of 64).
  """
  if not axis_start_applies(geom):
    return None
  axes = jnp.eye(geom.x.shape[-1], dtype=geom.x.dtype)
  phi, _ = sliced.sliced_potentials(geom.x, geom.y, a, b, axes)
  return jnp.where(a > 0, jnp.sum(phi, axis=1), -jnp.inf)


def stores_cost(geom: Any) -> bool:
  """Whether ``geom``'s cost matrix can be formed (not online, not a ``Grid``): the Newton tail needs it."""
  return not getattr(geom, "is_online", False) and not isinstance(geom, grid.Grid)


SYMMETRIC_COSTS = (
  costs.SqEuclidean,
  costs.Euclidean,
  costs.SqPNorm,
  costs.PNormP,
  costs.EuclideanP,
  costs.NegDotProduct,
  costs.Cosine,
  costs.Arccos,
)
"""OTT's cost functions with :math:`c(x, y) = c(y, x)`: :func:`cost_matrix` forms their transpose directly."""


def cost_matrix(geom: Any, transposed: bool = False) -> jax.Array:
  """``geom``'s cost matrix ``[n, m]``, or with ``transposed`` (static) its transpose ``[m, n]``.

  On a ``PointCloud`` with a symmetric cost (:data:`SYMMETRIC_COSTS`, or a
  cost function with ``symmetric = True``) and a numeric ``scale_cost``,
  the transpose is formed in its own layout as the cost of ``y`` to ``x``,
  not by copying the ``[n, m]`` matrix; elsewhere the matrix is transposed.
  """
  if not transposed:
    return geom.cost_matrix
  if has_points(geom) and isinstance(getattr(geom, "_scale_cost", None), (int, float)):
    cost_fn = geom.cost_fn
    if type(cost_fn) in SYMMETRIC_COSTS or getattr(cost_fn, "symmetric", False) is True:
      return cost_fn.all_pairs(geom.y, geom.x) * geom.inv_scale_cost
  return geom.cost_matrix.T


def _dual(a: jax.Array, b: jax.Array, f: jax.Array, g: jax.Array) -> jax.Array:
  """``<a, f> + <b, g>`` over positive weights (rows exact: the mass term is constant)."""
  return jnp.sum(jnp.where(a > 0, a * f, 0.0)) + jnp.sum(jnp.where(b > 0, b * g, 0.0))


class CorrectionState(NamedTuple):
  r"""The input of a correction.

  Attributes:
    g: ``[m]`` the plain update :math:`\mathcal T_b f` that the correction adds to.
    column_marginal: ``[m]`` :math:`c=P^\top\mathbf 1` of the state before that update.
    target_projections: the target's sorted projections (``values [L, m]``).
  """

  g: jax.Array
  column_marginal: jax.Array
  target_projections: sliced.SortedProjections


@jax.tree_util.register_pytree_node_class
class SlicedSinkhorn:
  r"""Entropic OT solver: epsilon scaling, Newton steps on the stored plan or corrected Sinkhorn iterations.

  ``solver(prob)`` returns OTT's ``SinkhornOutput`` (potentials, error trace
  with ``inf`` during epsilon scaling and ``-1`` after the stop,
  ``converged``, costs, ``matrix``). With no argument it needs no training
  and no directions: ``SlicedSinkhorn()(prob)``. Warm-started and amortized by
  a fitted model with :meth:`from_initializer`.

  Geometries: on a ``PointCloud`` (any cost function, dense or online) every
  part is available. A geometry without point coordinates (a plain
  ``Geometry`` from a cost or kernel matrix, a low-rank geometry, a ``Grid``)
  has nothing to project: no sliced correction, no sliced initializer, no
  ``theta``. The solver then runs epsilon scaling and Newton steps where the
  cost matrix can be formed (not on a ``Grid``), else (Anderson) Sinkhorn
  iterations.

  OTT's ``Sinkhorn`` keywords (``lse_mode``, ``threshold``, ``norm_error``,
  ``inner_iterations``, ``min_iterations``, ``max_iterations``,
  ``momentum``, ``anderson``, ``parallel_dual_updates``,
  ``recenter_potentials``, ``use_danskin``, ``implicit_diff``,
  ``initializer``, ``progress_fn``) are accepted with OTT's meaning and
  defaults. This solver's path covers balanced problems in the log domain,
  with the L1 marginal error: there it checks the error at every iteration
  (``progress_fn`` is still called every ``inner_iterations``), OTT's
  ``anderson`` sets its Anderson memory and ridge, an ``Epsilon`` scheduler
  of the geometry is replaced by the solver's own epsilon scaling to its
  target, and the potentials are differentiated implicitly with the given
  ``ImplicitDiff`` (OTT's default), the costs by Danskin's theorem unless
  ``use_danskin=False``. Anything else (an unbalanced problem,
  ``lse_mode=False``, ``norm_error != 1``, ``momentum``,
  ``parallel_dual_updates=True``, ``implicit_diff=None``, a float16 or
  bfloat16 problem) runs OTT's own
  ``Sinkhorn`` with the same keywords (:meth:`ott_reasons` says why,
  :meth:`ott_solver` is that solver): plain OTT updates, no sliced part.

  The solver is a pytree (``theta``, the coefficients, ``threshold``, the
  initializer and the bound support are leaves): pass it to ``jax.jit`` as an
  argument and new coefficients or thresholds reuse the compiled solve.

  Args:
    theta: directions ``[L, d]`` of the sliced corrections (Sinkhorn tail);
      ``None``: :data:`DEFAULT_NUM_DIRECTIONS` directions drawn for the
      problem's dimension when needed.
    steps: the corrections of the Sinkhorn tail, applied at its iterations
      ``2 .. K + 1``: ``K`` step sizes (each adds ``s`` times the mean over
      directions of the 1-D potentials), or ``[K, L]`` per-direction
      coefficients. Empty: no correction.
    initializer: ``None`` (zeros), any OTT initializer, or a
      :class:`SlicedInitializer` (its prediction reuses the solver's sorted
      projections when the two share ``theta``).
    tail: ``"auto"`` (Newton steps when the geometry is dense and its ``n m``
      entries are at most ``max_plan_entries``, else the Sinkhorn tail),
      ``"newton"`` or ``"sinkhorn"`` (static).
    annealing: ``"auto"`` (epsilon scaling from the cost scale from a cold
      start, none from a prediction or ``init``: paced by
      :data:`~ottsliced.solvers.annealing.NEWTON_ANNEALING` before Newton
      steps, :data:`~ottsliced.solvers.annealing.DEFAULT_ANNEALING` before
      the Sinkhorn tail), ``None`` (never), or ``(start, decay)``: epsilon
      from ``max(eps, start * mean cost)``, times ``decay`` per sweep (static).
    max_plan_entries: the largest ``n m`` for which ``"auto"`` stores the
      cost and the plan (static).
    newton_solve: the Newton system's solver: ``"auto"`` (CG; up to :data:`DIRECT_MAX` atoms on the smaller
      side, a dense Cholesky factorisation for the steps where CG stalls), ``"cg"``
      or ``"direct"`` (static).
    cg_iterations: CG iterations per Newton step at most (static).
    cg_tolerance: CG's relative residual tolerance (static): an inexact Newton step, 0.3 a forcing term that
      took 0.5-0.8x the time of 0.1 on the Gaussian-mixture cases at epsilon = 1e-3 x mean cost.
    line_search: multipliers of each correction tried side by side, the one of
      highest dual objective kept (static). ``(0.0, 1.0)``: guarded (the plain
      update is a candidate); ``(1.0,)``: unguarded, one pass cheaper.
    every: also correct every ``every`` iterations after the first ``K``
      (static; 0: never). Keep the guard with it: unguarded periodic
      corrections can oscillate. Under ``jax.vmap`` both branches of the
      periodic choice run every iteration.
    every_step: the periodic correction's step size, or ``[L]`` coefficients.
    anderson_memory: Anderson acceleration of the Sinkhorn tail's
      iterations after the corrections, on ``g`` (static; 0: plain Sinkhorn iterations).
    anderson_ridge: its ridge (OTT's default).
    threshold: stop when the column L1 marginal error is below it (the row error in Newton steps on ``f``,
      ``n < m``; traced; OTT's default 1e-3).
    max_iterations: iteration cap (static).
    min_iterations: no stop before it (static).
    support: bound target supports (:meth:`bind`).
    safeguard: also run plain Sinkhorn's iterations in lockstep and stop at
      the first iteration where either chain meets the threshold, returning
      the corrected one unless only plain Sinkhorn converged (static). The
      count is then never above plain Sinkhorn's (tested on random clouds,
      where the unguarded count is above it on 5 of 40:
      ``benchmarks/corrections_random_clouds.py`` at commit 301e8bd); each iteration costs two
      more kernel passes.
    stop_after_rejection: once the line search rejects a correction (the
      plain update had the higher dual), run plain (or Anderson) iterations
      in the remaining correction slots and skip periodic corrections
      (static; needs the multiplier 0 in ``line_search``). A rejected
      correction says that this problem's slow modes are not sliced ones
      (2-D flow batches at epsilon = 2); on MNIST it costs 0.1-0.3
      iterations (``benchmarks/flow_corrections.py`` at commit 301e8bd).
      :func:`ottsliced.select_steps` times it against the other schedules.
    lse_mode, norm_error, inner_iterations, momentum, anderson,
      parallel_dual_updates, recenter_potentials, use_danskin, implicit_diff,
      progress_fn: OTT ``Sinkhorn``'s keywords, with its defaults (see above).
  """

  def __init__(
    self,
    theta: Optional[jax.Array] = None,
    steps: Any = DEFAULT_STEPS,
    *,
    initializer: Any = None,
    tail: str = "auto",
    annealing: Any = "auto",
    max_plan_entries: int = 2**26,
    newton_solve: str = "auto",
    cg_iterations: int = 10,
    cg_tolerance: float = 0.3,
    line_search: Sequence[float] = (0.0, 1.0),
    every: int = 0,
    every_step: Any = 1.0,
    anderson_memory: int = 2,
    anderson_ridge: float = 1e-2,
    threshold: Any = 1e-3,
    max_iterations: int = 2000,
    min_iterations: int = 0,
    support: Optional[BoundSupport] = None,
    safeguard: bool = False,
    stop_after_rejection: bool = False,
    lse_mode: bool = True,
    norm_error: int = 1,
    inner_iterations: int = 10,
    momentum: Any = None,
    anderson: Any = None,
    parallel_dual_updates: bool = False,
    recenter_potentials: bool = False,
    use_danskin: Optional[bool] = None,
    implicit_diff: Any = "default",
    progress_fn: Optional[Callable[[Any], None]] = None,
  ):
    anderson_memory, anderson_ridge, self.ott_options = _ott_options(
      inner_iterations,
      implicit_diff,
      anderson,
      (anderson_memory, anderson_ridge),
      lse_mode=lse_mode,
      norm_error=norm_error,
      momentum=momentum,
      parallel_dual_updates=parallel_dual_updates,
      use_danskin=use_danskin,
    )
    self.inner_iterations, self.progress_fn = int(inner_iterations), progress_fn
    self.recenter_potentials = bool(recenter_potentials)
    if theta is not None and validation.is_concrete(theta) and np.ndim(theta) != 2:
      raise ValueError(f"`theta` must be [L, d], got shape {np.shape(theta)}.")
    coef = _coefficients("steps", steps, theta, per_correction=True)
    if int(every) < 0:
      raise ValueError(f"`every` must be >= 0 (0: no periodic corrections), got {every}.")
    every_coef = _coefficients("every_step", every_step, theta, per_correction=False)
    line_search = tuple(float(s) for s in line_search)
    if not line_search:
      raise ValueError("`line_search` needs at least one multiplier, e.g. (0.0, 1.0).")
    if int(max_iterations) < 1 or not 0 <= int(min_iterations) <= int(max_iterations):
      raise ValueError(
        f"need max_iterations >= 1 and 0 <= min_iterations <= max_iterations, got {max_iterations}, {min_iterations}."
      )
    if tail not in TAILS:
      raise ValueError(f"`tail` must be one of {TAILS}, got {tail!r}.")
    self.tail, self.annealing = tail, _check_annealing(annealing)
    if newton_solve not in NEWTON_SOLVES:
      raise ValueError(f"`newton_solve` must be one of {NEWTON_SOLVES}, got {newton_solve!r}.")
    self.newton_solve = newton_solve
    if int(max_plan_entries) < 1 or int(cg_iterations) < 1 or not 0 < float(cg_tolerance) < 1:
      raise ValueError(
        "need max_plan_entries >= 1, cg_iterations >= 1 and 0 < cg_tolerance < 1, got "
        f"{max_plan_entries}, {cg_iterations}, {cg_tolerance}."
      )
    self.max_plan_entries, self.cg_iterations, self.cg_tolerance = (
      int(max_plan_entries),
      int(cg_iterations),
      float(cg_tolerance),
    )
    self.theta, self.coef, self.initializer = theta, coef, initializer
    self.every, self.every_coef = int(every), every_coef
    if int(anderson_memory) < 0 or not anderson_ridge > 0:
      raise ValueError(f"need anderson_memory >= 0 and anderson_ridge > 0, got {anderson_memory}, {anderson_ridge}.")
    self.anderson_memory, self.anderson_ridge = int(anderson_memory), float(anderson_ridge)
    self.line_search = line_search
    self.threshold = threshold
    self.max_iterations, self.min_iterations = int(max_iterations), int(min_iterations)
    self.support = support
    self.safeguard = bool(safeguard)
    self.stop_after_rejection = bool(stop_after_rejection)
    # Static: the initializer predicts from the solver's own sorted projections (checked once, here).
    self.shares_projections = (
      theta is not None and isinstance(initializer, SlicedInitializer) and initializer.theta is theta
    )

  # ---------------------------------------------------------------- construction
  @classmethod
  def from_initializer(cls, model: SlicedInitializer, steps: Any = None, **kwargs: Any) -> "SlicedSinkhorn":
    """Warm-started by ``model``, correcting on its directions and its bound target supports (no second sort).

    ``steps``: ``None`` takes the model's fitted ``corrections`` (``[K, L]``)
    when it has them, else :data:`DEFAULT_STEPS`; anything else as in the
    constructor (``()``: no correction).
    """
    if steps is None:
      steps = DEFAULT_STEPS if getattr(model, "corrections", None) is None else model.corrections
    sup = model.support
    support = None if sup is None or sup.y is None else BoundSupport(None, sup.y, None, sup.py)
    return cls(model.theta, steps, initializer=model, support=support, **kwargs)

  def replace(self, **kwargs: Any) -> "SlicedSinkhorn":
    """A copy with some fields replaced (``steps=`` takes step sizes or coefficients)."""
    fields = {
      "steps": self.coef,
      "initializer": self.initializer,
      "tail": self.tail,
      "annealing": self.annealing,
      "max_plan_entries": self.max_plan_entries,
      "newton_solve": self.newton_solve,
      "cg_iterations": self.cg_iterations,
      "cg_tolerance": self.cg_tolerance,
      "line_search": self.line_search,
      "every": self.every,
      "every_step": self.every_coef,
      "anderson_memory": self.anderson_memory,
      "anderson_ridge": self.anderson_ridge,
      "threshold": self.threshold,
      "max_iterations": self.max_iterations,
      "min_iterations": self.min_iterations,
      "support": self.support,
      "safeguard": self.safeguard,
      "stop_after_rejection": self.stop_after_rejection,
      "inner_iterations": self.inner_iterations,
      "recenter_potentials": self.recenter_potentials,
      "progress_fn": self.progress_fn,
      **self.ott_keywords,
    }
    if fields["anderson"] is not None and "anderson_memory" in kwargs:  # the memory given wins over OTT's object
      fields["anderson"] = None
    keep_sharing = "theta" not in kwargs and "initializer" not in kwargs and self.shares_projections
    theta = kwargs.pop("theta", self.theta)
    fields.update(kwargs)
    if keep_sharing:  # under jit theta and the initializer's theta are distinct leaves: re-tie them
      theta = self.initializer.theta
    return SlicedSinkhorn(theta, **fields)

  def bind(self, y: jax.Array) -> "SlicedSinkhorn":
    """A copy bound to the target support ``y [m, d]`` (or a bank ``[K, m, d]``): sorted once, here.

    Binding fixes the directions (drawn here for ``y``'s dimension when the
    solver has none).
    """
    theta = self.theta
    if theta is None:
      shape = validation.check_points("y", y, ranks=(2, 3))
      theta = directions(jax.random.key(0), shape[-1], DEFAULT_NUM_DIRECTIONS, dtype=jnp.asarray(y).dtype)
    by, py = bind_supports(theta, y, "y")
    return self.replace(theta=theta, support=BoundSupport(None, by, None, py))

  @property
  def ott_keywords(self) -> dict:
    """The OTT ``Sinkhorn`` keywords of :data:`OTT_OPTIONS`, by name (``ott_options`` is the tuple kept in aux)."""
    return dict(zip(OTT_OPTIONS, self.ott_options))

  @property
  def outer_iterations(self) -> int:
    """The length of ``errors`` on this solver's path (one error per iteration): ``max_iterations``.

    OTT's tools that store a solver's error traces (e.g. ``GromovWasserstein(store_inner_errors=True)``)
    size them with it. On OTT's path (:meth:`ott_reasons`) the trace is OTT's, one error per
    ``inner_iterations``.
    """
    return self.max_iterations

  @property
  def num_corrections(self) -> int:
    """``K``, the number of corrected iterations."""
    return self.coef.shape[0]

  # ---------------------------------------------------------------- solve
  def _directions(self, dim: int, dtype: Any) -> jax.Array:
    """``theta``, or :data:`DEFAULT_NUM_DIRECTIONS` directions drawn (deterministically) for dimension ``dim``."""
    if self.theta is not None:
      return self.theta
    return directions(jax.random.key(0), dim, DEFAULT_NUM_DIRECTIONS, dtype=dtype)

  def _coefs(self, theta: jax.Array, dtype: Any) -> Tuple[jax.Array, jax.Array]:
    coef = _coefficients("steps", self.coef, theta, per_correction=True)
    every_coef = _coefficients("every_step", self.every_coef, theta, per_correction=False)
    return coef.astype(dtype), every_coef.astype(dtype)

  def _target_projections(self, theta: jax.Array, x: jax.Array, y: jax.Array):
    if self.shares_projections:
      return self.initializer.projections(x, y)
    sup = self.support or BoundSupport(None, None, None, None)
    return None, bound_projections(theta, "y", y, sup.y, sup.py)

  def _start(self, prob: linear_problem.LinearProblem, px: Any, py: Any, init: Any = None, init_kwargs: Any = None):
    """The start ``(f, g, g_predicted)``: ``init`` when given, else the initializer's prediction, else zeros (masked).

    ``g_predicted`` (static) is ``True`` only when a sliced model predicted
    ``g`` too; otherwise, as in OTT's Sinkhorn, the solve starts from ``f``
    (``g`` is zeros, or ignored as OTT ignores it).
    """
    a, b = prob.a, prob.b
    ini = self.initializer
    g_predicted = False
    if init is not None:
      f, g = init
    elif ini is None:
      f, g = jnp.zeros_like(a), jnp.zeros_like(b)
    elif isinstance(ini, SlicedInitializer):
      if px is None:
        px, py = ini.projections(prob.geom.x, prob.geom.y)
      f, g, _ = ini.predict_from_projections(px, py, a, b, prob.geom.epsilon, prob.geom.x)
      g_predicted = g is not None
      g = jnp.zeros_like(b) if g is None else g
    else:
      f, g = ini(prob, lse_mode=True, **(init_kwargs or {}))
    return jnp.where(a > 0, f, -jnp.inf), jnp.where(b > 0, g, -jnp.inf), g_predicted

  def _check(self, prob: linear_problem.LinearProblem, needs_points: bool = False) -> None:
    geom = prob.geom
    if not prob.is_balanced:
      raise ValueError("this method of SlicedSinkhorn needs a balanced problem (tau_a = tau_b = 1).")
    if not has_points(geom):
      sliced_parts = [
        name
        for name, used in (
          ("`theta`", self.theta is not None),
          ("a SlicedInitializer", isinstance(self.initializer, SlicedInitializer)),
          ("a bound support", self.support is not None),
          ("the correction steps (this method)", needs_points),
        )
        if used
      ]
      if sliced_parts:
        raise ValueError(
          f"{' and '.join(sliced_parts)} need(s) point coordinates to project (an OTT PointCloud), got a "
          f"{type(geom).__name__}; without coordinates the solver runs epsilon scaling and Newton or "
          "Sinkhorn steps: SlicedSinkhorn() with no directions and no sliced initializer."
        )
      return
    y = geom.y
    if self.theta is not None and y.shape[-1] != self.theta.shape[1]:
      raise ValueError(f"the problem's points have dimension {y.shape[-1]} but theta has d={self.theta.shape[1]}.")

  def _prepare(self, prob: linear_problem.LinearProblem, init: Optional[Tuple[jax.Array, jax.Array]]):
    """Check ``prob``; return its geometry, weights, the target's sorted projections and the start ``(f, g)``."""
    self._check(prob, needs_points=True)
    geom, a, b = prob.geom, prob.a, prob.b
    theta = self._directions(geom.y.shape[-1], geom.y.dtype)
    px, py = self._target_projections(theta, geom.x, geom.y)
    f, g, _ = self._start(prob, px, py, init)
    return geom, a, b, py, f, g

  def uses_newton(self, prob: linear_problem.LinearProblem) -> bool:
    """Whether :meth:`__call__` ends with Newton steps on the stored plan (``tail``, geometry, plan size)."""
    if self.tail == "sinkhorn":
      return False
    geom = prob.geom
    dense = stores_cost(geom)
    small = geom.shape[0] * geom.shape[1] <= self.max_plan_entries
    if self.tail == "newton" and not dense:
      raise ValueError(
        f"tail='newton' stores the cost matrix and the plan: not with an online geometry or a Grid "
        f"(got {type(geom).__name__})."
      )
    return dense and (small or self.tail == "newton")

  def warm_started(self, init: Any = None) -> bool:
    """Whether the solve starts from a prediction or a given ``init`` (then ``annealing="auto"`` does not anneal)."""
    return init is not None or self.initializer is not None

  def _schedule(self, init: Any, use_newton: bool) -> Optional[Callable[[jax.Array, Any], Tuple[jax.Array, ...]]]:
    """``(mean cost, epsilon) -> (epsilon_0, sweeps, decay)`` of the annealing; ``None``: no annealing."""
    if self.annealing is None or (self.annealing == "auto" and self.warm_started(init)):
      return None
    if self.annealing == "auto" and use_newton:
      return lambda scale, eps: annealing_lib.paced_schedule(scale, eps, *annealing_lib.NEWTON_ANNEALING)
    start, decay = annealing_lib.DEFAULT_ANNEALING if self.annealing == "auto" else self.annealing
    return lambda scale, eps: (*annealing_lib.schedule(scale, eps, start, decay), decay)

  def ott_reasons(self, prob: linear_problem.LinearProblem) -> Tuple[str, ...]:
    """Why :meth:`__call__` runs OTT's own ``Sinkhorn`` on ``prob`` (empty: it runs this solver's path).

    OTT's iterations run for an unbalanced problem and for the OTT options
    that this solver's path does not reproduce: ``lse_mode=False``,
    ``norm_error != 1``, ``momentum``, ``parallel_dual_updates=True``,
    ``implicit_diff=None`` (unrolled differentiation) and an ``anderson``
    refreshed less often than every iteration, and for float16 or bfloat16
    problems.
    """
    opts = self.ott_keywords
    anderson = opts["anderson"]
    checks = (
      (not prob.is_balanced, f"an unbalanced problem (tau_a={prob.tau_a}, tau_b={prob.tau_b})"),
      (not opts["lse_mode"], "lse_mode=False"),
      (float(opts["norm_error"]) != 1, f"norm_error={opts['norm_error']}"),
      (opts["momentum"] is not None, "momentum"),
      (bool(opts["parallel_dual_updates"]), "parallel_dual_updates=True"),
      (opts["implicit_diff"] is None, "implicit_diff=None (unrolled differentiation)"),
      (anderson is not None and getattr(anderson, "refresh_every", 1) != 1, "anderson with refresh_every > 1"),
      (jnp.finfo(prob.dtype).bits < 32, f"a {jnp.dtype(prob.dtype).name} problem (the solves need 32 or 64 bits)"),
    )
    return tuple(reason for applies, reason in checks if applies)

  def ott_solver(self) -> sinkhorn.Sinkhorn:
    """OTT's ``Sinkhorn`` with this solver's OTT keywords (what :meth:`__call__` runs when :meth:`ott_reasons`)."""
    return sinkhorn.Sinkhorn(
      threshold=self.threshold,
      inner_iterations=self.inner_iterations,
      min_iterations=self.min_iterations,
      max_iterations=self.max_iterations,
      recenter_potentials=self.recenter_potentials,
      initializer=self.initializer,
      progress_fn=self.progress_fn,
      **self.ott_keywords,
    )

  def __call__(
    self, prob: linear_problem.LinearProblem, init: Optional[Tuple[jax.Array, jax.Array]] = None, **kwargs: Any
  ) -> sinkhorn.SinkhornOutput:
    """Solve ``prob`` (any OTT geometry: see the class docstring); ``init=(f, g)`` bypasses the initializer.

    Compiled as one program per shapes and options (``jax.jit`` here, at the
    API boundary): called directly, without a ``jit`` of yours, the first call
    compiles and later calls with the same shapes reuse it (OTT's ``Sinkhorn``
    compiles its loop again at every direct call: ``benchmarks/eager_calls.py``).
    Inside your own ``jit``, ``vmap`` or ``grad`` it is traced as part of yours.
    Concrete weights (a direct call, or ``None``: uniform) also tell which
    compaction size to compile (:func:`~ottsliced.solvers.compaction.static_level`).

    Args:
      prob: OTT's ``LinearProblem``. An unbalanced one (``tau_a`` or
        ``tau_b`` below 1) is solved by OTT's own iterations (:meth:`ott_reasons`).
      init: start potentials ``(f [n], g [m])`` (scalings with ``lse_mode=False``).
      **kwargs: keywords of the initializer's call, as OTT's ``Sinkhorn``.

    Returns:
      OTT's ``SinkhornOutput``; on this solver's path ``errors[k]`` is the
      column L1 error after iteration ``k + 1`` (the row error, columns
      exact, in Newton steps on ``f``: ``n < m``; ``inf`` during annealing,
      ``-1`` after the stop), and the potentials are differentiated
      implicitly (OTT's ``ImplicitDiff``), as OTT's default.
    """
    if self.ott_reasons(prob):
      return self.ott_solver()(prob, init, **kwargs)
    self._check(prob)
    level = static_level(prob.a, prob.b) if self.uses_newton(prob) and compaction_applies(prob.geom) else None
    arrays = all(isinstance(leaf, (jax.Array, np.ndarray)) for leaf in jax.tree_util.tree_leaves(kwargs))
    return (_output_compiled if arrays else _output)(self, prob, init, kwargs, level)

  def _axis_start(self, geom: Any, cost: jax.Array, a: jax.Array, b: jax.Array, plan: Any, transposed: bool):
    """``(f [n], g [m], fits)`` of a cold start from :func:`axis_potential`; ``None`` where it does not apply.

    ``cost`` is ``[n, m]``, or ``[m, n]`` with ``transposed`` (static).

    ``g`` is the column update of the axis potential ``f`` at the target, and
    ``fits`` whether the row L1 error of their plan is at most
    :data:`AXIS_START_MAX_ROW_ERROR`: then Newton steps start there with no
    sweep and no stage. The check costs one exponential pass more than the
    start itself (whose ``g`` it computes). Measured on 89 pairs of colour
    palettes, grey-level photos, digits, multi-resolution digits, flow
    batches of 1,024 and 2-D and 3-D Gaussian mixtures at 1e-3 to 1e-2
    (``python benchmarks/axis_start.py``): where the check holds (38 pairs)
    the start without sweeps took a median 0.61x the time of the annealed
    start and was slower on 4 (1.04x on a 2-D mixture, 1.13-2.02x on
    photos); where it does not (51 pairs) it lost more than it won (median
    1.09x, up to 6x on 2-D mixtures).
    """
    if plan is None or self.annealing != "auto" or not axis_start_applies(geom):
      return None
    f = axis_potential(geom, a, b)
    g, rows = newton.column_update_rows(cost, b, f, geom.epsilon, transposed)
    fits = jnp.sum(jnp.where(a > 0, jnp.abs(rows - a), 0.0)) <= AXIS_START_MAX_ROW_ERROR
    return f, g, fits

  def _newton_start(
    self,
    cost: jax.Array,
    b: jax.Array,
    f: jax.Array,
    g: jax.Array,
    k: jax.Array,
    scheduled: bool,
    g_predicted: bool,
    epsilon: Any,
    axis: Any,
    transposed: bool,
  ) -> jax.Array:
    """Where Newton steps start: the potential of the side with fewer atoms.

    Newton moves ``f`` (``[n]``) when ``transposed`` (``n < m``; ``cost`` is
    then ``[m, n]``), else ``g`` (``[m]``; ``cost`` is ``[n, m]``). After
    sweeps (``k > 0``) that potential is the sweeps'; a prediction of ``g``
    is kept. A cold start with no sweep begins from ``axis``
    (:meth:`_axis_start`) where it applies, else from ``f`` (zeros, as OTT
    starts), ``g`` then its column update at ``epsilon``.
    """
    if axis is not None:
      f_axis, g_axis, _ = axis
      return jnp.where(k > 0, f, f_axis) if transposed else jnp.where(k > 0, g, g_axis)
    if transposed:
      return f
    if g_predicted:
      return g
    start_g = lambda: newton.column_update(cost, b, f, epsilon)  # noqa: E731
    return jax.lax.cond(k > 0, lambda: g, start_g) if scheduled else start_g()

  def _iterate(self, prob: linear_problem.LinearProblem, init: Any, init_kwargs: Any, level: Optional[int] = None):
    """The solve on this solver's path: ``(f [n], g [m], errors [max_iterations])``; ``level``: of the compaction."""
    geom, a, b = prob.geom, prob.a, prob.b
    use_newton = self.uses_newton(prob)
    points = has_points(geom)
    theta = self._directions(geom.y.shape[-1], geom.y.dtype) if points else None
    px = py = None
    if points and (not use_newton or (self.shares_projections and init is None)):
      px, py = self._target_projections(theta, geom.x, geom.y)
    f, g, g_predicted = self._start(prob, px, py, init, init_kwargs)
    plan = self._schedule(init, use_newton)
    if use_newton:  # on the weights' support where it is a fraction of the atoms
      solve = functools.partial(self._newton_path, plan=plan, g_predicted=g_predicted)
      return solve_compacted(solve, geom, a, b, f, g, level) if compaction_applies(geom) else solve(geom, a, b, f, g)
    f, g, trace, k, _, _ = self._sweeps(geom, a, b, f, g, plan, use_newton=False)
    threshold = jnp.asarray(self.threshold, dtype=f.dtype)
    if points:
      coefs = self._coefs(theta, f.dtype)
      f, g, trace = _solve(geom, a, b, f, g, py, coefs, threshold, self._static(), k, trace, progress=self._progress())
    else:  # no coordinates, no cost matrix (a Grid, an online geometry): (Anderson) Sinkhorn iterations
      coefs = (jnp.zeros((0, 1), f.dtype), jnp.zeros((1,), f.dtype))  # no correction
      static = self._static(every=0)
      f, g, trace = _solve(geom, a, b, f, g, None, coefs, threshold, static, k, trace, progress=self._progress())
    return f, g, trace

  def _sweeps(
    self,
    geom: Any,
    a: jax.Array,
    b: jax.Array,
    f: jax.Array,
    g: jax.Array,
    plan: Any,
    use_newton: bool,
    skip: Optional[jax.Array] = None,
    cost: Optional[jax.Array] = None,
    transposed: bool = False,
  ):
    """The annealing sweeps of ``plan`` (``None``: none): ``(f, g, trace, k, stage, epsilon of the sweeps)``.

    ``trace`` is ``[max_iterations]``, ``inf`` for the ``k`` sweeps; ``stage``
    is :func:`ottsliced.solvers.newton.newton_tail`'s (``None``: no stage).
    ``skip`` (traced boolean; ``None``: ``False``) runs neither. ``cost``:
    ``geom``'s ``[n, m]`` cost matrix where the caller holds it; the sweeps
    then take one pass over it each (:func:`~ottsliced.solvers.annealing.shifted_update`); ``[m, n]`` with
    ``transposed`` (static).
    """
    eps = geom.epsilon
    trace = -jnp.ones((self.max_iterations,), f.dtype)
    k = jnp.zeros((), jnp.int32)
    stage, eps_sweeps = None, eps
    if plan is None:
      return f, g, trace, k, stage, eps_sweeps
    scale = annealing_lib.mean_cost(geom, a, b)
    if use_newton and self.annealing == "auto":  # small epsilon: anneal to a multiple, Newton there first
      factor, min_ratio, stage_tol = annealing_lib.NEWTON_STAGE
      staged = scale > min_ratio * eps
      staged = staged if skip is None else staged & ~skip
      eps_sweeps = jnp.where(staged, factor * eps, eps)
      stage = (staged, eps_sweeps, jnp.maximum(jnp.asarray(self.threshold, eps_sweeps.dtype), stage_tol))
    eps0, sweeps, decay = plan(scale, eps_sweeps)
    sweeps = jnp.minimum(sweeps, self.max_iterations - 1)
    sweeps = sweeps if skip is None else jnp.where(skip, 0, sweeps)

    def shifted(w, f_, g_, e, axis, exact):  # the update of the side that ``axis`` reduces over
      if cost is None:
        return exact()
      if transposed:  # rows of the stored matrix are the columns' atoms
        return annealing_lib.shifted_update(cost, w, g_, f_, e, 1 - axis, exact)
      return annealing_lib.shifted_update(cost, w, f_, g_, e, axis, exact)

    def rows(g_, e, f_last):
      return shifted(a, f_last, g_, e, 1, lambda: _update(geom, a, f, g_, e, axis=1))

    def cols(f_, e, g_last):
      return shifted(b, f_, g_last, e, 0, lambda: _update(geom, b, f_, g, e, axis=0))

    report, steps = self._progress(), jnp.arange(self.max_iterations)
    progress = None if report is None else lambda done: report(done, jnp.where(steps < done, jnp.inf, -1.0))
    f, g = annealing_lib.anneal(rows, cols, f, g, eps0, sweeps, decay, eps_sweeps, progress=progress)
    trace = jnp.where(jnp.arange(self.max_iterations) < sweeps, jnp.inf, trace)
    return f, g, trace, sweeps, stage, eps_sweeps

  def _newton_path(
    self, geom: Any, a: jax.Array, b: jax.Array, f: jax.Array, g: jax.Array, *, plan: Any, g_predicted: bool
  ) -> Tuple[jax.Array, jax.Array, jax.Array]:
    """Sweeps, then Newton steps on the stored plan from ``(f [n], g [m])``: ``(f, g, trace)``.

    Newton moves the potential of the side with fewer atoms, ``f`` when
    ``n < m``; the cost matrix is then formed as ``[m, n]`` (:func:`cost_matrix`)
    and every pass reads it in that layout.
    """
    n, m = geom.shape
    transposed = n < m
    cost = cost_matrix(geom, transposed)
    axis = self._axis_start(geom, cost, a, b, plan, transposed)
    skip = None if axis is None else axis[2]
    f, g, trace, k, stage, eps_sweeps = self._sweeps(
      geom, a, b, f, g, plan, use_newton=True, skip=skip, cost=cost, transposed=transposed
    )
    start = self._newton_start(cost, b, f, g, k, plan is not None, g_predicted, eps_sweeps, axis, transposed)
    state = newton.newton_tail(
      cost,
      *((b, a) if transposed else (a, b)),
      geom.epsilon,
      start,
      k,
      trace,
      jnp.asarray(self.threshold, dtype=f.dtype),
      min_iterations=self.min_iterations,
      cg_iterations=self.cg_iterations,
      cg_tolerance=self.cg_tolerance,
      direct=self.newton_solve == "direct",
      fallback=self.newton_solve == "auto" and min(geom.shape) <= DIRECT_MAX,
      progress=self._progress(),
      stage=stage,
    )
    return (state.g, state.f, state.trace) if transposed else (state.f, state.g, state.trace)

  def correction_state(self, prob: linear_problem.LinearProblem) -> CorrectionState:
    """Where a ``(K + 1)``-th correction would start: after iteration 1 and this solver's ``K`` corrections.

    The same iterations as :meth:`__call__` (the line search included), with
    no stop on the error: the state a fitter of the next correction's
    coefficients regresses from (:func:`ottsliced.fitting.corrections.fit_correction_steps`).
    """
    geom, a, b, py, f, g = self._prepare(prob, None)
    coefs = self._coefs(self._directions(geom.y.shape[-1], geom.y.dtype), f.dtype)
    static = self._static(
      max_iterations=1 + self.num_corrections, min_iterations=0, every=0, anderson_memory=0, safeguard=False
    )
    f, g, _ = _solve(geom, a, b, f, g, py, coefs, 0.0, static)
    g_next = geom.update_potential(f, g, jnp.log(b), axis=0)
    return CorrectionState(g_next, column_marginal(b, g, g_next, geom.epsilon), py)

  def fixed_iterations_errors(self, prob: linear_problem.LinearProblem, num_iterations: int) -> jax.Array:
    """The error trace ``[num_iterations]`` of exactly ``num_iterations`` iterations, differentiable.

    The same iterations as :meth:`__call__` (corrections, line search,
    Anderson) with no stop on the error and a ``lax.scan`` instead of a
    ``while_loop``, so reverse-mode gradients reach the coefficients
    (:func:`ottsliced.fitting.corrections.fit_correction_steps` with ``method="sweeps"``).
    """
    num_iterations = int(num_iterations)
    if num_iterations < 1 + self.num_corrections:
      raise ValueError(f"`num_iterations` must be >= 1 + K = {1 + self.num_corrections}, got {num_iterations}.")
    geom, a, b, py, f, g = self._prepare(prob, None)
    coefs = self._coefs(self._directions(geom.y.shape[-1], geom.y.dtype), f.dtype)
    static = self._static(max_iterations=num_iterations, min_iterations=0, safeguard=False)
    _, _, trace = _solve(geom, a, b, f, g, py, coefs, 0.0, static, fixed=True)
    return trace

  def _progress(self) -> Optional[Callable[[jax.Array, jax.Array], None]]:
    """``progress_fn`` as OTT calls it, every ``inner_iterations`` iterations (``None`` without one).

    OTT's callback receives ``(iteration, inner_iterations, max_iterations,
    state)`` with ``iteration`` the index of the current iteration and
    ``state.errors`` one error per ``inner_iterations`` (OTT's
    ``ott.utils.default_progress_fn`` and ``tqdm_progress_fn`` read these).
    """
    fn, inner, total = self.progress_fn, self.inner_iterations, self.max_iterations
    if fn is None:
      return None

    def report(done: jax.Array, trace: jax.Array) -> None:
      def call():
        errors = trace[inner - 1 :: inner][:, None]
        jax.debug.callback(fn, (done - 1, inner, total, ProgressState(errors)))

      jax.lax.cond(done % inner == 0, call, lambda: None)

    return report

  _STATIC_FIELDS = (
    "line_search",
    "max_iterations",
    "min_iterations",
    "every",
    "anderson_memory",
    "anderson_ridge",
    "safeguard",
    "stop_after_rejection",
  )

  def _static(self, **overrides: Any) -> Tuple[Any, ...]:
    """The loop's static settings (``_solve``'s ``static``), with ``overrides`` by field name."""
    unknown = set(overrides) - set(self._STATIC_FIELDS)
    if unknown:
      raise TypeError(f"unknown static settings {sorted(unknown)}")
    return tuple(overrides.get(name, getattr(self, name)) for name in self._STATIC_FIELDS)

  def _aux(self) -> Tuple[Any, ...]:
    extra = (self.tail, self.annealing, self.max_plan_entries, self.newton_solve, self.cg_iterations, self.cg_tolerance)
    ott = (self.inner_iterations, self.progress_fn, self.recenter_potentials, self.ott_options)
    return (*self._static(), self.shares_projections, *extra, *ott)

  # ---------------------------------------------------------------- pytree
  def tree_flatten(self):  # noqa: D102
    children = (self.theta, self.coef, self.every_coef, self.initializer, self.threshold, self.support)
    return children, self._aux()

  @classmethod
  def tree_unflatten(cls, aux, children):  # noqa: D102
    obj = object.__new__(cls)
    obj.theta, obj.coef, obj.every_coef, obj.initializer, obj.threshold, obj.support = children
    obj.line_search, obj.max_iterations, obj.min_iterations, obj.every, obj.anderson_memory = aux[:5]
    obj.anderson_ridge, obj.safeguard, obj.stop_after_rejection, obj.shares_projections = aux[5:9]
    obj.tail, obj.annealing, obj.max_plan_entries, obj.newton_solve, obj.cg_iterations, obj.cg_tolerance = aux[9:15]
    obj.inner_iterations, obj.progress_fn, obj.recenter_potentials, obj.ott_options = aux[15:]
    return obj

  def __repr__(self) -> str:
    dirs = "theta=None" if self.theta is None else f"L={self.theta.shape[0]}, d={self.theta.shape[1]}"
    return (
      f"SlicedSinkhorn({dirs}, tail={self.tail!r}, annealing={self.annealing!r}, "
      f"corrections={self.num_corrections}, initializer={type(self.initializer).__name__}, "
      f"bound={self.support is not None})"
    )


def _output(
  solver: SlicedSinkhorn, prob: linear_problem.LinearProblem, init: Any, init_kwargs: Any, level: Optional[int]
) -> sinkhorn.SinkhornOutput:
  """The body of :meth:`SlicedSinkhorn.__call__` on this solver's path, after the host-side checks.

  ``level`` is the compaction level where the weights are concrete
  (:func:`~ottsliced.solvers.compaction.static_level`), else ``None``.
  """
  f, g, trace = _implicit_potentials(solver, prob, init, init_kwargs, level)
  if solver.recenter_potentials:  # OTT's balanced recentering: f of mean zero over its finite entries
    finite = jnp.isfinite(f)
    shift = jnp.sum(jnp.where(finite, f, 0.0)) / jnp.sum(finite)
    f, g = f - shift, g + shift
  threshold = jnp.asarray(solver.threshold, dtype=f.dtype)
  last = jnp.maximum(jnp.sum(trace != -1) - 1, 0)
  err = trace[last]
  out = sinkhorn.SinkhornOutput(
    (f, g), errors=trace, threshold=threshold, converged=jnp.isfinite(err) & (err < threshold), inner_iterations=1
  )
  use_danskin = solver.ott_keywords["use_danskin"]
  use_danskin = True if use_danskin is None else bool(use_danskin)
  return out.set_cost(prob, lse_mode=True, use_danskin=use_danskin).set(ot_prob=prob)


# One compiled program per shapes and options: an eager call compiles once and later calls with the same shapes
# reuse it (run op by op, each call would compile its loops again); inside a user's jit it is inlined.
_output_compiled = jax.jit(_output, static_argnames="level")


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _implicit_potentials(
  solver: SlicedSinkhorn, prob: linear_problem.LinearProblem, init: Any, init_kwargs: Any, level: Optional[int]
):
  """``solver._iterate``, differentiated implicitly by the solver's ``ImplicitDiff`` (as OTT's ``Sinkhorn``)."""
  return solver._iterate(prob, init, init_kwargs, level)


def _implicit_potentials_fwd(solver, prob, init, init_kwargs, level):
  f, g, trace = solver._iterate(prob, init, init_kwargs, level)
  return (f, g, trace), (f, g, prob, solver)


def _implicit_potentials_bwd(level, res, cotangents):
  # The optimality conditions at the returned (f, g), pulled back to the problem (geometry and weights);
  # no cotangent for the solver's leaves, the start or the error trace.
  f, g, prob, solver = res
  implicit_diff = solver.ott_keywords["implicit_diff"]
  (prob_cotangent,) = implicit_diff.gradient(prob, f, g, True, cotangents[:2])
  return None, prob_cotangent, None, None


_implicit_potentials.defvjp(_implicit_potentials_fwd, _implicit_potentials_bwd)


def _solve(geom, a, b, f, g, py, coefs, threshold, static, k0=None, trace=None, fixed=False, progress=None):
  """The loop: ``(f [n], g [m], errors [max_iterations])``; ``fixed``: all ``max_iterations``, as a ``lax.scan``.

  ``k0`` iterations are already in ``trace`` (annealing): the loop continues it.
  """
  line_search, max_iterations, min_iterations, every, memory, ridge, safeguard, stop_after_rejection = static
  coef, every_coef = coefs
  eps = geom.epsilon
  log_a, log_b = jnp.log(a), jnp.log(b)
  t_b = lambda f, g: geom.update_potential(f, g, log_b, axis=0)  # noqa: E731  columns exact
  t_a = lambda f, g: geom.update_potential(f, g, log_a, axis=1)  # noqa: E731  rows exact
  threshold = jnp.asarray(threshold, f.dtype)
  mult = jnp.asarray(line_search, f.dtype)

  def finish(k, f, g, g_next, trace, history, active):
    # (f, g) has exact rows; g_next = T_b f gives its column marginal and error.
    err = jnp.sum(jnp.abs(column_marginal(b, g, g_next, eps) - b))
    err = reported_error(err, k, min_iterations, max_iterations)
    trace = trace.at[k].set(err)
    if progress is not None:
      progress(k + 1, trace)
    stop = (k + 1 >= max_iterations) | (((k + 1) >= max(min_iterations, 1)) & ~(err >= threshold))
    return (k + 1, f, g, g_next, trace, stop, history, active)

  def plain(state):
    k, f, g, g_next, trace, _, history, active = state
    f = t_a(f, g_next)
    return finish(k, f, g_next, t_b(f, g_next), trace, history, active)

  def accelerated(state):
    # Anderson on the map g -> T_b T_a g: the extrapolated g keeps the error free (f = T_a g, then T_b f).
    k, f, g, g_next, trace, _, (g_in, g_out, filled), active = state
    g_in = jnp.concatenate([g_in[1:], g[None]])
    g_out = jnp.concatenate([g_out[1:], g_next[None]])
    filled = filled + 1
    g_ex = _anderson_extrapolation(g_in, g_out, b, ridge)
    use = (filled >= memory) & jnp.all(jnp.isfinite(g_ex) | (b <= 0))
    g_new = jnp.where(use, g_ex, g_next)
    f = t_a(f, g_new)
    return finish(k, f, g_new, t_b(f, g_new), trace, (g_in, g_out, filled), active)

  def corrected(coef_k, state):
    k, f, g, g_next, trace, _, history, active = state
    c = column_marginal(b, g, g_next, eps)
    psi = sliced.combined_source_potentials(py, py, b, c, coef_k)
    psi = jnp.where(b > 0, psi, 0.0).astype(g_next.dtype)
    if len(line_search) == 1:
      g_new = g_next + mult[0] * psi
      f_new = t_a(f, g_new)
    else:
      cands = g_next[None] + mult[:, None] * psi[None]
      fs = jax.vmap(lambda gc: t_a(f, gc))(cands)
      duals = jax.vmap(lambda fc, gc: _dual(a, b, fc, gc))(fs, cands)
      best = jnp.argmax(jnp.where(jnp.isnan(duals), -jnp.inf, duals))
      g_new, f_new = cands[best], fs[best]
      if stop_after_rejection:  # the plain update won: this problem's slow modes are not sliced ones
        active = active & (mult[best] != 0)
    return finish(k, f_new, g_new, t_b(f_new, g_new), trace, history, active)

  step = accelerated if memory else plain

  def correct_if_active(coef_k, state):
    if not stop_after_rejection:  # always active: no cond (under vmap it would run both branches)
      return corrected(coef_k, state)
    return jax.lax.cond(state[7], functools.partial(corrected, coef_k), step, state)

  trace = -jnp.ones((max_iterations,), f.dtype) if trace is None else trace
  k0 = jnp.zeros((), jnp.int32) if k0 is None else k0
  history = (jnp.zeros((memory, b.shape[0]), f.dtype),) * 2 + (jnp.zeros((), jnp.int32),)
  g_next = t_b(f, g)
  start = (k0, f, g, g_next, trace, jnp.zeros((), bool), history, jnp.ones((), bool))
  state = plain(start)
  body = _body(step, corrected, every, coef, every_coef)
  if safeguard and not fixed:
    return _race(state, coef, correct_if_active, body, plain, threshold)
  for coef_k in coef:  # static K: unrolled, each skipped once the pair stopped or a correction was rejected
    state = jax.lax.cond(state[5], lambda s: s, functools.partial(correct_if_active, coef_k), state)
  if fixed:
    state, _ = jax.lax.scan(lambda s, _: (body(s), None), state, None, length=max_iterations - 1 - len(coef))
  else:
    state = jax.lax.while_loop(lambda s: ~s[5], body, state)
  f, g, trace = state[1], state[2], state[4]
  return f, g, trace


def _body(step, corrected, every, coef, every_coef):
  """One iteration after the corrections: ``step``, or a periodic correction every ``every`` iterations."""
  if not every:
    return step
  first = 1 + len(coef) + every  # iterations done before the first periodic correction

  def body(state):
    due = (state[0] >= first) & ((state[0] - first) % every == 0) & state[7]
    return jax.lax.cond(due, functools.partial(corrected, every_coef), step, state)

  return body


def _race(state, coef, corrected, body, plain, threshold):
  """The safeguard: the corrected iterations and plain Sinkhorn's, in lockstep from iteration 1.

  Both stop at the first iteration where either meets the threshold; the
  corrected one is returned unless only plain Sinkhorn converged. The count
  is then never above plain Sinkhorn's; an iteration costs two more kernel passes.
  """

  def both(fn):
    def run(pair):
      main, shadow = fn(pair[0]), plain(pair[1])
      stop = main[5] | shadow[5]
      return (*main[:5], stop, *main[6:]), (*shadow[:5], stop, *shadow[6:])

    return run

  pair = (state, state)
  for coef_k in coef:
    pair = jax.lax.cond(pair[0][5], lambda p: p, both(functools.partial(corrected, coef_k)), pair)
  main, shadow = jax.lax.while_loop(lambda p: ~p[0][5], both(body), pair)

  def met(s):
    return s[4][jnp.maximum(s[0] - 1, 0)] < threshold

  use_shadow = met(shadow) & ~met(main)
  f, g, trace = (jnp.where(use_shadow, shadow[i], main[i]) for i in (1, 2, 4))
  return f, g, trace


def _anderson_extrapolation(g_in: jax.Array, g_out: jax.Array, b: jax.Array, ridge: float) -> jax.Array:
  """Anderson mixing of the last ``M`` outputs ``g_out [M, m]`` of a fixed-point map (OTT's normalised ridge form).

  Weights ``w`` solve ``(R Rᵀ / ||R Rᵀ|| + ridge I) w = 1`` with residuals
  ``R = g_out - g_in`` on positive-weight atoms, normalised to sum to one.
  """
  ok = b > 0
  res = jnp.where(ok, g_out - g_in, 0.0)
  gram = res @ res.T
  gram = gram / jnp.linalg.norm(gram)
  w = jnp.linalg.solve(gram + ridge * jnp.eye(gram.shape[0], dtype=gram.dtype), jnp.ones(gram.shape[0], gram.dtype))
  w = w / jnp.sum(w)
  return jnp.where(ok, jnp.sum(w[:, None] * jnp.where(ok, g_out, 0.0), axis=0), -jnp.inf)
