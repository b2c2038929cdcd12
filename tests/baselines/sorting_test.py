"""When OTT's SortingInitializer applies."""

import numpy as np
from helpers import random_measure

from ottsliced.baselines import sorting
from ottsliced.data import digit_pairs
from ottsliced.problems.batch import ProblemBatch

EPS = 1e-2


def test_sorting_applicable():
  batch = digit_pairs(2, epsilon=EPS)
  ok, note = sorting.sorting_applicable(batch)
  assert ok
  assert "exactly zeros" in note
  rs = np.random.default_rng(0)
  x, a = random_measure(rs, 5, 2, keep_first=True)
  y, b = random_measure(rs, 7, 2, keep_first=True)
  ok, reason = sorting.sorting_applicable(ProblemBatch(x, y, a[None], b[None], EPS))
  assert not ok
  assert "n == m" in reason
  y, b = random_measure(rs, 5, 2, keep_first=True)
  ok, note = sorting.sorting_applicable(ProblemBatch(x, y, a[None], b[None], EPS))
  assert ok
  assert "exactly zeros" not in note
