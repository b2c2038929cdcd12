"""Amortized correction steps: the fit regresses from the solver's own states and beats the default steps there."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CORRECTED_LOOP

import ottsliced as ots
from ottsliced.fitting.corrections import fit_correction_steps
from ottsliced.fitting.regression import ground_truth
from ottsliced.solvers.sliced_sinkhorn import DEFAULT_STEPS, SlicedSinkhorn, correction_features

THETA_KEY, L = jax.random.key(3), 16


@pytest.fixture(scope="module")
def truth(digits_train):
  return ground_truth(digits_train.take(slice(0, 24)))


@pytest.fixture(scope="module")
def fit(digits_train, truth):
  solver = SlicedSinkhorn(ots.directions(THETA_KEY, 2, L), threshold=1e-3, **CORRECTED_LOOP)
  return fit_correction_steps(digits_train.take(slice(0, 24)), solver, num_corrections=2, truth=truth)


@jax.jit
def _correction_inputs(solver, prob):
  """``(T_b f, correction features [m, L])`` where the solver's next correction starts."""
  state = solver.correction_state(prob)
  return state.g, correction_features(state.target_projections, prob.b, state.column_marginal)


def _weighted_residual(solver, batch, g_star, coef):
  """Sum over pairs of the b-weighted squared error of ``g`` left after a correction with ``coef`` (gauge removed)."""
  total = 0.0
  for i in range(batch.num_pairs):
    b = np.asarray(batch.b[i])
    g, feats = _correction_inputs(solver, batch.problem(i))
    psi = np.asarray(feats) @ coef
    ok = b > 0
    w = b[ok] / b[ok].sum()
    r = np.asarray(g_star[i])[ok] - np.asarray(g)[ok] - psi[ok]  # -inf at zero weights: mask first
    r = r - np.sum(w * r)
    total += float(np.sum(w * r * r))
  return total


def test_fit_beats_default_steps_on_its_objective(fit, digits_train, truth):
  """Least squares: each fitted correction leaves less potential error than the default step along the mean."""
  assert fit.coef.shape == (2, L)
  assert fit.solver.coef.shape == (2, L)
  assert np.all((fit.explained > 0) & (fit.explained <= 1))
  batch = digits_train.take(slice(0, 24))
  theta = fit.solver.theta
  for k in range(2):
    before = fit.solver.replace(steps=fit.solver.coef[:k])  # the solver as the fitter saw it for correction k
    fitted = _weighted_residual(before, batch, truth.g, fit.coef[k])
    default = _weighted_residual(before, batch, truth.g, np.full(L, DEFAULT_STEPS[k] / L))
    none = _weighted_residual(before, batch, truth.g, np.zeros(L))
    assert fitted < default
    np.testing.assert_allclose(1 - fitted / none, fit.explained[k], rtol=1e-3)
  assert theta is fit.solver.theta


def test_correction_state_is_the_solvers_state(digits_test, fit):
  """The state the fitter reads equals the solver's own iterates: T_b f after iteration 1 + K corrections."""
  prob = digits_test.problem(3)
  one = fit.solver.replace(steps=fit.solver.coef[:1], threshold=0.0, max_iterations=2, anderson_memory=0)
  out = one(prob)
  g_next = prob.geom.update_potential(out.f, out.g, jnp.log(prob.b), axis=0)
  state = one.correction_state(prob)
  np.testing.assert_allclose(state.g, g_next, rtol=1e-5, atol=1e-5)
  c = state.column_marginal
  assert np.isclose(float(jnp.sum(c)), 1.0, atol=1e-4)


def test_fitted_steps_save_iterations_and_keep_the_solution(digits_test, fit):
  """On held-out pairs the fitted corrections need fewer iterations than zeros and reach Sinkhorn's plan."""
  zeros = SlicedSinkhorn(fit.solver.theta, (), anderson_memory=0, threshold=1e-3, **CORRECTED_LOOP)
  fitted = fit.solver.replace(anderson_memory=0).bind(digits_test.y)
  run = jax.jit(lambda solver, prob: solver(prob))
  iters = {"zeros": [], "fitted": []}
  for i in range(8):
    prob = digits_test.problem(i)
    ref, out = run(zeros, prob), run(fitted, prob)
    iters["zeros"].append(int(jnp.sum(ref.errors != -1)))
    iters["fitted"].append(int(jnp.sum(out.errors != -1)))
    assert bool(out.converged)
    assert float(jnp.abs(out.matrix - ref.matrix).sum()) < 1e-2  # both at 1e-3 marginal error: measured <= 7.5e-3
  # Measured (16 pairs): 116.7 from zeros, 60.3 with the fitted corrections (54.6 with the default steps (2, 1)).
  assert np.mean(iters["fitted"]) < 0.7 * np.mean(iters["zeros"])


