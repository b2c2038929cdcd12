"""Choosing a SlicedSinkhorn schedule by timing candidates on sample problems."""

import jax
import numpy as np
import pytest
from helpers import CORRECTED_LOOP

import ottsliced as ots
from ottsliced.solvers.sliced_sinkhorn import DEFAULT_STEPS
from ottsliced.solvers.step_selection import DEFAULT_CANDIDATES, select_steps


def test_selection_keeps_the_fastest_candidate_that_converges(digits_test):
  theta = ots.directions(jax.random.key(0), 2, 16)
  solver = ots.SlicedSinkhorn(theta, threshold=1e-2, **CORRECTED_LOOP)
  problems = digits_test.take(np.arange(2))
  candidates = [{"steps": ()}, {"steps": DEFAULT_STEPS}, {"steps": (), "max_iterations": 2}]
  sel = select_steps(problems, solver, candidates, repeats=2)
  np.testing.assert_array_equal(sel.converged, [2, 2, 0])  # 2 iterations cannot reach 1e-2 from zeros
  assert sel.best != 2  # the capped candidate is the fastest but converges nowhere: not eligible
  assert sel.ms[sel.best] == sel.ms[:2].min()
  assert np.all(sel.ms > 0)
  run = jax.jit(lambda s, p: s(p))
  for c, its in zip(candidates, sel.iterations):
    expect = np.mean([int(ots.num_iterations(run(solver.replace(**c), problems.problem(i)))) for i in range(2)])
    assert its == expect
  assert sel.solver.num_corrections == len(candidates[sel.best]["steps"])
  assert sel.solver.max_iterations == solver.max_iterations


def test_default_candidates_and_bad_arguments(digits_test):
  theta = ots.directions(jax.random.key(0), 2, 8)
  solver = ots.SlicedSinkhorn(theta, threshold=1e-2, **CORRECTED_LOOP)
  sel = select_steps(digits_test.take(np.arange(1)), solver, repeats=1)
  assert sel.candidates == DEFAULT_CANDIDATES
  assert sel.ms.shape == (len(DEFAULT_CANDIDATES),)
  with pytest.raises(ValueError, match="empty"):
    select_steps(digits_test, solver, [])
  with pytest.raises(ValueError, match="repeats"):
    select_steps(digits_test, solver, repeats=0)
  with pytest.raises(ValueError, match="SlicedSinkhorn"):
    select_steps(digits_test, "sinkhorn")
