"""``SROT``: checked against OTT's Sinkhorn on the equivalent cost ``C - eps log Q``, and its own invariances."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_measure
from ott.geometry import epsilon_scheduler, geometry, pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

import ottsliced as ots

TIGHT = {"threshold": 1e-11, "max_iterations": 20_000}


def _problem(seed, n=30, m=22, d=2, zero_frac=0.0, **geom_kwargs):
  rs = np.random.default_rng(seed)
  x, a = random_measure(rs, n, d, zero_frac=zero_frac, keep_first=True)
  y, b = random_measure(rs, m, d, zero_frac=zero_frac, keep_first=True)
  geom = pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y + 0.7), **{"epsilon": 0.2, **geom_kwargs})
  return linear_problem.LinearProblem(geom, jnp.asarray(a), jnp.asarray(b))


def _solve(prob, **kwargs):
  return jax.jit(lambda p: ots.SROT(**{**TIGHT, **kwargs})(p))(prob)


def test_smoothing_one_is_otts_entropic_ot(x64):
  prob = _problem(0)
  out = _solve(prob, smoothing=1.0)
  ref = sinkhorn.Sinkhorn(**TIGHT)(prob)
  assert bool(out.converged)
  np.testing.assert_allclose(out.matrix, ref.matrix, atol=1e-10)
  np.testing.assert_allclose(out.reg_ot_cost, ref.reg_ot_cost, rtol=1e-10)


@pytest.mark.parametrize("smoothing", [0.5, 0.05])
def test_plan_is_otts_sinkhorn_on_the_cost_minus_eps_log_q(x64, smoothing):
  prob = _problem(1)
  out = _solve(prob, smoothing=smoothing, num_directions=6)
  eps = float(prob.geom.epsilon)
  q = np.asarray(out.reference_matrix)
  assert np.all(q > 0)
  shifted = geometry.Geometry(cost_matrix=prob.geom.cost_matrix - eps * jnp.log(q), epsilon=eps)
  ref = sinkhorn.Sinkhorn(**TIGHT)(linear_problem.LinearProblem(shifted, prob.a, prob.b))
  p = np.asarray(out.matrix)
  np.testing.assert_allclose(p, ref.matrix, atol=1e-10)
  np.testing.assert_allclose(p.sum(1), prob.a, atol=1e-10)
  np.testing.assert_allclose(p.sum(0), prob.b, atol=1e-10)
  # reg_ot_cost is the primal value <C, P> + eps KL(P || Q) (generalised KL).
  kl = np.sum(p * np.log(p / q) - p + q)
  np.testing.assert_allclose(out.reg_ot_cost, out.transport_cost + eps * kl, rtol=1e-9)
  np.testing.assert_allclose(out.kl, kl, rtol=1e-6)


def test_zero_smoothing_stays_on_the_sliced_supports(x64):
  prob = _problem(2)
  out = _solve(prob, smoothing=0.0, num_directions=4)
  p, q = np.asarray(out.matrix), np.asarray(out.reference_matrix)
  assert bool(out.converged)
  assert np.all(p[q == 0] == 0)
  np.testing.assert_allclose(p.sum(1), prob.a, atol=1e-10)
  # The plan improves on the sliced reference plan it is regularised toward.
  cost = np.asarray(prob.geom.cost_matrix)
  assert float(out.transport_cost) < np.sum(q * cost)


def test_online_geometry_and_other_cost_match_dense(x64):
  prob = _problem(3, n=40, m=33, cost_fn=ots_cost())
  online = _problem(3, n=40, m=33, cost_fn=ots_cost(), batch_size=7)
  out, out_online = _solve(prob), _solve(online)
  np.testing.assert_allclose(out_online.f, out.f, atol=1e-9)
  np.testing.assert_allclose(out_online.g, out.g, atol=1e-9)
  np.testing.assert_allclose(out_online.reg_ot_cost, out.reg_ot_cost, rtol=1e-10)
  # <C, P>: by blocks of rows and over the cells (online), densely (dense), and from the dense plan.
  dense_cost = np.sum(np.asarray(out.matrix) * np.asarray(prob.geom.cost_matrix))
  np.testing.assert_allclose(out_online.transport_cost, dense_cost, rtol=1e-10)
  np.testing.assert_allclose(out.transport_cost, dense_cost, rtol=1e-10)


def ots_cost():
  from ott.geometry import costs

  return costs.PNormP(1.5)


def test_zero_weight_padding_matches_the_unpadded_problem(x64):
  prob = _problem(4, n=20, m=15)
  rs = np.random.default_rng(0)
  geom = prob.geom
  xp = jnp.concatenate([geom.x, jnp.asarray(rs.normal(size=(5, 2)))])
  yp = jnp.concatenate([geom.y, jnp.asarray(rs.normal(size=(3, 2)))])
  ap, bp = jnp.concatenate([prob.a, jnp.zeros(5)]), jnp.concatenate([prob.b, jnp.zeros(3)])
  padded = linear_problem.LinearProblem(pointcloud.PointCloud(xp, yp, epsilon=0.2), ap, bp)
  out, out_p = _solve(prob), _solve(padded)
  np.testing.assert_allclose(out_p.matrix[:20, :15], out.matrix, atol=1e-10)
  assert float(jnp.abs(out_p.matrix[20:]).max()) == 0.0
  assert float(jnp.abs(out_p.matrix[:, 15:]).max()) == 0.0
  np.testing.assert_allclose(out_p.reg_ot_cost, out.reg_ot_cost, rtol=1e-10)


def test_zero_weight_atoms_get_no_mass_in_the_plan(x64):
  # Regression: round-off mass (1e-17) on zero-weight cells of the sliced plan (this pair has some) was inflated
  # by those atoms' potentials to real mass (5e-4 of the plan on digits) and stalled the solve.
  rs = np.random.default_rng(0)
  x, a = random_measure(rs, 400, 2, zero_frac=0.3)
  y, b = random_measure(rs, 300, 2, zero_frac=0.3)
  prob = linear_problem.LinearProblem(pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y), epsilon=0.5), a, b)
  out = _solve(prob, num_directions=16)
  assert bool(out.converged)
  p = np.asarray(out.matrix)
  assert np.count_nonzero(p[a == 0]) == 0
  assert np.count_nonzero(p[:, b == 0]) == 0


def test_gradient_is_danskins_and_matches_finite_differences(x64):
  prob = _problem(5, n=12, m=10)
  geom, a, b = prob.geom, prob.a, prob.b

  def cost(x):
    geom_x = pointcloud.PointCloud(x, geom.y, epsilon=0.5)
    return ots.SROT(smoothing=0.3, **TIGHT)(linear_problem.LinearProblem(geom_x, a, b))

  assert bool(cost(geom.x).converged)

  grad = jax.jit(jax.grad(lambda x: cost(x).reg_ot_cost))(geom.x)
  p = np.asarray(cost(geom.x).matrix)
  expected = 2 * (np.asarray(a)[:, None] * np.asarray(geom.x) - p @ np.asarray(geom.y))
  np.testing.assert_allclose(grad, expected, atol=1e-9)
  # Finite differences along a random direction small enough to keep every projection's order.
  v = jnp.asarray(np.random.default_rng(1).normal(size=geom.x.shape))
  h = 1e-6
  fd = (cost(geom.x + h * v).reg_ot_cost - cost(geom.x - h * v).reg_ot_cost) / (2 * h)
  np.testing.assert_allclose(fd, jnp.sum(grad * v), rtol=1e-5)


def test_vmap_over_problems_matches_single_solves():
  probs = [_problem(s, n=16, m=16) for s in range(3)]
  xs = jnp.stack([p.geom.x for p in probs]).astype(jnp.float32)
  ys = jnp.stack([p.geom.y for p in probs]).astype(jnp.float32)
  a = jnp.stack([p.a for p in probs]).astype(jnp.float32)
  b = jnp.stack([p.b for p in probs]).astype(jnp.float32)

  def solve(x, y, a, b):
    out = ots.SROT()(linear_problem.LinearProblem(pointcloud.PointCloud(x, y, epsilon=0.2), a, b))
    return out.reg_ot_cost, out.n_iters, out.f

  costs, iters, fs = jax.jit(jax.vmap(solve))(xs, ys, a, b)
  for k in range(3):
    cost, it, f = jax.jit(solve)(xs[k], ys[k], a[k], b[k])
    np.testing.assert_allclose(costs[k], cost, rtol=1e-5)
    np.testing.assert_allclose(fs[k], f, atol=1e-4)
    assert int(iters[k]) == int(it)


def test_direct_calls_compile_once_per_shapes(compile_events):
  """Called without a jit of the user's, the first call compiles and the next ones (same shapes) run it."""
  probs = [_problem(s, n=16, m=16) for s in range(3)]
  solver = ots.SROT(smoothing=0.5)
  solver(probs[0])
  assert compile_events
  compile_events.clear()
  outputs = [solver(prob) for prob in probs[1:]]
  assert compile_events == []
  in_a_jit = jax.jit(lambda solver, prob: solver(prob))
  for prob, out in zip(probs[1:], outputs):
    ref = in_a_jit(solver, prob)
    np.testing.assert_allclose(out.f, ref.f, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.reg_ot_cost, ref.reg_ot_cost, rtol=1e-6)
    assert out.smoothing == 0.5
    assert bool(out.converged)