def test_bad_input_gets_clear_errors(digits_train):
  batch = digits_train.take(slice(0, 2))
  solver = SlicedSinkhorn(ots.directions(THETA_KEY, 2, 4), **CORRECTED_LOOP)
  with pytest.raises(ValueError, match="SlicedSinkhorn"):
    fit_correction_steps(batch, object())
  with pytest.raises(ValueError, match="num_corrections"):
    fit_correction_steps(batch, solver, num_corrections=0)
  with pytest.raises(ValueError, match="d=3"):
    fit_correction_steps(batch, SlicedSinkhorn(ots.directions(THETA_KEY, 3, 4), **CORRECTED_LOOP))
  with pytest.raises(ValueError, match="ridge"):
    fit_correction_steps(batch, solver, ridge=-1.0)


def test_fixed_iterations_errors_are_the_solvers_and_differentiable(digits_test):
  """The unrolled trace equals the solver's own (corrections, line search, Anderson); gradients reach the steps."""
  prob = digits_test.problem(5)
  solver = SlicedSinkhorn(ots.directions(THETA_KEY, 2, L), threshold=0.0, max_iterations=8, **CORRECTED_LOOP).bind(
    digits_test.y
  )
  out = jax.jit(lambda s, p: s(p))(solver, prob)
  fixed = jax.jit(lambda s, p: s.fixed_iterations_errors(p, 8))(solver, prob)
  np.testing.assert_allclose(fixed, out.errors, rtol=1e-5)

  def loss(coef):
    return jnp.log(solver.replace(steps=coef, anderson_memory=0).fixed_iterations_errors(prob, 6)[-1])

  grad = jax.grad(loss)(solver.coef)
  assert grad.shape == (2, L)
  assert np.all(np.isfinite(grad))
  assert np.abs(grad).max() > 0
  with pytest.raises(ValueError, match="num_iterations"):
    solver.fixed_iterations_errors(prob, 2)


def test_sweep_fit_lowers_its_loss_and_beats_the_default_steps(digits_train, digits_test):
  """Through 3 differentiated sweeps, no ground truth: the loss goes down and held-out pairs need fewer iterations."""
  solver = SlicedSinkhorn(ots.directions(THETA_KEY, 2, L), threshold=1e-3, anderson_memory=0, **CORRECTED_LOOP)
  fit = fit_correction_steps(digits_train.take(slice(0, 24)), solver, method="sweeps", sweeps=3, num_steps=200)
  assert fit.coef.shape == (2, L)
  assert fit.explained.size == 0
  assert fit.losses.shape == (200,)
  assert fit.losses[-20:].mean() < fit.losses[:20].mean()
  run = jax.jit(lambda solver, prob: solver(prob))
  iters = {"default": [], "sweeps": []}
  for i in range(16):
    prob = digits_test.problem(i)
    for name, s in (("default", solver), ("sweeps", fit.solver)):
      out = run(s.bind(digits_test.y), prob)
      assert bool(out.converged)
      iters[name].append(int(jnp.sum(out.errors != -1)))
  # Measured (24 pairs): 57.4 iterations to 1e-3 with the default steps, 51.8 with the sweep-fitted ones.
  assert np.mean(iters["sweeps"]) < np.mean(iters["default"])


def test_unknown_fit_method_is_refused(digits_train):
  batch = digits_train.take(slice(0, 2))
  solver = SlicedSinkhorn(ots.directions(THETA_KEY, 2, 4), **CORRECTED_LOOP)
  with pytest.raises(ValueError, match="method"):
    fit_correction_steps(batch, solver, method="newton")
  with pytest.raises(ValueError, match="sweeps"):
    fit_correction_steps(batch, solver, method="sweeps", sweeps=0)


