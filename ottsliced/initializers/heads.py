r"""Nonlinear heads on the sliced features, added to the linear model :math:`\Phi\alpha`.

The paper's model is linear in the sliced potentials :math:`\varphi_i\in\mathbb R^L`
of each atom, with one :math:`\alpha` for every pair. A head adds a residual
with parameters shared by all atoms and pairs, so the model still works for
any number of atoms and any pair:

* :class:`MLPHead`, per atom: :math:`h(\varphi_i,x_i)` from the atom's own
  features and coordinates;
* :class:`PairHead`, per pair: :math:`\varphi_i^\top\delta(s)`, coefficients
  :math:`\alpha+\delta(s)` of the pair's own, from a summary :math:`s` of its
  ``L`` one-dimensional problems (:func:`pair_summary`).

A :class:`~ottsliced.SlicedInitializer` without a head is the linear model
(RA-OT / OA-OT exactly). A fresh head outputs zero, so fitting starts from the
model it is given. Heads are fitted by :func:`ottsliced.fit_head`; a head is
called as ``head(phi, x, summary)`` (``summary`` is ``None`` unless the head's
``needs_summary``).
"""

from typing import Any, Dict, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

__all__ = ["HEADS", "CoefficientMLP", "MLPHead", "PairHead", "ResidualMLP", "pair_summary"]

_PREFIX = "head/"


class ResidualMLP(nn.Module):
  """``[phi_i, x_i] -> h_i``: SiLU hidden layers, the output layer initialised to zero.

  The zero output layer makes a fresh head the linear model exactly, so
  fitting starts from the model it is given (e.g. an RA-OT fit).

  Attributes:
    hidden: hidden layer widths, e.g. ``(64, 64)``.
  """

  hidden: Tuple[int, ...]

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """``z [n, L + d] -> h [n]``."""
    for width in self.hidden:
      z = nn.silu(nn.Dense(width)(z))
    return nn.Dense(1, kernel_init=nn.initializers.zeros)(z)[..., 0]


def _check_hidden(hidden: Sequence[int]) -> Tuple[int, ...]:
  hidden = tuple(int(h) for h in hidden)
  if not hidden or min(hidden) < 1:
    raise ValueError(f"`hidden` must be a non-empty sequence of widths >= 1, got {hidden}.")
  return hidden


class _Head:
  """What every head shares: flax parameters (the pytree children), hidden widths (static), storage."""

  kind = ""
  needs_summary = False

  def __init__(self, params: Any, hidden: Sequence[int]):
    self.params = params
    self.hidden = tuple(int(h) for h in hidden)

  @classmethod
  def _structure(cls, hidden: Tuple[int, ...]) -> Any:
    """The tree structure of this head's parameters for ``hidden`` (any input size)."""
    raise NotImplementedError

  @property
  def num_parameters(self) -> int:
    """Number of scalars in the parameters."""
    return int(sum(np.size(p) for p in jax.tree_util.tree_leaves(self.params)))

  def arrays(self) -> Dict[str, np.ndarray]:
    """The parameters as named arrays (``head/params/Dense_0/kernel``, ...), for ``.npz`` files."""
    flat = traverse_util.flatten_dict(self.params, sep="/")
    return {_PREFIX + k: np.asarray(v) for k, v in flat.items()}

  @classmethod
  def from_arrays(cls, arrays: Dict[str, np.ndarray], hidden: Sequence[int]) -> Any:
    """Inverse of :meth:`arrays` (other keys are ignored).

    Raises:
      ValueError: the arrays are not this kind of head with these widths.
    """
    flat = {k[len(_PREFIX) :]: jnp.asarray(v) for k, v in arrays.items() if k.startswith(_PREFIX)}
    head = cls(traverse_util.unflatten_dict(flat, sep="/"), hidden)
    if jax.tree_util.tree_structure(head.params) != cls._structure(head.hidden):
      raise ValueError(f"the head's arrays do not match a {cls.kind} head with hidden widths {head.hidden}.")
    return head

  def tree_flatten(self):  # noqa: D102
    return (self.params,), {"hidden": self.hidden}

  @classmethod
  def tree_unflatten(cls, aux, children):  # noqa: D102
    return cls(children[0], **aux)


