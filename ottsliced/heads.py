r"""Nonlinear heads on the sliced features: :math:`\hat f_i=\varphi_i^\top\alpha+h(\varphi_i,x_i)`.

The paper's model is linear in the sliced potentials :math:`\varphi_i\in\mathbb R^L`
of each atom. A head adds a per-atom residual :math:`h` computed from the
atom's own features and coordinates, with parameters shared by all atoms and
pairs, so the model still works for any number of atoms and any pair. A
:class:`~ottsliced.SlicedInitializer` without a head is the linear model
(RA-OT / OA-OT exactly); with one it is the linear model plus the residual.
Heads are fitted by :func:`ottsliced.fit_head`.
"""

from typing import Any, Dict, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

__all__ = ["MLPHead", "ResidualMLP"]

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


@jax.tree_util.register_pytree_node_class
class MLPHead:
  r"""A per-atom MLP residual :math:`h(\varphi_i,x_i)` on the sliced features and the coordinates.

  A pytree: the parameters are its children, the widths static, so a new set
  of parameters reuses a compiled function.

  Args:
    params: flax parameters of :class:`ResidualMLP` (``{"params": ...}``).
    hidden: hidden widths the parameters belong to.
  """

  def __init__(self, params: Any, hidden: Sequence[int]):
    self.params = params
    self.hidden = tuple(int(h) for h in hidden)

  @classmethod
  def init(
    cls, rng: jax.Array, num_projections: int, dim: int, hidden: Sequence[int] = (64, 64), dtype: Any = jnp.float32
  ) -> "MLPHead":
    """A fresh head for ``L = num_projections`` features and points of dimension ``dim`` (outputs zero)."""
    hidden = tuple(int(h) for h in hidden)
    if not hidden or min(hidden) < 1:
      raise ValueError(f"`hidden` must be a non-empty sequence of widths >= 1, got {hidden}.")
    params = ResidualMLP(hidden).init(rng, jnp.zeros((1, num_projections + dim), dtype))
    return cls(jax.tree_util.tree_map(lambda p: p.astype(dtype), params), hidden)

  @property
  def num_inputs(self) -> int:
    """``L + d``, the width of the input ``[phi_i, x_i]``."""
    return int(self.params["params"]["Dense_0"]["kernel"].shape[0])

  @property
  def num_parameters(self) -> int:
    """Number of scalars in the parameters."""
    return int(sum(np.size(p) for p in jax.tree_util.tree_leaves(self.params)))

  def __call__(self, phi: jax.Array, x: jax.Array) -> jax.Array:
    """The residual ``[n]`` of atoms with features ``phi [n, L]`` at points ``x [n, d]``."""
    z = jnp.concatenate([phi, x.astype(phi.dtype)], axis=-1)
    return ResidualMLP(self.hidden).apply(self.params, z)

  # ---------------------------------------------------------------- storage
  def arrays(self) -> Dict[str, np.ndarray]:
    """The parameters as named arrays (``head/params/Dense_0/kernel``, ...), for ``.npz`` files."""
    flat = traverse_util.flatten_dict(self.params, sep="/")
    return {_PREFIX + k: np.asarray(v) for k, v in flat.items()}

  @classmethod
  def from_arrays(cls, arrays: Dict[str, np.ndarray], hidden: Sequence[int]) -> "MLPHead":
    """Inverse of :meth:`arrays` (other keys are ignored)."""
    flat = {k[len(_PREFIX) :]: jnp.asarray(v) for k, v in arrays.items() if k.startswith(_PREFIX)}
    head = cls(traverse_util.unflatten_dict(flat, sep="/"), hidden)
    expected = jax.tree_util.tree_structure(ResidualMLP(head.hidden).init(jax.random.key(0), jnp.zeros((1, 2))))
    if jax.tree_util.tree_structure(head.params) != expected:
      raise ValueError(f"the head's arrays do not match an MLP head with hidden widths {head.hidden}.")
    return head

  # ---------------------------------------------------------------- pytree
  def tree_flatten(self):  # noqa: D102
    return (self.params,), {"hidden": self.hidden}

  @classmethod
  def tree_unflatten(cls, aux, children):  # noqa: D102
    return cls(children[0], **aux)

  def __repr__(self) -> str:
    return f"MLPHead(hidden={self.hidden}, inputs={self.num_inputs}, parameters={self.num_parameters:,})"
