"""Test helpers shared by several test modules (fixtures are in ``conftest.py``)."""

import functools

import numpy as np

from ottsliced import flow_matching as fm

__all__ = ["FLOW_SOURCE", "FLOW_TARGET", "random_measure"]


def random_measure(rs: np.random.Generator, n: int, d: int, zero_frac: float = 0.0, keep_first: bool = False):
  """Points ``[n, d]`` and normalised weights ``[n]`` with some zeros (``keep_first``: atom 0 always positive)."""
  x = rs.normal(size=(n, d))
  w = rs.uniform(0.1, 1.0, size=n)
  if zero_frac:
    w[rs.uniform(size=n) < zero_frac] = 0.0
    if keep_first:
      w[0] += 0.5
    elif w.sum() == 0:
      w[rs.integers(n)] = 1.0
  return x, w / w.sum()


FLOW_SOURCE = functools.partial(fm.sample_toy, "gaussian")
FLOW_TARGET = functools.partial(fm.sample_toy, "8gaussians")
