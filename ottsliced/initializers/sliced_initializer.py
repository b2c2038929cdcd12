"""The fitted amortized model, usable as an OTT Sinkhorn initializer."""

from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from ott.geometry import pointcloud
from ott.initializers.linear import initializers
from ott.problems.linear import linear_problem

from ottsliced import sliced
from ottsliced._internal import npz, validation
from ottsliced.initializers.heads import HEADS, MLPHead, PairHead, pair_summary
from ottsliced.sliced.support import BoundSupport, bind_supports, bound_projections

__all__ = ["FORMAT_VERSION", "SlicedInitializer", "linear_potential"]

FORMAT_VERSION = 3  # 2: models with a head; 3: with correction coefficients (files with neither: version 1)
_FORMAT = "ottsliced.SlicedInitializer"
_METHODS = ("ra", "oa", "sweeps")  # how alpha (and the head) were fitted


class _Summary(dict):
  """Training summary carried as static data that never causes a retrace."""

  def __eq__(self, other: Any) -> bool:
    return isinstance(other, _Summary)

  def __hash__(self) -> int:
    return 0


def _points(geom: Any) -> Tuple[jax.Array, jax.Array]:
  if not isinstance(geom, pointcloud.PointCloud):
    raise ValueError(
      f"SlicedInitializer needs point coordinates, got a {type(geom).__name__} geometry; "
      "build the problem on a PointCloud."
    )
  return geom.x, geom.y


_SAME = object()  # `bind(x)`: the target support is the source support


def _same_points(z: jax.Array, bound: jax.Array) -> bool:
  return z is bound or (z.shape == bound.shape and bool(np.array_equal(np.asarray(z), np.asarray(bound))))


def _safe_log(w: jax.Array) -> jax.Array:
  return jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), 0.0)


def linear_potential(phi: jax.Array, coef: jax.Array, w: jax.Array, epsilon: Any, log_weight_offset: bool) -> jax.Array:
  r""":math:`\Phi c(+\varepsilon\log w)` ``[n]``: the model's potential, finite everywhere."""
  f = jnp.matmul(phi, coef, precision=jax.lax.Precision.HIGHEST)
  return f + epsilon * _safe_log(w) if log_weight_offset else f