@jax.tree_util.register_pytree_node_class
class MLPHead(_Head):
  r"""A per-atom MLP residual :math:`h(\varphi_i,x_i)` on the sliced features and the coordinates.

  A pytree: the parameters are its children, the widths static, so a new set
  of parameters reuses a compiled function.

  Args:
    params: flax parameters of :class:`ResidualMLP` (``{"params": ...}``).
    hidden: hidden widths the parameters belong to.
  """

  kind = "mlp"
  needs_summary = False

  @classmethod
  def init(
    cls, rng: jax.Array, num_projections: int, dim: int, hidden: Sequence[int] = (64, 64), dtype: Any = jnp.float32
  ) -> "MLPHead":
    """A fresh head for ``L = num_projections`` features and points of dimension ``dim`` (outputs zero)."""
    hidden = _check_hidden(hidden)
    params = ResidualMLP(hidden).init(rng, jnp.zeros((1, num_projections + dim), dtype))
    return cls(jax.tree_util.tree_map(lambda p: p.astype(dtype), params), hidden)

  @property
  def num_inputs(self) -> int:
    """``L + d``, the width of the input ``[phi_i, x_i]``."""
    return int(self.params["params"]["Dense_0"]["kernel"].shape[0])

  def __call__(self, phi: jax.Array, x: jax.Array, summary: Any = None) -> jax.Array:
    """The residual ``[n]`` of atoms with features ``phi [n, L]`` at points ``x [n, d]``."""
    del summary
    z = jnp.concatenate([phi, x.astype(phi.dtype)], axis=-1)
    return ResidualMLP(self.hidden).apply(self.params, z)

  @classmethod
  def _structure(cls, hidden: Tuple[int, ...]) -> Any:
    return jax.tree_util.tree_structure(ResidualMLP(hidden).init(jax.random.key(0), jnp.zeros((1, 2))))

  def __repr__(self) -> str:
    return f"MLPHead(hidden={self.hidden}, inputs={self.num_inputs}, parameters={self.num_parameters:,})"


SUMMARY_STATISTICS = 5  # per direction, see pair_summary


def pair_summary(px: Any, py: Any, a: jax.Array, b: jax.Array, phi: jax.Array, psi: jax.Array) -> jax.Array:
  r"""Summary ``[5 L]`` of a pair's ``L`` one-dimensional problems, for :class:`PairHead`.

  Per direction: the difference of the projected means, the two projected
  standard deviations, the source potential's :math:`a`-weighted second
  moment and the 1-D dual value :math:`\sum_i a_i\varphi_i+\sum_j b_j\psi_j`.
  Translation- and permutation-invariant in the atoms, defined for any
  ``n``, ``m`` (zero-weight atoms do not count).

  Args:
    px: sorted source projections (``values [L, n]``, ``order``).
    py: sorted target projections (``values [L, m]``).
    a: source weights ``[n]``.
    b: target weights ``[m]``.
    phi: source features ``[n, L]``.
    psi: target features ``[m, L]``.
  """
  a, b = a / jnp.sum(a), b / jnp.sum(b)
  wa, wb = a[px.order], b[py.order]  # [L, n], [L, m]: weights in sorted order
  ma, mb = jnp.sum(wa * px.values, -1), jnp.sum(wb * py.values, -1)
  va = jnp.sum(wa * (px.values - ma[:, None]) ** 2, -1)
  vb = jnp.sum(wb * (py.values - mb[:, None]) ** 2, -1)
  second = a @ jnp.where(a[:, None] > 0, phi, 0.0) ** 2
  dual = a @ jnp.where(a[:, None] > 0, phi, 0.0) + b @ jnp.where(b[:, None] > 0, psi, 0.0)
  return jnp.concatenate([ma - mb, jnp.sqrt(va), jnp.sqrt(vb), second, dual])