@pytest.fixture(scope="module")
def corrected(ra_model, digits_train, truth):
  """Corrections fitted after RA-OT's start (regression, K = 2)."""
  solver = SlicedSinkhorn.from_initializer(ra_model, threshold=1e-3, **CORRECTED_LOOP)
  return fit_correction_steps(digits_train.take(slice(0, 24)), solver, num_corrections=2, truth=truth)


class TestCorrectionsInTheModel:
  """Fitted corrections as the model's second head: carried, saved and applied with the model's start."""

  def test_from_initializer_applies_the_models_corrections(self, corrected, ra_model, digits_test):
    model = corrected.model
    assert model.corrections.shape == (2, ra_model.num_projections)
    np.testing.assert_array_equal(model.corrections, corrected.coef.astype(np.float32))
    prob = digits_test.problem(2)
    np.testing.assert_array_equal(model.predict_potentials(prob)[0], ra_model.predict_potentials(prob)[0])
    run = jax.jit(lambda solver, prob: solver(prob))
    carried = run(SlicedSinkhorn.from_initializer(model, threshold=1e-3, **CORRECTED_LOOP), prob)
    fitted = run(corrected.solver, prob)
    np.testing.assert_array_equal(carried.errors, fitted.errors)
    np.testing.assert_array_equal(carried.f, fitted.f)
    default = run(SlicedSinkhorn.from_initializer(ra_model, threshold=1e-3, **CORRECTED_LOOP), prob)
    assert not np.array_equal(np.asarray(default.errors), np.asarray(carried.errors))
    explicit = SlicedSinkhorn.from_initializer(model, (), threshold=1e-3, **CORRECTED_LOOP)  # explicit steps win
    assert explicit.num_corrections == 0

  def test_new_corrections_do_not_retrace(self, corrected, digits_test):
    model = corrected.model
    traces = []

    @jax.jit
    def solve(model, prob):
      traces.append(1)
      return SlicedSinkhorn.from_initializer(model, threshold=1e-3, **CORRECTED_LOOP)(prob).errors

    prob = digits_test.problem(0)
    first = solve(model, prob)
    second = solve(model.replace(corrections=model.corrections * 0.5), prob)
    assert len(traces) == 1
    assert not np.array_equal(np.asarray(first), np.asarray(second))

  def test_round_trip_is_format_version_3(self, corrected, digits_test, tmp_path):
    from ottsliced._internal import npz
    from ottsliced.initializers.sliced_initializer import _FORMAT

    path = tmp_path / "corrected.npz"
    corrected.model.save(path)
    loaded = ots.SlicedInitializer.load(path)
    np.testing.assert_array_equal(loaded.corrections, corrected.model.corrections)
    assert npz.load_npz(path, _FORMAT, 3)[1]["format_version"] == 3
    with pytest.raises(ValueError, match="newer than this ottsliced reads"):
      npz.load_npz(path, _FORMAT, 2)  # an ottsliced that reads heads but not corrections refuses the file
    prob = digits_test.problem(1)
    run = jax.jit(lambda solver, prob: solver(prob))
    np.testing.assert_array_equal(
      run(SlicedSinkhorn.from_initializer(loaded, threshold=1e-3, **CORRECTED_LOOP), prob).f,
      run(SlicedSinkhorn.from_initializer(corrected.model, threshold=1e-3, **CORRECTED_LOOP), prob).f,
    )
    corrected.model.replace(corrections=None).save(tmp_path / "plain.npz")
    assert npz.load_npz(tmp_path / "plain.npz", _FORMAT, 3)[1]["format_version"] == 1

  def test_bad_corrections_are_refused(self, ra_model, digits_train):
    num = ra_model.num_projections
    with pytest.raises(ValueError, match=rf"\[K >= 1, L={num}\]"):
      ra_model.replace(corrections=np.ones((2, num + 1)))
    with pytest.raises(ValueError, match=rf"\[K >= 1, L={num}\]"):
      ra_model.replace(corrections=np.ones(num))
    with pytest.raises(ValueError, match="finite"):
      ra_model.replace(corrections=np.full((1, num), np.nan))
    zeros_start = SlicedSinkhorn(ots.directions(THETA_KEY, 2, 4), **CORRECTED_LOOP)
    fit = fit_correction_steps(digits_train.take(slice(0, 2)), zeros_start, num_corrections=1)
    with pytest.raises(ValueError, match="not a SlicedInitializer"):
      _ = fit.model
