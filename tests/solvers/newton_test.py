"""Newton steps on the stored plan: OTT's updates, OTT's converged solution, a dual that never decreases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_measure
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

from ottsliced.solvers import newton


def _problem(seed, n=40, m=30, eps=0.05, zero_frac=0.2):
  rs = np.random.default_rng(seed)
  x, a = random_measure(rs, n, 2, zero_frac)
  y, b = random_measure(rs, m, 2, zero_frac)
  geom = pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y), epsilon=eps)
  return linear_problem.LinearProblem(geom, jnp.asarray(a), jnp.asarray(b))


@pytest.mark.usefixtures("x64")
def test_row_and_column_updates_are_otts():
  prob = _problem(0)
  geom, a, b = prob.geom, prob.a, prob.b
  rs = np.random.default_rng(1)
  g = jnp.where(b > 0, jnp.asarray(rs.normal(size=b.shape)), -jnp.inf)
  f_ott = jnp.where(a > 0, geom.update_potential(jnp.zeros_like(a), g, jnp.log(a), axis=1), -jnp.inf)
  f, plan, dual, columns = newton.row_update(geom.cost_matrix, a, b, g, geom.epsilon)
  np.testing.assert_allclose(f, f_ott, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(plan, geom.transport_from_potentials(f_ott, g), atol=1e-14)
  np.testing.assert_allclose(plan.sum(1), a, atol=1e-12)  # rows exact
  np.testing.assert_allclose(columns, plan.sum(0), atol=1e-14)
  np.testing.assert_allclose(dual, jnp.sum(jnp.where(a > 0, a * f, 0)) + jnp.sum(jnp.where(b > 0, b * g, 0)))
  g_ott = jnp.where(b > 0, geom.update_potential(f, jnp.zeros_like(b), jnp.log(b), axis=0), -jnp.inf)
  np.testing.assert_allclose(newton.column_update(geom.cost_matrix, b, f, geom.epsilon), g_ott, rtol=1e-12)
  g_rows, rows = newton.column_update_rows(geom.cost_matrix, b, f, geom.epsilon)
  np.testing.assert_allclose(g_rows, g_ott, rtol=1e-12)
  plan = np.asarray(geom.transport_from_potentials(f, g_ott))
  np.testing.assert_allclose(rows, plan.sum(1), atol=1e-14)  # columns exact, rows off
  # The same from the transposed matrix [m, n], read in its own layout.
  g_t, rows_t = newton.column_update_rows(geom.cost_matrix.T, b, f, geom.epsilon, transposed=True)
  np.testing.assert_allclose(g_t, g_rows, rtol=1e-13)
  np.testing.assert_allclose(rows_t, rows, rtol=1e-13, atol=1e-16)
  np.testing.assert_allclose(plan.sum(0), b, atol=1e-12)
  assert np.abs(plan.sum(1) - a).sum() > 1e-3


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize(("seed", "eps"), [(0, 0.05), (1, 0.01), (2, 0.5)])
def test_converges_to_otts_solution_with_a_dual_that_never_decreases(seed, eps):
  prob = _problem(seed, eps=eps)
  geom, a, b = prob.geom, prob.a, prob.b
  trace = -jnp.ones(500)
  state = jax.jit(lambda c, g: newton.newton_tail(c, a, b, eps, g, jnp.zeros((), jnp.int32), trace, 1e-10))(
    geom.cost_matrix, jnp.zeros_like(b)
  )
  k = int(state.k)
  assert k < 500
  errors = np.asarray(state.trace[:k])
  assert errors[-1] < 1e-10
  assert np.all(state.trace[k:] == -1)
  ref = sinkhorn.Sinkhorn(threshold=1e-12, max_iterations=200_000)(prob)
  # The same plan (potentials up to the gauge constant).
  np.testing.assert_allclose(geom.transport_from_potentials(state.f, state.g), ref.matrix, atol=1e-9)
  assert np.all(np.isneginf(state.f[a == 0]))
  assert np.all(np.isneginf(state.g[b == 0]))


@pytest.mark.usefixtures("x64")
def test_the_dual_rises_at_every_step():
  prob = _problem(3, eps=0.01)
  geom, a, b = prob.geom, prob.a, prob.b
  # One step per call (a trace of two entries: the start's error and one step's), from the last call's g.
  step = jax.jit(
    lambda g: newton.newton_tail(geom.cost_matrix, a, b, 0.01, g, jnp.zeros((), jnp.int32), -jnp.ones(2), 0.0)
  )
  g, duals = jnp.where(b > 0, 0.0, -jnp.inf), []
  for _ in range(12):
    state = step(g)
    g = state.g
    duals.append(float(state.dual))
  assert np.all(np.diff(duals) >= -1e-12), duals
  assert duals[-1] > duals[0]


@pytest.mark.usefixtures("x64")
def test_a_stage_at_a_larger_epsilon_first_records_inf_and_ends_at_otts_solution():
  prob = _problem(4, eps=0.005)
  geom, a, b = prob.geom, prob.a, prob.b
  start, k0, trace = jnp.where(b > 0, 0.0, -jnp.inf), jnp.asarray(3, jnp.int32), -jnp.ones(500)

  def tail(staged, eps, length=500):
    return newton.newton_tail(geom.cost_matrix, a, b, eps, start, k0, trace[:length], 1e-10, stage=(staged, 0.02, 1e-2))

  # Epsilon traced, as SlicedSinkhorn passes it: the stage and the target share one loop whose epsilon is selected
  # at run time (a Python float would be folded into one of the programs compared below only, a round-off change).
  eps = jnp.asarray(0.005)
  staged, plain = jax.jit(lambda e: tail(True, e))(eps), jax.jit(lambda e: tail(False, e))(eps)
  ref = sinkhorn.Sinkhorn(threshold=1e-12, max_iterations=200_000)(prob)
  for state in (staged, plain):
    np.testing.assert_allclose(geom.transport_from_potentials(state.f, state.g), ref.matrix, atol=1e-9)
  errors, k = np.asarray(staged.trace), int(staged.k)
  stage = int(np.sum(np.isinf(errors)))
  assert stage >= 2  # the stage's start and at least one step at 4 eps
  assert np.all(errors[:3] == -1)  # the iterations before the tail are the caller's
  assert np.all(np.isinf(errors[3 : 3 + stage]))
  assert np.all(np.isfinite(errors[3 + stage : k]))
  assert errors[k - 1] < 1e-10
  assert np.all(errors[k:] == -1)
  # Not staged: as without a stage, no inf.
  unstaged = jax.jit(lambda e: newton.newton_tail(geom.cost_matrix, a, b, e, start, k0, trace, 1e-10))(eps)
  np.testing.assert_array_equal(plain.trace, unstaged.trace)
  np.testing.assert_array_equal(plain.g, unstaged.g)
  # A stage never takes the last iteration: with 5 entries (3 taken) the target gets one.
  short = jax.jit(lambda e: tail(True, e, 5))(eps)
  assert int(short.k) == 5
  assert np.isinf(short.trace[3])
  assert np.isfinite(short.trace[4])


@pytest.mark.usefixtures("x64")
def test_the_sinkhorn_fallback_is_otts_iteration():
  # halvings=-1 refuses every Newton trial: each iteration is the fallback, g + eps log(b / c) from the accepted
  # point's columns (no exponential), then the row update: OTT's Sinkhorn iteration from the same g.
  prob = _problem(5, eps=0.05)
  geom, a, b = prob.geom, prob.a, prob.b
  g0 = jnp.where(b > 0, 0.0, -jnp.inf)
  state = jax.jit(
    lambda: newton.newton_tail(
      geom.cost_matrix, a, b, 0.05, g0, jnp.zeros((), jnp.int32), -jnp.ones(6), 0.0, halvings=-1
    )
  )()
  assert int(state.k) == 6
  f = newton.row_update(geom.cost_matrix, a, b, g0, 0.05)[0]
  for _ in range(5):
    g = jnp.where(b > 0, geom.update_potential(f, jnp.zeros_like(b), jnp.log(b), axis=0), -jnp.inf)
    f = jnp.where(a > 0, geom.update_potential(jnp.zeros_like(a), g, jnp.log(a), axis=1), -jnp.inf)
  np.testing.assert_allclose(state.g[b > 0], g[b > 0], rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(state.f[a > 0], f[a > 0], rtol=1e-10, atol=1e-10)


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("last_step", [False, True])
def test_a_last_step_solved_tighter_keeps_the_solution(last_step):
  prob = _problem(6, eps=0.05)
  geom, a, b = prob.geom, prob.a, prob.b
  state = jax.jit(
    lambda: newton.newton_tail(
      geom.cost_matrix,
      a,
      b,
      0.05,
      jnp.where(b > 0, 0.0, -jnp.inf),
      jnp.zeros((), jnp.int32),
      -jnp.ones(100),
      1e-8,
      last_step=last_step,
    )
  )()
  k = int(state.k)
  assert state.trace[k - 1] < 1e-8
  ref = sinkhorn.Sinkhorn(threshold=1e-12, max_iterations=200_000)(prob)
  np.testing.assert_allclose(geom.transport_from_potentials(state.f, state.g), ref.matrix, atol=1e-9)