class CoefficientMLP(nn.Module):
  """``s [5 L] -> delta [L]``: affine input scaling, SiLU hidden layers, a zero output layer times a scale.

  The output scale (a parameter, in log space) sets the size of the first
  updates: Adam moves every output weight by about the learning rate, so
  without it a fresh head's first steps change the coefficients by about
  ``learning_rate * width`` whatever their own size.

  Attributes:
    hidden: hidden layer widths.
    num_outputs: ``L``.
  """

  hidden: Tuple[int, ...]
  num_outputs: int

  @nn.compact
  def __call__(self, s: jax.Array) -> jax.Array:
    """``s [..., 5 L] -> delta [..., L]``."""
    shift = self.param("shift", nn.initializers.zeros, s.shape[-1:])
    log_scale = self.param("log_scale", nn.initializers.zeros, s.shape[-1:])
    z = (s - shift) * jnp.exp(-log_scale)
    for width in self.hidden:
      z = nn.silu(nn.Dense(width)(z))
    log_out = self.param("log_output_scale", nn.initializers.zeros, ())
    return nn.Dense(self.num_outputs, kernel_init=nn.initializers.zeros)(z) * jnp.exp(log_out)


@jax.tree_util.register_pytree_node_class
class PairHead(_Head):
  r"""Per-pair coefficients :math:`\hat f=\Phi(\alpha+\delta(s))`: the residual :math:`\Phi\delta(s)`.

  One shared :math:`\alpha` leaves most of what :math:`\Phi` can express
  unused: on MNIST, coefficients fitted to each test pair's own converged
  potential (16 numbers per pair) start Sinkhorn 2.6 iterations from 1e-2,
  the best shared ones 12.4 (``docs/results.md`` at commit 301e8bd). This head predicts a pair's
  coefficients from :func:`pair_summary` with an MLP; a pytree like
  :class:`MLPHead`. :meth:`standardize` sets the input scaling from sample
  summaries (``fit_head`` does it before training).

  Args:
    params: flax parameters of :class:`CoefficientMLP`.
    hidden: hidden widths.
  """

  kind = "pair"
  needs_summary = True

  @classmethod
  def init(
    cls, rng: jax.Array, num_projections: int, dim: int, hidden: Sequence[int] = (256, 256), dtype: Any = jnp.float32
  ) -> "PairHead":
    """A fresh head for ``L = num_projections`` directions (outputs zero; ``dim`` is not used)."""
    del dim
    hidden = _check_hidden(hidden)
    module = CoefficientMLP(hidden, int(num_projections))
    params = module.init(rng, jnp.zeros((SUMMARY_STATISTICS * num_projections,), dtype))
    return cls(jax.tree_util.tree_map(lambda p: p.astype(dtype), params), hidden)

  @property
  def num_projections(self) -> int:
    """``L``, the number of coefficients the head outputs."""
    return int(self.params["params"]["shift"].shape[0]) // SUMMARY_STATISTICS

  def standardize(self, summaries: jax.Array, output_scale: Any = 1.0) -> "PairHead":
    """A copy whose input scaling centres and scales ``summaries [K, 5 L]`` (their mean and std).

    ``output_scale``: the coefficients' typical size (``fit_head`` passes the
    mean ``|alpha|`` of the model it starts from, divided by the width).
    """
    inner = dict(self.params["params"])
    inner["log_output_scale"] = jnp.log(jnp.asarray(output_scale, inner["log_output_scale"].dtype))
    inner["shift"] = jnp.mean(summaries, axis=0).astype(inner["shift"].dtype)
    inner["log_scale"] = jnp.log(jnp.std(summaries, axis=0) + 1e-8).astype(inner["log_scale"].dtype)
    return PairHead({"params": inner}, self.hidden)

  def coefficients(self, summary: jax.Array) -> jax.Array:
    """``delta [L]`` of a pair with summary ``[5 L]``."""
    return CoefficientMLP(self.hidden, self.num_projections).apply(self.params, summary)

  def __call__(self, phi: jax.Array, x: jax.Array, summary: Any = None) -> jax.Array:
    """The residual ``Phi delta(summary)`` ``[n]``."""
    del x
    if summary is None:
      raise ValueError("a PairHead needs the pair's summary (`pair_summary`).")
    return jnp.matmul(phi, self.coefficients(summary).astype(phi.dtype), precision=jax.lax.Precision.HIGHEST)

  @classmethod
  def _structure(cls, hidden: Tuple[int, ...]) -> Any:
    return jax.tree_util.tree_structure(CoefficientMLP(hidden, 1).init(jax.random.key(0), jnp.zeros(5)))

  def __repr__(self) -> str:
    return f"PairHead(hidden={self.hidden}, L={self.num_projections}, parameters={self.num_parameters:,})"


HEADS = {"mlp": MLPHead, "pair": PairHead}
