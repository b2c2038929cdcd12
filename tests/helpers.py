"""Test helpers shared by several test modules (fixtures are in ``conftest.py``)."""

import functools

import jax
import numpy as np

from ottsliced import flow_matching as fm

__all__ = ["CORRECTED_LOOP", "FLOW_SOURCE", "FLOW_TARGET", "predict_potentials", "random_measure"]

# SlicedSinkhorn's corrected Sinkhorn loop (corrections, Anderson) from the given start: what the tests of the
# corrections exercise, whatever the default tail and annealing.
CORRECTED_LOOP = {"tail": "sinkhorn", "annealing": None}


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


@jax.jit
def predict_potentials(model, prob):
  """``model.predict_potentials(prob)`` compiled: one program per shape, not hundreds of eager ops each compiled.

  The model and the problem are pytrees (arguments, not constants): a new model or new values reuse the program.
  Eager prediction is compared with this one in ``amortized_test.py::test_jit_friendly_prediction``.
  """
  return model.predict_potentials(prob)
