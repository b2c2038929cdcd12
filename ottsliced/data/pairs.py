"""The pair-drawing protocol of every data set: a seeded, prefix-consistent sequence of distinct pairs."""

import numpy as np

__all__ = ["pair_indices"]


def pair_indices(num_items: int, num_pairs: int, *, seed: int = 0, offset: int = 0) -> np.ndarray:
  """Pairs ``offset .. offset + num_pairs - 1`` of a seeded sequence of distinct pairs.

  The sequence is a stream of uniform index pairs ``(i, j)`` drawn from
  ``np.random.default_rng(seed)``, dropping pairs with ``i == j`` and any pair
  whose unordered version ``{i, j}`` occurred earlier. It does not depend on
  ``num_pairs`` or ``offset`` (prefix-consistent), so different offsets give
  disjoint pairs.

  Args:
    num_items: number of items to pair (``>= 2``).
    num_pairs: number of pairs ``B`` (``>= 1``).
    seed: seed of the sequence.
    offset: number of leading pairs of the sequence to skip.

  Returns:
    ``[B, 2]`` int64 indices ``(i, j)``, ``i != j``.
  """
  num_items, num_pairs, offset = int(num_items), int(num_pairs), int(offset)
  if num_pairs < 1:
    raise ValueError(f"`num_pairs` must be >= 1, got {num_pairs}.")
  if offset < 0:
    raise ValueError(f"`offset` must be >= 0, got {offset}.")
  if num_items < 2:
    raise ValueError(f"need at least 2 items to draw pairs of distinct items, got {num_items}.")
  total = offset + num_pairs
  available = num_items * (num_items - 1) // 2
  if total > available:
    raise ValueError(
      f"offset + num_pairs = {total} exceeds the {available} distinct unordered pairs of {num_items} items."
    )
  k = max(2 * total, 64)
  while True:
    cand = np.random.default_rng(seed).integers(0, num_items, size=(k, 2))
    cand = cand[cand[:, 0] != cand[:, 1]]
    key = cand.min(axis=1) * num_items + cand.max(axis=1)
    _, first = np.unique(key, return_index=True)
    if first.size >= total:
      return cand[np.sort(first)[offset:total]]
    k *= 4