@jax.tree_util.register_pytree_node_class
class SlicedInitializer(initializers.DefaultInitializer):
  r"""Amortized Sinkhorn initializer :math:`\hat f=\Phi\alpha` from sliced potentials.

  :math:`\Phi` (``[n, L]``) holds the exact 1-D OT potentials of the source on
  the ``L`` fixed directions ``theta`` (:func:`ottsliced.sliced_potentials`);
  ``alpha`` is shared by all atoms and pairs, so one model serves any ``n``.
  An optional ``head`` (:class:`~ottsliced.initializers.heads.MLPHead`, fitted by
  :func:`ottsliced.fit_head`) adds a per-atom residual
  :math:`h(\varphi_i, x_i)` with parameters shared likewise. Optional
  ``corrections`` (``[K, L]``, fitted by :func:`ottsliced.fit_correction_steps`)
  are the coefficients of the sliced corrections that
  :meth:`ottsliced.SlicedSinkhorn.from_initializer` applies after the
  model's start: the model's second head, inside the solver, on the same
  directions.

  Build it with :func:`ottsliced.fit_ra` or :func:`ottsliced.fit_oa`. It is a
  pytree (children ``theta, alpha, beta``, the head, the corrections, the bound supports; the rest is
  static), so it can be a ``jax.jit`` argument: a new ``alpha`` reuses the
  compiled function. :meth:`bind` sorts fixed supports once for every later
  prediction (saved models hold no supports: bind after :meth:`load`).

  Args:
    theta: directions ``[L, d]``.
    alpha: source coefficients ``[L]``.
    beta: optional target coefficients ``[L]`` (g-side model).
    method: how ``alpha`` was fitted: ``"ra"`` (regression), ``"oa"`` (dual) or
      ``"sweeps"`` (error after Sinkhorn sweeps, :func:`ottsliced.fit_head`).
    epsilon: the entropic regularisation the model was fitted at.
    centering: gauge of the features, see :func:`ottsliced.sliced_potentials`.
    log_weight_offset: add :math:`\varepsilon\log a` to :math:`\Phi\alpha`
      (OTT's convention for the reduced potential; RA-OT's parametrisation).
    allow_epsilon_mismatch: accept problems at another epsilon.
    summary: JSON-serialisable training summary (static, never retraces).
    support: supports the model is bound to (built by :meth:`bind`).
    head: optional residual (f side only): :class:`~ottsliced.initializers.heads.MLPHead`,
      per atom on ``[phi_i, x_i]`` (its predictions need the source points,
      ``x`` of :meth:`predict_from_projections`), or
      :class:`~ottsliced.initializers.heads.PairHead`, per-pair coefficients.
    corrections: optional ``[K, L]`` per-direction coefficients of ``K``
      sliced corrections fitted for this model's start
      (:func:`ottsliced.fit_correction_steps`; ``CorrectionFit.model``
      attaches them); :meth:`ottsliced.SlicedSinkhorn.from_initializer` uses
      them as its ``steps``. They do not change the model's prediction.
  """

  def __init__(
    self,
    theta: jax.Array,
    alpha: jax.Array,
    beta: Optional[jax.Array] = None,
    *,
    method: str = "ra",
    epsilon: float = 1.0,
    centering: sliced.Centering = "weighted",
    log_weight_offset: bool = True,
    allow_epsilon_mismatch: bool = False,
    summary: Optional[Dict[str, Any]] = None,
    support: Optional[BoundSupport] = None,
    head: Optional[MLPHead] = None,
    corrections: Optional[jax.Array] = None,
  ):
    super().__init__()
    if method not in _METHODS:
      raise ValueError(f"`method` must be one of {_METHODS}, got {method!r}.")
    sliced.check_centering(centering)  # noqa: SLF001
    if head is not None and not isinstance(head, tuple(HEADS.values())):
      raise TypeError(
        f"`head` must be an ottsliced.initializers.heads.MLPHead, PairHead or None, got {type(head).__name__}."
      )
    if validation.is_concrete(theta, alpha):
      if np.ndim(theta) != 2 or np.ndim(alpha) != 1 or np.shape(alpha)[0] != np.shape(theta)[0]:
        raise ValueError(f"need theta [L, d] and alpha [L], got {np.shape(theta)} and {np.shape(alpha)}.")
      if beta is not None and np.shape(beta) != np.shape(alpha):
        raise ValueError(f"`beta` must have shape {np.shape(alpha)}, got {np.shape(beta)}.")
      validation.check_epsilon(epsilon)
      if isinstance(head, MLPHead) and head.num_inputs != np.shape(theta)[0] + np.shape(theta)[1]:
        raise ValueError(
          f"the head takes {head.num_inputs} inputs but the model's features and points have "
          f"L + d = {np.shape(theta)[0] + np.shape(theta)[1]}."
        )
      if corrections is not None and validation.is_concrete(corrections):
        shape, num = np.shape(corrections), np.shape(theta)[0]
        if len(shape) != 2 or shape[0] < 1 or shape[1] != num:
          raise ValueError(f"`corrections` must be [K >= 1, L={num}] coefficients, got shape {shape}.")
        if not np.all(np.isfinite(np.asarray(corrections))):
          raise ValueError("`corrections` must be finite.")
      if isinstance(head, PairHead) and head.num_projections != np.shape(theta)[0]:
        raise ValueError(
          f"the pair head outputs {head.num_projections} coefficients but the model has L = {np.shape(theta)[0]}."
        )
    self.head = head
    self.corrections = corrections
    self.theta, self.alpha, self.beta = theta, alpha, beta
    self.method = method
    self.epsilon = float(epsilon)
    self.centering = centering
    self.log_weight_offset = bool(log_weight_offset)
    self.allow_epsilon_mismatch = bool(allow_epsilon_mismatch)
    self.summary = summary if isinstance(summary, _Summary) else _Summary(summary or {})
    self.support = support

  # ---------------------------------------------------------------- properties
  @property
  def num_projections(self) -> int:
    """Number of directions ``L``."""
    return self.theta.shape[0]

  @property
  def dim(self) -> int:
    """Dimension ``d`` of the points the model accepts."""
    return self.theta.shape[1]

  def replace(self, **kwargs: Any) -> "SlicedInitializer":
    """A copy with some fields replaced (e.g. ``alpha=...``)."""
    children, aux = self.tree_flatten()
    fields = dict(zip(("theta", "alpha", "beta", "support", "head", "corrections"), children), **aux)
    fields.update(kwargs)
    theta, alpha, beta = fields.pop("theta"), fields.pop("alpha"), fields.pop("beta")
    return SlicedInitializer(theta, alpha, beta, **fields)

  # ---------------------------------------------------------------- bound supports
  def bind(self, x: Optional[jax.Array], y: Any = _SAME) -> "SlicedInitializer":
    """A copy bound to fixed supports, whose projections are sorted once, here.

    Sorting the ``L`` projections is the expensive step of a prediction on a
    CPU (about 10 ms for ``[100, 784]``, against about 2 ms for the rest). A
    support shared by many problems (an image grid, fixed sphere locations, the
    few grids of a multi-resolution data set) is sorted once by binding; every
    later prediction on a problem with that support (``Sinkhorn(initializer=
    bound)``, :func:`~ottsliced.amortized_solve`, the batch APIs) reuses the
    sorted projections, which are pytree leaves: a ``jax.jit`` caller passes
    them as arguments, and a caller closing over the model inside its own
    ``jax.jit`` gets them as constants, with no sort for XLA to constant-fold
    at compile time.

    Args:
      x: source support ``[n, d]``, a bank of ``K`` supports ``[K, n, d]``
        (a problem may use any of them; pad them to one size with
        :meth:`ProblemBatch.from_problems`, see :meth:`ProblemBatch.supports`),
        or ``None`` to leave the source unbound (sorted on every call).
      y: target support(s), likewise; omitted: the same as ``x`` (sorted once),
        ``None``: unbound.

    Returns:
      The bound model. A problem whose support has another shape than a bound
      one raises ``ValueError``; a support of the right shape that is none of
      the bound ones raises too when the points are concrete, and is sorted
      (correct, not faster) when they are traced.
    """
    same = y is _SAME or y is x
    bx, px = (None, None) if x is None else bind_supports(self.theta, x, "x")
    if same or (x is not None and y is not None and np.shape(y) == np.shape(x) and _same_points(jnp.asarray(y), x)):
      by, py = bx, px
    else:
      by, py = (None, None) if y is None else bind_supports(self.theta, y, "y")
    return self.replace(support=BoundSupport(bx, by, px, py))

  def unbind(self) -> "SlicedInitializer":
    """A copy without bound supports."""
    return self.replace(support=None)

  def side_projections(self, side: str, z: jax.Array) -> sliced.SortedProjections:
    """Sorted projections of one support (``side`` ``"x"`` or ``"y"``), the bound ones where they apply."""
    sup = self.support or BoundSupport(None, None, None, None)
    bank, bank_p = (sup.x, sup.px) if side == "x" else (sup.y, sup.py)
    return bound_projections(self.theta, side, z, bank, bank_p)

  def projections(self, x: jax.Array, y: jax.Array) -> Tuple[sliced.SortedProjections, sliced.SortedProjections]:
    """Sorted projections of the supports ``x [n, d]`` and ``y [m, d]``: the bound ones where they apply.

    When ``y`` is ``x`` (one array), it is looked up or sorted once.
    """
    sup = self.support or BoundSupport(None, None, None, None)
    px = self.side_projections("x", x)
    if y is x and sup.y is sup.x:
      return px, px
    return px, self.side_projections("y", y)

  # ---------------------------------------------------------------- prediction
  def _check_problem(self, x: jax.Array, y: jax.Array, epsilon: Any) -> None:
    for name, z in (("x", x), ("y", y)):
      if z.shape[-1] != self.dim:
        raise ValueError(
          f"the problem's {name} has dimension {z.shape[-1]} but the model was fitted with d={self.dim}; "
          "use a model fitted on points of this dimension."
        )
    validation.check_epsilon(epsilon, self.epsilon, self.allow_epsilon_mismatch)

  def raw_potential(
    self, phi: jax.Array, a: jax.Array, epsilon: Any, x: Optional[jax.Array] = None, summary: Any = None
  ) -> jax.Array:
    r""":math:`\Phi\alpha(+h)(+\varepsilon\log a)` ``[n]``, without the fallback.

    ``x [n, d]`` (the source points) is needed by an :class:`~ottsliced.initializers.heads.MLPHead`,
    ``summary`` (:meth:`head_summary`) by a :class:`~ottsliced.initializers.heads.PairHead`.
    """
    f = linear_potential(phi, self.alpha, a, epsilon, self.log_weight_offset)
    if self.head is None:
      return f
    if x is None and not self.head.needs_summary:
      raise ValueError("a model with a head needs the source points `x` to predict.")
    return f + self.head(phi, x, summary)

  def head_summary(
    self, px: sliced.SortedProjections, py: sliced.SortedProjections, a: jax.Array, b: jax.Array, phi, psi
  ) -> Optional[jax.Array]:
    """The pair summary a :class:`~ottsliced.initializers.heads.PairHead` needs (``None`` for other models)."""
    if self.head is None or not self.head.needs_summary:
      return None
    return pair_summary(px, py, a, b, phi, psi)

  @staticmethod
  def is_finite_prediction(f: jax.Array, a: jax.Array) -> jax.Array:
    """Whether ``f`` is finite on every positive-weight atom (else: fallback to zeros)."""
    return jnp.all(jnp.isfinite(f) | (a <= 0))

  def potentials_from_features(
    self,
    phi: jax.Array,
    psi: jax.Array,
    a: jax.Array,
    b: jax.Array,
    epsilon: Any,
    x: Optional[jax.Array] = None,
    summary: Any = None,
  ) -> Tuple[jax.Array, Optional[jax.Array]]:
    r"""Model output from features, in OTT's convention (finite everywhere).

    Args:
      phi: source features ``[n, L]``.
      psi: target features ``[m, L]`` (``None`` unless the model has ``beta``).
      a: source weights ``[n]``.
      b: target weights ``[m]``.
      epsilon: the problem's epsilon.
      x: source points ``[n, d]`` (a model with an MLP head needs them).
      summary: the pair summary (a model with a pair head needs it, :meth:`head_summary`).

    Returns:
      ``(f [n], g [m] or None)``: :math:`\hat f=\Phi\alpha(+\varepsilon\log a)`,
      and :math:`\hat g=\Phi_g\beta+\varepsilon\log b` when the model has
      ``beta``. If the prediction is non-finite on a positive-weight atom the
      whole ``f`` falls back to zeros (plain Sinkhorn's start).
    """
    f = self.raw_potential(phi, a, epsilon, x, summary)
    ok = self.is_finite_prediction(f, a)
    f = jnp.where(ok & (a > 0), f, 0.0)
    g = None
    if self.beta is not None:
      psi_c = psi - jnp.sum(b[:, None] * psi, axis=0) / jnp.sum(b)
      g = linear_potential(psi_c, self.beta, b, epsilon, True)
      g = jnp.where(jnp.isfinite(g) & (b > 0), g, 0.0)
    return f, g

  def features(
    self, px: sliced.SortedProjections, py: sliced.SortedProjections, a: jax.Array, b: jax.Array
  ) -> Tuple[jax.Array, Optional[jax.Array]]:
    """The features a prediction needs: ``(phi [n, L], psi [m, L] or None)``.

    An f-side model with ``"weighted"`` or ``"none"`` centering needs ``phi``
    on positive-weight atoms only (predictions are masked elsewhere), which
    :func:`ottsliced.sliced.potentials.source_potentials_sorted` computes with about a
    third of the work; other models get :func:`~ottsliced.sliced.potentials.sliced_potentials_sorted`.
    """
    pair_head = self.head is not None and self.head.needs_summary
    if self.beta is None and self.centering != "mean" and not pair_head:
      return sliced.source_potentials_sorted(px, py, a, b, self.centering), None
    return sliced.sliced_potentials_sorted(px, py, a, b, self.centering)

  def predict_from_projections(
    self,
    px: sliced.SortedProjections,
    py: sliced.SortedProjections,
    a: jax.Array,
    b: jax.Array,
    epsilon: Any,
    x: Optional[jax.Array] = None,
  ) -> Tuple[jax.Array, Optional[jax.Array], jax.Array]:
    r"""The model's potentials from sorted projections: ``(f [n], g [m] or None, fell_back [])``.

    An f-side model takes the fast path
    :func:`~ottsliced.sliced.potentials.combined_source_potentials`: :math:`\Phi\alpha`
    without forming :math:`\Phi`, equal to :meth:`potentials_from_features`
    up to a constant (a gauge: the centring of the features only shifts
    :math:`\hat f`, which neither the plan nor a warm start sees). A g-side
    model (``beta``) needs the full features. ``fell_back`` is true when the
    prediction was non-finite on a positive-weight atom and zeros were used.
    A model with a head needs the source points ``x [n, d]`` and the features.
    """
    if self.beta is None and self.head is None:
      f = sliced.combined_source_potentials(px, py, a, b, self.alpha.astype(px.values.dtype))
      f = f + epsilon * _safe_log(a) if self.log_weight_offset else f
      ok = self.is_finite_prediction(f, a)
      return jnp.where(ok & (a > 0), f, 0.0), None, ~ok
    phi, psi = self.features(px, py, a, b)
    summary = self.head_summary(px, py, a, b, phi, psi)
    ok = self.is_finite_prediction(self.raw_potential(phi, a, epsilon, x, summary), a)
    f, g = self.potentials_from_features(phi, psi, a, b, epsilon, x, summary)
    return f, g, ~ok

  def predict(
    self, x: jax.Array, y: jax.Array, a: jax.Array, b: jax.Array, epsilon: Any
  ) -> Tuple[jax.Array, Optional[jax.Array]]:
    """:meth:`predict_from_projections` on points ``x [n, d]``, ``y [m, d]`` (bound supports reused)."""
    self._check_problem(x, y, epsilon)
    f, g, _ = self.predict_from_projections(*self.projections(x, y), a, b, epsilon, x)
    return f, g

  def init_fu(  # noqa: D102
    self, ot_prob: linear_problem.LinearProblem, lse_mode: bool, rng: Optional[jax.Array] = None
  ) -> jax.Array:
    del rng
    x, y = _points(ot_prob.geom)
    f, _ = self.predict(x, y, ot_prob.a, ot_prob.b, ot_prob.geom.epsilon)
    return f if lse_mode else ot_prob.geom.scaling_from_potential(f)

  def predict_potentials(self, prob: linear_problem.LinearProblem) -> Tuple[jax.Array, jax.Array]:
    r"""Predicted potentials ``(f [n], g [m])`` in OTT's convention.

    ``f`` is the model's :math:`\hat f` and ``g`` its entropic c-transform
    :math:`\mathcal T_b\hat f` (or :math:`\hat g=\Phi_g\beta+\varepsilon\log b`
    for a g-side model); both are ``-inf`` at zero weights, like Sinkhorn's.
    """
    x, y = _points(prob.geom)
    f, g = self.predict(x, y, prob.a, prob.b, prob.geom.epsilon)
    f = jnp.where(prob.a > 0, f, -jnp.inf)
    if g is None:
      g = prob.geom.update_potential(f, jnp.zeros_like(prob.b), jnp.log(prob.b), axis=0)
    return f, jnp.where(prob.b > 0, g, -jnp.inf)

  # ---------------------------------------------------------------- pytree
  def tree_flatten(self):  # noqa: D102
    aux = {
      "method": self.method,
      "epsilon": self.epsilon,
      "centering": self.centering,
      "log_weight_offset": self.log_weight_offset,
      "allow_epsilon_mismatch": self.allow_epsilon_mismatch,
      "summary": self.summary,
    }
    return (self.theta, self.alpha, self.beta, self.support, self.head, self.corrections), aux

  @classmethod
  def tree_unflatten(cls, aux, children):  # noqa: D102
    theta, alpha, beta, support, head, corrections = children
    return cls(theta, alpha, beta, support=support, head=head, corrections=corrections, **aux)

  def __repr__(self) -> str:
    return (
      f"SlicedInitializer(method={self.method!r}, L={self.num_projections}, d={self.dim}, "
      f"epsilon={self.epsilon:g}, g_side={self.beta is not None}, bound={self.support is not None}"
      + ("" if self.head is None else f", head={self.head!r}")
      + ("" if self.corrections is None else f", corrections={self.corrections.shape[0]}")
      + ")"
    )

  # ---------------------------------------------------------------- storage
  def _arrays(self) -> Dict[str, np.ndarray]:
    arrays = {"theta": np.asarray(self.theta), "alpha": np.asarray(self.alpha)}
    if self.beta is not None:
      arrays["beta"] = np.asarray(self.beta)
    if self.head is not None:
      arrays.update(self.head.arrays())
    if self.corrections is not None:
      arrays["corrections"] = np.asarray(self.corrections)
    return arrays

  def _format_version(self) -> int:
    """The oldest format that holds this model (an older reader refuses a newer file, never mis-reads it)."""
    if self.corrections is not None:
      return 3
    return 2 if self.head is not None else 1

  def save(self, path: str) -> None:
    """Save to a portable ``.npz`` (arrays + JSON metadata), atomically.

    The metadata holds the format version, ``L``, ``d``, epsilon, method,
    centering, the head's widths, the training summary and a SHA-256 checksum
    of the arrays. A model with neither a head nor corrections is written as
    format version 1 (readable by every ottsliced), one with a head as
    version 2, one with corrections as version 3.
    """
    meta = {
      "format": _FORMAT,
      "format_version": self._format_version(),
      "num_projections": self.num_projections,
      "dim": self.dim,
      "epsilon": self.epsilon,
      "method": self.method,
      "centering": self.centering,
      "log_weight_offset": self.log_weight_offset,
      "g_side": self.beta is not None,
      "head": None if self.head is None else {"kind": self.head.kind, "hidden": list(self.head.hidden)},
      "summary": dict(self.summary),
    }
    npz.save_npz(path, self._arrays(), meta)

  @classmethod
  def load(cls, path: str, **overrides: Any) -> "SlicedInitializer":
    """Load a model written by :meth:`save`; ``overrides`` replace static fields.

    Raises:
      FileNotFoundError: no file at ``path``.
      ValueError: not an ottsliced model, a newer format version, a
        truncated or corrupted file (checksum mismatch), inconsistent shapes.
    """
    contents, meta = npz.load_npz(path, _FORMAT, FORMAT_VERSION)
    theta, alpha = contents["theta"], contents["alpha"]
    if theta.shape != (meta["num_projections"], meta["dim"]):
      raise ValueError(
        f"{path!r}: theta has shape {theta.shape}, metadata says L={meta['num_projections']}, d={meta['dim']}."
      )
    fields = {
      "method": meta["method"],
      "epsilon": meta["epsilon"],
      "centering": meta["centering"],
      "log_weight_offset": meta["log_weight_offset"],
      "summary": meta.get("summary", {}),
    }
    fields.update(overrides)
    beta = contents.get("beta")
    beta = None if beta is None else jnp.asarray(beta)
    head_meta = meta.get("head")
    if head_meta is not None:
      if head_meta.get("kind") not in HEADS:
        raise ValueError(f"{path!r}: unknown head kind {head_meta.get('kind')!r}.")
      fields.setdefault("head", HEADS[head_meta["kind"]].from_arrays(contents, head_meta["hidden"]))
    if "corrections" in contents:
      fields.setdefault("corrections", jnp.asarray(contents["corrections"]))
    return cls(jnp.asarray(theta), jnp.asarray(alpha), beta, **fields)
