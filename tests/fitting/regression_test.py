"""RA-OT: exact recovery, warm-start quality on digits, ground-truth reporting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ottsliced as ots
from ottsliced import sliced
from ottsliced.fitting import regression

SINKHORN = {"threshold": 1e-2, "inner_iterations": 1, "max_iterations": 10_000}


def test_recovers_alpha_from_exact_targets(x64, digits_train):
  batch = ots.ProblemBatch(
    np.asarray(digits_train.x, np.float64),
    np.asarray(digits_train.y, np.float64),
    np.asarray(digits_train.a[:20], np.float64),
    np.asarray(digits_train.b[:20], np.float64),
    1e-2,
  )
  theta = ots.directions(jax.random.key(3), 2, 12)
  alpha_true = jax.random.normal(jax.random.key(4), (12,))
  # The exact targets' features, compiled (eagerly every op of the vmapped sorts and staircases compiles anew).
  phi, _ = jax.jit(sliced.batched_sliced_potentials)(batch.x, batch.y, batch.a, batch.b, theta)
  targets = phi @ alpha_true
  eq = regression.normal_equations(batch, theta, targets, chunk_size=7)  # several chunks
  np.testing.assert_allclose(regression.ridge_solve(eq, 0.0), alpha_true, rtol=1e-7, atol=1e-8)
  assert eq.rows == int((batch.a > 0).sum())


def test_targets_are_reduced_converged_potentials(digits_train):
  batch = digits_train.take(slice(0, 2))
  gt = regression.ground_truth(batch, threshold=1e-5)
  targets = regression.regression_targets(batch, gt.g)
  mask = batch.a > 0
  reduced = gt.f - batch.epsilon * jnp.log(jnp.where(mask, batch.a, 1.0))
  reduced = reduced - jnp.sum(jnp.where(mask, batch.a * reduced, 0), axis=1, keepdims=True)
  np.testing.assert_allclose(targets[mask], reduced[mask], atol=2e-4)
  assert np.all(np.isfinite(targets))  # zero-weight pixels included


def test_warm_start_needs_1_5x_fewer_iterations(ra_model, oa_model, digits_test):
  zeros = ots.solve_batch(digits_test, None, **SINKHORN)
  assert bool(zeros.converged.all())
  for model in (ra_model, oa_model):
    warm = ots.solve_batch(digits_test, model, **SINKHORN)
    assert bool(warm.converged.all())
    ratio = float(ots.num_iterations(zeros).mean()) / float(ots.num_iterations(warm).mean())
    assert ratio >= 1.5, (model.method, ratio)


def test_non_converged_pairs_reported_and_left_out(digits_train):
  batch = digits_train.take(slice(0, 6))
  iters = np.sort(np.asarray(regression.ground_truth(batch, threshold=1e-5).n_iters))
  assert iters[0] < iters[-1]
  cap = int(iters[0])  # the fastest pair converges, the slowest does not
  with pytest.warns(UserWarning, match="did not converge"):
    model = ots.fit_ra(batch, threshold=1e-5, max_iterations=cap, progress=False, num_projections=8)
  assert 0 < model.summary["non_converged"] < 6
  with pytest.raises(ValueError, match="converged on none"):
    ots.fit_ra(digits_train.take(slice(0, 2)), threshold=1e-6, max_iterations=10, progress=False)


def test_g_side_and_list_input(digits_train):
  problems = [digits_train.problem(i) for i in range(6)]
  model = ots.fit_ra(problems, g_side=True, num_projections=10, progress=False)
  assert model.beta is not None
  assert model.beta.shape == (10,)
  f, g = model.predict_potentials(problems[0])
  assert np.all(np.isfinite(g[problems[0].b > 0]))


def test_bad_arguments(digits_train):
  with pytest.raises(ValueError, match="ridge"):
    ots.fit_ra(digits_train, ridge=-1.0, progress=False)
  with pytest.raises(ValueError, match="ProblemBatch or a list"):
    ots.fit_ra("digits", progress=False)
  with pytest.raises(ValueError, match="theta"):
    ots.fit_ra(digits_train, theta=jnp.ones((4, 3)), progress=False)
