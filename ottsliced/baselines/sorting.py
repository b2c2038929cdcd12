"""Whether OTT's ``SortingInitializer`` (DualSort, Thornton & Cuturi 2022) applies to a batch."""

from typing import Tuple

import jax.numpy as jnp

from ottsliced._internal import validation
from ottsliced.problems.batch import ProblemBatch

__all__ = ["sorting_applicable"]


def sorting_applicable(batch: ProblemBatch) -> Tuple[bool, str]:
  """Whether OTT's ``SortingInitializer`` (DualSort, Thornton & Cuturi 2022) applies to ``batch``.

  DualSort needs a square dense cost matrix (``n == m``) and assumes the
  identity is the optimal assignment; it ignores the weights.

  Args:
    batch: the problems.

  Returns:
    ``(applicable, reason)``: ``(False, why)`` when ``n != m``; otherwise
    ``(True, note)``, the note saying when it degenerates (a shared support
    ``x == y`` gives exactly zeros, since ``C_ii = 0``; zero weights are ignored).
  """
  if not isinstance(batch, ProblemBatch):
    raise ValueError(f"`batch` must be a ProblemBatch, got {type(batch).__name__}.")
  n, m = batch.shape
  if n != m:
    return False, (
      f"SortingInitializer needs a square cost matrix (n == m), got n={n}, m={m}; it also assumes the "
      "identity is the optimal assignment."
    )
  notes = ["square cost matrix; DualSort assumes the identity is the optimal assignment and ignores the weights"]
  same = batch.shared_x and batch.shared_y and validation.is_concrete(batch.x, batch.y)
  if same and bool(jnp.array_equal(batch.x, batch.y)):
    notes.append("on this shared support (x == y, C_ii = 0) it returns exactly zeros, i.e. the default initializer")
  if validation.is_concrete(batch.a, batch.b) and bool(jnp.any(batch.a == 0) | jnp.any(batch.b == 0)):
    notes.append("zero-weight atoms (padding) are treated as real atoms by the assignment")
  return True, "; ".join(notes) + "."
