"""Supports bound to a model or solver: their projections sorted once, looked up on every call."""

from typing import Any, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ottsliced._internal import validation
from ottsliced.sliced.projections import SortedProjections, sort_projections

__all__ = ["BoundSupport", "bind_supports", "bound_projections"]


class BoundSupport(NamedTuple):
  """Supports a model is bound to, with their projections sorted once (see :meth:`SlicedInitializer.bind`).

  Attributes:
    x: ``[K, n, d]``, the ``K`` source supports the model is bound to, or ``None``.
    y: ``[K', m, d]`` target supports, or ``None``; the same array as ``x`` when bound together.
    px: their sorted projections, leaves ``[K, L, n]`` (``None`` with ``x``).
    py: likewise for ``y``; the same arrays as ``px`` when ``y`` is ``x``.
  """

  x: Optional[jax.Array]
  y: Optional[jax.Array]
  px: Optional[SortedProjections]
  py: Optional[SortedProjections]


def bound_projections(
  theta: jax.Array, name: str, z: jax.Array, bank: Optional[jax.Array], bank_p: Any
) -> SortedProjections:
  """Sorted projections of the support ``z [n, d]`` on ``theta``: looked up in a bound bank, else sorted.

  Args:
    theta: directions ``[L, d]``.
    name: the support's name in error messages (``"x"`` or ``"y"``).
    z: the problem's support ``[n, d]``.
    bank: the bound supports ``[K, n, d]``, or ``None`` (nothing bound: sort).
    bank_p: their sorted projections (leaves ``[K, L, n]``).

  Raises:
    ValueError: ``z`` has another shape than the bound supports, or is concrete and none of them.
  """
  sort = lambda: sort_projections(z, theta)  # noqa: E731
  if bank is None:
    return sort()
  if z.shape != bank.shape[1:]:
    raise ValueError(
      f"the problem's `{name}` has shape {z.shape} but the model is bound to supports of shape {bank.shape[1:]}; "
      "bind it to this support (`model.bind(...)`) or use `model.unbind()`."
    )
  if z.dtype != bank.dtype:
    return sort()
  take = lambda k: jax.tree_util.tree_map(lambda v: v[k], bank_p)  # noqa: E731
  if validation.is_concrete(z, bank):
    zv, bv = np.asarray(z), np.asarray(bank)
    for k in range(bv.shape[0]):
      if np.array_equal(zv, bv[k]):
        return take(k)
    raise ValueError(
      f"the problem's `{name}` is none of the {bv.shape[0]} support(s) the model is bound to (same shape "
      f"{z.shape}); bind it to this support (`model.bind(...)`) or use `model.unbind()`."
    )
  # Traced points: the sorted projections of the matching bound support, else sort.
  match = jnp.all(z[None] == bank, axis=(1, 2))
  return jax.lax.cond(jnp.any(match), lambda: take(jnp.argmax(match)), sort)


def bind_supports(theta: jax.Array, z: jax.Array, name: str) -> Tuple[jax.Array, SortedProjections]:
  """``(bank [K, n, d], sorted projections [K, L, n])`` of a support ``[n, d]`` or bank, in theta's dtype."""
  shape = validation.check_points(name, z, ranks=(2, 3))
  if shape[-1] != theta.shape[1]:
    raise ValueError(f"cannot bind `{name}` of dimension {shape[-1]} to a model fitted with d={theta.shape[1]}.")
  z = jnp.asarray(z, theta.dtype)
  z = z[None] if z.ndim == 2 else z
  return z, jax.jit(jax.vmap(sort_projections, in_axes=(0, None)))(z, theta)