def test_stopping_rule_warm_start_and_epsilon_scheduler(x64):
  prob = _problem(6)
  out = ots.SROT(threshold=1e-3)(prob)
  checks = int(out.n_iters) // 10
  errors = np.asarray(out.errors)
  assert bool(out.converged)
  assert errors[checks - 1] < 1e-3
  assert np.all(errors[: checks - 1] >= 1e-3)
  assert np.all(errors[checks:] == -1)
  tight = _solve(prob)
  warm = ots.SROT(**TIGHT)(prob, init=(None, tight.g))
  assert int(warm.n_iters) == 10
  scheduled = linear_problem.LinearProblem(
    pointcloud.PointCloud(prob.geom.x, prob.geom.y, epsilon=epsilon_scheduler.Epsilon(0.2, init=20.0, decay=0.8)),
    prob.a,
    prob.b,
  )
  out_s = _solve(scheduled)
  np.testing.assert_allclose(out_s.matrix, tight.matrix, atol=1e-9)


def test_bad_input_gets_clear_errors():
  prob = _problem(7)
  grid = linear_problem.LinearProblem(geometry.Geometry(cost_matrix=prob.geom.cost_matrix, epsilon=0.1))
  with pytest.raises(ValueError, match="PointCloud"):
    ots.SROT()(grid)
  with pytest.raises(ValueError, match="balanced"):
    ots.SROT()(linear_problem.LinearProblem(prob.geom, prob.a, prob.b, tau_a=0.9))
  with pytest.raises(ValueError, match="smoothing"):
    ots.SROT(smoothing=1.5)
  with pytest.raises(ValueError, match="directions"):
    ots.SROT(directions=jnp.ones((3,)))
  with pytest.raises(ValueError, match="dimension"):
    ots.SROT(directions=jnp.ones((3, 5)))(prob)
  with pytest.raises(ValueError, match="negative"):
    ots.SROT()(linear_problem.LinearProblem(prob.geom, prob.a.at[0].set(-0.1), prob.b))
  with pytest.raises(ValueError, match="shape"):
    ots.SROT()(linear_problem.LinearProblem(prob.geom, prob.a[:-1], prob.b))
  bad = pointcloud.PointCloud(prob.geom.x.at[0, 0].set(jnp.nan), prob.geom.y, epsilon=0.2)
  with pytest.raises(ValueError, match="non-finite"):
    ots.SROT()(linear_problem.LinearProblem(bad, prob.a, prob.b))
  with pytest.raises(ValueError, match="inner_iterations"):
    ots.SROT(inner_iterations=0)
