"""Sinkhorn with sliced corrections: OTT's iterations without corrections, same solution with them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import CORRECTED_LOOP, FLOW_SOURCE, FLOW_TARGET, random_measure
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from ott.geometry import costs, pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

import ottsliced as ots
from ottsliced.data import digit_pairs
from ottsliced.solvers import annealing, sliced_sinkhorn
from ottsliced.solvers.sliced_sinkhorn import SlicedSinkhorn


def _problem(x, y, a, b, epsilon):
  return linear_problem.LinearProblem(pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y), epsilon=epsilon), a, b)


def _iterations(out) -> int:
  return int(jnp.sum(out.errors != -1))


def _centred(f, w):
  """The potential on positive-weight atoms, ``w``-weighted mean removed (the gauge)."""
  w = np.asarray(w)
  f = np.asarray(f)[w > 0]
  return f - np.sum(w[w > 0] * f) / np.sum(w)


@jax.jit
def _solve(solver, prob):
  return solver(prob)


def test_no_corrections_is_otts_sinkhorn(x64):
  """Without corrections: OTT's iteration count, error trace and potentials (float64), zero weights included."""
  rs = np.random.default_rng(0)
  x, a = random_measure(rs, 50, 2, zero_frac=0.2)
  y, b = random_measure(rs, 40, 2, zero_frac=0.2)
  prob = _problem(x, y, a, b, 0.05)
  theta = ots.directions(jax.random.key(0), 2, 8)
  for threshold in (1e-2, 1e-5):
    ref = sinkhorn.Sinkhorn(threshold=threshold, inner_iterations=1, max_iterations=3000)(prob)
    out = _solve(
      SlicedSinkhorn(theta, (), anderson_memory=0, threshold=threshold, max_iterations=3000, **CORRECTED_LOOP), prob
    )
    assert _iterations(out) == _iterations(ref) > 3
    np.testing.assert_allclose(out.errors, ref.errors, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out.f[a > 0], ref.f[a > 0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(out.g[b > 0], ref.g[b > 0], rtol=1e-10, atol=1e-10)
    assert bool(out.converged)
    assert np.isclose(float(out.reg_ot_cost), float(ref.reg_ot_cost), rtol=1e-10)


@pytest.mark.parametrize(("line_search", "every"), [((0.0, 1.0), 5), ((1.0,), 0)])
def test_corrected_reaches_sinkhorns_solution(x64, line_search, every):
  """With corrections (guarded and periodic, or unguarded) the converged potentials are Sinkhorn's, to 1e-8."""
  rs = np.random.default_rng(1)
  x, a = random_measure(rs, 60, 2, zero_frac=0.2)
  y, b = random_measure(rs, 50, 2, zero_frac=0.2)
  prob = _problem(x, y + 0.5, a, b, 0.05)
  ref = sinkhorn.Sinkhorn(threshold=1e-12, inner_iterations=1, max_iterations=50_000)(prob)
  assert bool(ref.converged)
  theta = ots.directions(jax.random.key(1), 2, 16, dtype=jnp.float64)
  kw = {"line_search": line_search, "every": every, "threshold": 1e-12, "max_iterations": 50_000}
  solver = SlicedSinkhorn(theta, (2.0, 1.0), **kw, **CORRECTED_LOOP)
  out = _solve(solver, prob)
  assert bool(out.converged)
  np.testing.assert_allclose(_centred(out.f, a), _centred(ref.f, a), atol=1e-8)
  np.testing.assert_allclose(_centred(out.g, b), _centred(ref.g, b), atol=1e-8)
  np.testing.assert_allclose(out.matrix, ref.matrix, atol=1e-10)


def test_corrections_save_iterations_on_digits(digits_test, ra_model):
  """Training-free and warm-started corrections need fewer iterations than the same starts without them."""
  theta = ra_model.theta
  counts = {}
  kw = {"threshold": 1e-3, "anderson_memory": 0}  # the corrections alone
  solvers = {
    "zeros": SlicedSinkhorn(theta, (), **kw, **CORRECTED_LOOP),
    "zeros + corrections": SlicedSinkhorn(theta, **kw, **CORRECTED_LOOP).bind(digits_test.y),
    "RA-OT": SlicedSinkhorn.from_initializer(ra_model.bind(digits_test.x), (), **kw, **CORRECTED_LOOP),
    "RA-OT + corrections": SlicedSinkhorn.from_initializer(ra_model.bind(digits_test.x), **kw, **CORRECTED_LOOP),
  }
  for name, solver in solvers.items():
    counts[name] = np.mean([_iterations(_solve(solver, digits_test.problem(i))) for i in range(10)])
  # Measured: 116.0 -> 68.2 from zeros, 65.4 -> 57.3 from RA-OT (8x8 digits, threshold 1e-3).
  assert counts["zeros + corrections"] < 0.7 * counts["zeros"]
  assert counts["RA-OT + corrections"] < 0.95 * counts["RA-OT"]


def test_from_initializer_equals_explicit_warm_start(digits_test, ra_model):
  """Sharing the model's sorted projections gives the same solve as starting from its prediction."""
  prob = digits_test.problem(4)
  bound = ra_model.bind(digits_test.x)
  shared = SlicedSinkhorn.from_initializer(bound, threshold=1e-3, **CORRECTED_LOOP)
  assert shared.shares_projections
  f0, g0 = bound.predict_potentials(prob)
  explicit = SlicedSinkhorn(ra_model.theta, threshold=1e-3, **CORRECTED_LOOP).bind(digits_test.y)
  out, ref = _solve(shared, prob), explicit(prob, init=(f0, jnp.zeros_like(g0)))
  assert _iterations(out) == _iterations(ref)
  np.testing.assert_allclose(out.f, ref.f, rtol=1e-5, atol=1e-5)


def test_padding_changes_nothing(x64):
  """Zero-weight atoms appended to both sides: same iterations, same potentials on the real atoms."""
  rs = np.random.default_rng(5)
  x, a = random_measure(rs, 30, 2)
  y, b = random_measure(rs, 25, 2)
  theta = ots.directions(jax.random.key(2), 2, 16, dtype=jnp.float64)
  solver = SlicedSinkhorn(theta, threshold=1e-6, every=4, **CORRECTED_LOOP)
  out = _solve(solver, _problem(x, y, a, b, 0.05))
  xp = np.concatenate([x, rs.normal(size=(7, 2)) * 3])
  yp = np.concatenate([y, rs.normal(size=(5, 2)) * 3])
  ap, bp = np.concatenate([a, np.zeros(7)]), np.concatenate([b, np.zeros(5)])
  padded = _solve(solver, _problem(xp, yp, ap, bp, 0.05))
  assert _iterations(padded) == _iterations(out)
  np.testing.assert_allclose(_centred(padded.f[:30], a), _centred(out.f, a), atol=1e-9)
  assert np.all(np.isfinite(np.asarray(out.f)))
  assert np.all(np.isfinite(np.asarray(out.g)))
  np.testing.assert_allclose(_centred(padded.g[:25], b), _centred(out.g, b), atol=1e-9)
  assert np.all(np.isneginf(np.asarray(padded.f[30:])))
  assert np.all(np.isneginf(np.asarray(padded.g[25:])))


def test_jits_once_for_new_coefficients(digits_test):
  """Step sizes, coefficients and the threshold are leaves: new values reuse the compiled solve."""
  traces = []

  @jax.jit
  def solve(solver, prob):
    traces.append(1)
    return solver(prob).errors

  prob = digits_test.problem(0)
  theta = ots.directions(jax.random.key(0), 2, 16)
  base = SlicedSinkhorn(theta, (2.0, 1.0), threshold=1e-3, **CORRECTED_LOOP).bind(digits_test.y)
  first = solve(base, prob)
  second = solve(base.replace(steps=jnp.asarray(np.random.default_rng(0).uniform(0, 0.2, (2, 16)), jnp.float32)), prob)
  third = solve(base.replace(threshold=1e-2), prob)
  assert len(traces) == 1
  assert not np.array_equal(np.asarray(first), np.asarray(second))
  assert int(jnp.sum(third != -1)) < int(jnp.sum(first != -1))


def test_direct_calls_compile_once_per_shapes(compile_events):
  """Called without a jit of the user's, the first call compiles and the next ones (same shapes) run it."""
  rs = np.random.default_rng(31)
  solver = SlicedSinkhorn()
  problems = []
  for _ in range(3):
    x, a = random_measure(rs, 30, 3)
    y, b = random_measure(rs, 40, 3)
    problems.append(linear_problem.LinearProblem(pointcloud.PointCloud(x, y + 0.3, epsilon=0.05), a, b))
  solver(problems[0])
  assert compile_events  # the listener hears this solve's compilation (traced at least)
  compile_events.clear()
  outputs = [solver(prob) for prob in problems[1:]]
  assert compile_events == []
  in_a_jit = jax.jit(lambda solver, prob: solver(prob).potentials)
  for prob, out in zip(problems[1:], outputs):
    f, g = in_a_jit(solver, prob)
    np.testing.assert_allclose(out.f, f, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.g, g, rtol=1e-6, atol=1e-6)
    assert float(out.errors[int(out.n_iters) - 1]) < solver.threshold


def test_bad_input_gets_clear_errors(digits_test):
  theta = ots.directions(jax.random.key(0), 2, 16)
  with pytest.raises(ValueError, match="steps"):
    SlicedSinkhorn(theta, np.ones((2, 5)), **CORRECTED_LOOP)
  with pytest.raises(ValueError, match="line_search"):
    SlicedSinkhorn(theta, line_search=(), **CORRECTED_LOOP)
  with pytest.raises(ValueError, match="every"):
    SlicedSinkhorn(theta, every=-1, **CORRECTED_LOOP)
  with pytest.raises(ValueError, match="dimension"):
    SlicedSinkhorn(ots.directions(jax.random.key(0), 3, 16), **CORRECTED_LOOP)(digits_test.problem(0))
  with pytest.raises(ValueError, match="shape"):
    SlicedSinkhorn(theta, **CORRECTED_LOOP).bind(np.zeros((10, 2)))(digits_test.problem(0))


def _padded_problem(n, m, seed, epsilon, zero_frac, size=40):
  """The random-cloud family of the hypothesis tests, padded to ``size`` atoms (one compilation for all)."""
  rs = np.random.default_rng(seed)
  x, a = random_measure(rs, n, 2, zero_frac=zero_frac, keep_first=True)
  y, b = random_measure(rs, m, 2, zero_frac=zero_frac, keep_first=True)
  y = y + rs.normal(size=2)
  x, y = np.pad(x, ((0, size - n), (0, 0))), np.pad(y, ((0, size - m), (0, 0)))
  return _problem(x, y, np.pad(a, (0, size - n)), np.pad(b, (0, size - m)), epsilon)


CLOUDS = {
  "n": st.integers(8, 40),
  "m": st.integers(8, 40),
  "seed": st.integers(0, 10_000),
  "epsilon": st.sampled_from([0.02, 0.1, 0.5]),
  "zero_frac": st.sampled_from([0.0, 0.3]),
  "memory": st.sampled_from([0, 2]),
}


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(**CLOUDS)
def test_hypothesis_converges_to_sinkhorns_solution(n, m, seed, epsilon, zero_frac, memory):
  """Guarded corrections on random clouds converge to plain Sinkhorn's solution.

  Not asserted here: fewer iterations. The dual-objective guard does not
  guarantee it (n=35, m=8, seed=0, epsilon=0.02, zero_frac=0.3: 1894 against
  plain Sinkhorn's 1646 in float32); ``safeguard=True`` does (tests below).
  Derandomized, so that a CI run is reproducible; the random search found the
  float32 Anderson stall recorded below (``test_anderson_stall_float32_known_defect``).
  """
  # Padded to one shape with zero weights (changes nothing, tested above): one compilation for all examples.
  prob = _padded_problem(n, m, seed, epsilon, zero_frac)  # float32
  plain = sinkhorn.Sinkhorn(threshold=1e-3, inner_iterations=1, max_iterations=5000)(prob)
  assume(bool(plain.converged))  # float32 Sinkhorn stalls above 1e-3 on a few clouds at epsilon = 0.02
  theta = ots.directions(jax.random.key(seed), 2, 16)
  out = _solve(
    SlicedSinkhorn(theta, threshold=1e-3, max_iterations=5000, anderson_memory=memory, **CORRECTED_LOOP), prob
  )
  assert bool(out.converged)
  np.testing.assert_allclose(float(out.reg_ot_cost), float(plain.reg_ot_cost), rtol=1e-3, atol=1e-4)
  np.testing.assert_allclose(out.matrix, plain.matrix, atol=2e-3)


STALL = (21, 38, 9624, 0.02, 0.3)  # a slow float32 cloud: plain Sinkhorn needs 4,390 iterations to 1e-3


@pytest.mark.xfail(
  strict=True,
  reason="known defect: in float32, Anderson (memory 2) stalls at an error of 2.3e-3 on this cloud, where plain "
  "Sinkhorn converges after 4,390 iterations (without Anderson: 4,158); safeguard=True returns plain Sinkhorn's",
)
def test_anderson_stall_float32_known_defect():
  prob = _padded_problem(*STALL)
  solver = SlicedSinkhorn(
    ots.directions(jax.random.key(STALL[2]), 2, 16), threshold=1e-3, max_iterations=5000, **CORRECTED_LOOP
  )
  assert bool(_solve(solver, prob).converged)


def test_safeguard_converges_where_anderson_stalls():
  prob = _padded_problem(*STALL)
  plain = sinkhorn.Sinkhorn(threshold=1e-3, inner_iterations=1, max_iterations=5000)(prob)
  theta = ots.directions(jax.random.key(STALL[2]), 2, 16)
  out = _solve(SlicedSinkhorn(theta, threshold=1e-3, max_iterations=5000, safeguard=True, **CORRECTED_LOOP), prob)
  assert bool(plain.converged)
  assert bool(out.converged)
  assert int(ots.num_iterations(out)) <= int(ots.num_iterations(plain))


@jax.jit
def _plain(prob):
  return sinkhorn.Sinkhorn(threshold=1e-3, inner_iterations=1, max_iterations=20_000)(prob)


def test_safeguard_returns_plain_sinkhorn_where_corrections_lose(x64):
  """A cloud where the corrections cost iterations: the safeguard stops with plain Sinkhorn, at its count."""
  prob = _padded_problem(35, 8, 0, 0.02, 0.3)
  theta = ots.directions(jax.random.key(0), 2, 16, dtype=jnp.float64)
  kw = {"threshold": 1e-3, "max_iterations": 20_000, "anderson_memory": 0}
  ref = _plain(prob)
  unguarded = _solve(SlicedSinkhorn(theta, **kw, **CORRECTED_LOOP), prob)
  guarded = _solve(SlicedSinkhorn(theta, safeguard=True, **kw, **CORRECTED_LOOP), prob)
  assert _iterations(unguarded) > _iterations(ref)  # measured 1760 against 1645: the case exercises the race
  assert _iterations(guarded) == _iterations(ref)
  assert bool(guarded.converged)
  np.testing.assert_allclose(guarded.errors, ref.errors, rtol=1e-9, atol=1e-12)
  np.testing.assert_allclose(guarded.matrix, ref.matrix, atol=1e-12)


@pytest.mark.usefixtures("x64")
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(**CLOUDS)
def test_hypothesis_safeguard_never_more_iterations_than_sinkhorn(n, m, seed, epsilon, zero_frac, memory):
  """With ``safeguard=True``: never more iterations than OTT's Sinkhorn, and its solution (float64)."""
  prob = _padded_problem(n, m, seed, epsilon, zero_frac)
  ref = _plain(prob)
  assume(bool(ref.converged))
  theta = ots.directions(jax.random.key(seed), 2, 16, dtype=jnp.float64)
  solver = SlicedSinkhorn(
    theta, threshold=1e-3, max_iterations=20_000, anderson_memory=memory, safeguard=True, **CORRECTED_LOOP
  )
  out = _solve(solver, prob)
  assert bool(out.converged)
  assert _iterations(out) <= _iterations(ref)
  np.testing.assert_allclose(out.matrix, ref.matrix, atol=2e-3)


def test_stop_after_rejection_skips_the_corrections_after_a_rejected_one(x64):
  """A rejected correction (the plain update had the higher dual) ends the corrections; accepted ones run on."""
  theta4 = ots.directions(jax.random.key(0), 2, 4, dtype=jnp.float64)
  x0 = FLOW_SOURCE(jax.random.key(1), 32).astype(jnp.float64)
  x1 = FLOW_TARGET(jax.random.key(2), 32).astype(jnp.float64)
  flow = linear_problem.LinearProblem(pointcloud.PointCloud(x0, x1, epsilon=2.0))  # first correction rejected
  run = jax.jit(lambda s, p: s(p))
  stopped = run(SlicedSinkhorn(theta4, (2.0, 1.0), threshold=1e-6, stop_after_rejection=True, **CORRECTED_LOOP), flow)
  one = run(SlicedSinkhorn(theta4, (2.0,), threshold=1e-6, **CORRECTED_LOOP), flow)
  both = run(SlicedSinkhorn(theta4, (2.0, 1.0), threshold=1e-6, **CORRECTED_LOOP), flow)
  np.testing.assert_array_equal(stopped.errors, one.errors)  # the second slot ran a plain (Anderson) iteration
  np.testing.assert_array_equal(stopped.f, one.f)
  assert not np.array_equal(np.asarray(stopped.errors), np.asarray(both.errors))  # ... which the default corrects
  theta = ots.directions(jax.random.key(0), 2, 16, dtype=jnp.float64)
  prob = digit_pairs(1, epsilon=1e-2, seed=0).problem(0)  # both corrections accepted: nothing changes
  out = run(SlicedSinkhorn(theta, threshold=1e-6, stop_after_rejection=True, **CORRECTED_LOOP), prob)
  np.testing.assert_array_equal(out.errors, run(SlicedSinkhorn(theta, threshold=1e-6, **CORRECTED_LOOP), prob).errors)
  assert bool(out.converged)


# ------------------------------------------------------------------ the default solver: annealing, then Newton steps


@pytest.mark.parametrize("eps", [0.5, 0.125, 0.05, 0.005])
def test_default_solver_reaches_otts_solution(x64, eps):
  """No argument but the threshold: annealed when epsilon is small, Newton steps on the plan, OTT's solution."""
  rs = np.random.default_rng(11)
  x, a = random_measure(rs, 40, 3, zero_frac=0.2)
  y, b = random_measure(rs, 30, 3, zero_frac=0.2)
  prob = _problem(x, y, a, b, eps)
  solver = SlicedSinkhorn(threshold=1e-9, max_iterations=5000)
  assert solver.uses_newton(prob)
  out = _solve(solver, prob)
  assert bool(out.converged)
  ref = sinkhorn.Sinkhorn(threshold=1e-11, max_iterations=500_000)(prob)
  np.testing.assert_allclose(out.matrix, ref.matrix, atol=1e-9)
  np.testing.assert_allclose(float(out.reg_ot_cost), float(ref.reg_ot_cost), rtol=1e-8)
  errors = np.asarray(out.errors)
  before = int(np.sum(np.isinf(errors)))  # annealing sweeps (and a stage's Newton steps) carry no target error
  assert np.all(np.isinf(errors[:before]))
  assert np.all(np.isfinite(errors[before : _iterations(out)]))
  assert errors[_iterations(out) - 1] < 1e-9
  # Before Newton steps: ceil(sqrt(mean / eps)) sweeps from 0.3 mean, none within 30 of the mean cost (eps = 0.5);
  # below a fiftieth of it the sweeps stop at 4 eps, where Newton steps take the error to 1e-2 first.
  ratio = float(a @ prob.geom.cost_matrix @ b) / eps
  factor, min_ratio, _ = annealing.NEWTON_STAGE
  staged = ratio > min_ratio
  target = ratio / factor if staged else ratio
  sweeps = int(np.ceil(np.sqrt(target))) if target > 30 else 0
  assert before > sweeps if staged else before == sweeps
  # The regimes (mean cost 5.5): cold; annealed; staged from a cold start at 4 eps; annealed to 4 eps and staged.
  assert (sweeps > 0, staged) == {0.5: (False, False), 0.125: (True, False), 0.05: (False, True), 0.005: (True, True)}[
    eps
  ]


def test_default_solver_is_faster_than_sinkhorn_in_iterations_at_small_epsilon():
  """On a clustered cloud at 1e-3 of the mean cost plain Sinkhorn needs thousands of iterations, the default < 100."""
  rs = np.random.default_rng(3)
  centres = rs.normal(size=(5, 2)) * 3
  x = centres[rs.integers(5, size=200)] + rs.normal(size=(200, 2))
  y = centres[rs.integers(5, size=200)] + 1.5 + rs.normal(size=(200, 2))
  a, b = jnp.full(200, 1 / 200), jnp.full(200, 1 / 200)
  geom = pointcloud.PointCloud(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32))
  prob = _problem(x.astype(np.float32), y.astype(np.float32), a, b, 1e-3 * float(jnp.mean(geom.cost_matrix)))
  out = _solve(SlicedSinkhorn(threshold=1e-3, max_iterations=20_000), prob)
  plain = sinkhorn.Sinkhorn(threshold=1e-3, max_iterations=20_000)(prob)
  assert bool(out.converged)
  assert bool(plain.converged)
  assert _iterations(out) < 100 < int(plain.n_iters) / 10


def test_online_geometry_runs_the_corrected_loop_after_annealing(x64):
  rs = np.random.default_rng(4)
  x, a = random_measure(rs, 30, 2)
  y, b = random_measure(rs, 20, 2)
  online = linear_problem.LinearProblem(
    pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y), epsilon=0.05, batch_size=8), jnp.asarray(a), jnp.asarray(b)
  )
  solver = SlicedSinkhorn(threshold=1e-9, max_iterations=5000, annealing=(1.0, 0.9))
  assert not solver.uses_newton(online)
  out = _solve(solver, online)
  assert bool(out.converged)
  assert np.isinf(np.asarray(out.errors)[0])  # annealed from the mean cost
  ref = sinkhorn.Sinkhorn(threshold=1e-11, max_iterations=200_000)(_problem(x, y, a, b, 0.05))
  np.testing.assert_allclose(out.matrix, ref.matrix, atol=1e-8)
  with pytest.raises(ValueError, match="online"):
    SlicedSinkhorn(tail="newton").uses_newton(online)


def test_a_warm_start_skips_the_annealing(digits_test, ra_model):
  prob = digits_test.problem(1)
  cold = _solve(SlicedSinkhorn(threshold=1e-3, annealing=(10.0, 0.9)), prob)  # forced annealing from zeros
  warm = _solve(SlicedSinkhorn.from_initializer(ra_model.bind(digits_test.x), threshold=1e-3), prob)
  assert np.isinf(np.asarray(cold.errors)[0])
  assert np.all(np.isfinite(np.asarray(warm.errors)[: _iterations(warm)]))
  assert bool(warm.converged)
  assert bool(cold.converged)


@pytest.mark.parametrize("tail", ["newton", "sinkhorn"])
def test_a_warm_start_starts_from_f_as_otts(x64, tail):
  """``init=(f, g)`` and OTT initializers (whose ``g`` is zeros) start from ``f`` on both tails, as OTT's Sinkhorn."""
  rs = np.random.default_rng(6)
  x, a = random_measure(rs, 40, 3)
  y, b = random_measure(rs, 30, 3)
  prob = _problem(x, y, a, b, 0.01)
  ref = sinkhorn.Sinkhorn(threshold=1e-11, max_iterations=200_000)(prob)
  solver = SlicedSinkhorn(threshold=1e-8, tail=tail)
  out = solver(prob, init=(ref.f, jnp.zeros_like(ref.g)))  # the solution's f, no g: OTT needs one iteration
  assert _iterations(out) == 1
  assert bool(out.converged)
  ott_init = sinkhorn.Sinkhorn(threshold=1e-8)(prob, init=(ref.f, jnp.zeros_like(ref.g)))
  assert int(ott_init.n_iters) <= 10  # OTT's first check (inner_iterations=10) also stops


def test_default_solver_under_vmap_and_direct_newton_steps(x64):
  rs = np.random.default_rng(5)
  pairs = [(random_measure(rs, 25, 2, 0.1), random_measure(rs, 25, 2, 0.1)) for _ in range(3)]
  xs, a_s = np.stack([p[0][0] for p in pairs]), np.stack([p[0][1] for p in pairs])
  ys, b_s = np.stack([p[1][0] for p in pairs]), np.stack([p[1][1] for p in pairs])

  def one(solver, x, y, a, b):
    return solver(_problem(x, y, a, b, 0.01)).matrix

  for newton_solve in sliced_sinkhorn.NEWTON_SOLVES:  # "auto": CG and, under vmap, the factorisation at every step
    solver = SlicedSinkhorn(threshold=1e-10, newton_solve=newton_solve)
    batched = jax.jit(jax.vmap(one, in_axes=(None, 0, 0, 0, 0)))(solver, xs, ys, a_s, b_s)
    for i in range(3):
      ref = sinkhorn.Sinkhorn(threshold=1e-12, max_iterations=200_000)(_problem(xs[i], ys[i], a_s[i], b_s[i], 0.01))
      np.testing.assert_allclose(batched[i], ref.matrix, atol=1e-9)


def test_bad_settings_are_refused():
  with pytest.raises(ValueError, match="tail"):
    SlicedSinkhorn(tail="fast")
  with pytest.raises(ValueError, match="annealing"):
    SlicedSinkhorn(annealing=(0.1, 1.5))
  with pytest.raises(ValueError, match="annealing"):
    SlicedSinkhorn(annealing="yes")
  with pytest.raises(ValueError, match="newton_solve"):
    SlicedSinkhorn(newton_solve="lu")
  with pytest.raises(ValueError, match="cg_tolerance"):
    SlicedSinkhorn(cg_tolerance=0.0)


# ------------------------------------------------------------------ geometries without point coordinates


def _summed(f, g):
  """``f_i + g_j`` ``[n, m]``: gauge-free (the plan's exponent, the cost removed)."""
  return np.asarray(f)[:, None] + np.asarray(g)[None, :]


def _converged_ott(geom, a, b):
  return sinkhorn.Sinkhorn(threshold=1e-11, max_iterations=50_000)(linear_problem.LinearProblem(geom, a, b))


@pytest.mark.parametrize("tail", ["auto", "sinkhorn"])
def test_plain_and_low_rank_geometries_reach_otts_solution(x64, tail):
  """A cost matrix without points (plain and low-rank geometries): no sliced part, OTT's solution (float64)."""
  from ott.geometry import geometry, low_rank

  rs = np.random.default_rng(3)
  x, a = random_measure(rs, 30, 3, zero_frac=0.2)
  y, b = random_measure(rs, 24, 3)
  y = y + 1.0
  cloud = pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y), epsilon=1e-2)
  cost = np.asarray(cloud.cost_matrix)
  eps = 0.01 * float(cost.mean())  # annealing sweeps, then the tail
  # A rank-5 cost: its own problem, given as factors (OTT's LRCGeometry) and as the dense matrix it stands for.
  c1, c2 = rs.normal(size=(30, 5)), rs.normal(size=(24, 5))
  for geom, ref_geom in (
    (geometry.Geometry(cost_matrix=jnp.asarray(cost), epsilon=eps), None),
    (low_rank.LRCGeometry(jnp.asarray(c1), jnp.asarray(c2), epsilon=0.5), None),
  ):
    solver = SlicedSinkhorn(tail=tail, threshold=1e-9, max_iterations=20_000)
    out = _solve(solver, linear_problem.LinearProblem(geom, jnp.asarray(a), jnp.asarray(b)))
    assert bool(out.converged)
    ref = _converged_ott(geom if ref_geom is None else ref_geom, jnp.asarray(a), jnp.asarray(b))
    pos = np.outer(a > 0, b > 0)
    np.testing.assert_allclose(_summed(out.f, out.g)[pos], _summed(ref.f, ref.g)[pos], atol=1e-6)
    np.testing.assert_allclose(out.matrix, ref.matrix, atol=1e-9)
  # The plain geometry's solution is the point cloud's: the coordinates only add the sliced parts.
  dense = _solve(
    SlicedSinkhorn(threshold=1e-9),
    linear_problem.LinearProblem(
      pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y), epsilon=eps), jnp.asarray(a), jnp.asarray(b)
    ),
  )
  plain = _solve(
    SlicedSinkhorn(threshold=1e-9),
    linear_problem.LinearProblem(
      geometry.Geometry(cost_matrix=jnp.asarray(cost), epsilon=eps), jnp.asarray(a), jnp.asarray(b)
    ),
  )
  np.testing.assert_allclose(plain.matrix, dense.matrix, atol=1e-9)


def test_grid_runs_annealed_sinkhorn_to_otts_solution(x64):
  """A Grid (no cost matrix, no points): annealing then Anderson Sinkhorn iterations, OTT's solution."""
  from ott.geometry import grid

  rs = np.random.default_rng(4)
  a, b = rs.uniform(0.1, 1.0, size=42), rs.uniform(0.1, 1.0, size=42)
  a, b = jnp.asarray(a / a.sum()), jnp.asarray(b / b.sum())
  geom = grid.Grid(grid_size=(7, 6), epsilon=2e-3)
  assert not SlicedSinkhorn().uses_newton(linear_problem.LinearProblem(geom, a, b))
  out = _solve(SlicedSinkhorn(threshold=1e-8, max_iterations=20_000), linear_problem.LinearProblem(geom, a, b))
  ref = _converged_ott(geom, a, b)
  assert bool(out.converged)
  np.testing.assert_allclose(_summed(out.f, out.g), _summed(ref.f, ref.g), atol=1e-5)


def test_geometries_without_points_refuse_the_sliced_parts(digits_test):
  from ott.geometry import geometry, grid

  geom = geometry.Geometry(cost_matrix=jnp.ones((8, 6)), epsilon=0.1)
  prob = linear_problem.LinearProblem(geom)
  with pytest.raises(ValueError, match=r"`theta` need\(s\) point coordinates .*got a Geometry"):
    SlicedSinkhorn(jnp.eye(2))(prob)
  with pytest.raises(ValueError, match="correction steps"):
    SlicedSinkhorn().correction_state(prob)
  with pytest.raises(ValueError, match="not with an online geometry or a Grid"):
    SlicedSinkhorn(tail="newton")(linear_problem.LinearProblem(grid.Grid(grid_size=(3, 3), epsilon=0.1)))


def test_plain_geometries_under_jit_and_vmap(x64):
  """A batch of cost matrices, one compiled program: each pair's OTT solution."""
  from ott.geometry import geometry

  costs = jnp.asarray(np.random.default_rng(5).uniform(size=(3, 12, 10)))
  a, b = jnp.full(12, 1 / 12), jnp.full(10, 1 / 10)

  @jax.jit
  @jax.vmap
  def plans(cost):
    geom = geometry.Geometry(cost_matrix=cost, epsilon=0.02)
    return SlicedSinkhorn(threshold=1e-9)(linear_problem.LinearProblem(geom, a, b)).matrix

  for cost, plan in zip(costs, plans(costs)):
    ref = _converged_ott(geometry.Geometry(cost_matrix=cost, epsilon=0.02), a, b)
    np.testing.assert_allclose(plan, ref.matrix, atol=1e-9)


# ------------------------------------------------------------------ OTT's Sinkhorn keywords


def test_otts_keywords_keep_their_meaning_or_are_refused_by_name():
  from ott.solvers.linear import acceleration, implicit_differentiation

  solver = SlicedSinkhorn(
    lse_mode=True,
    threshold=1e-3,
    norm_error=1,
    inner_iterations=10,
    min_iterations=0,
    max_iterations=2000,
    momentum=None,
    anderson=acceleration.AndersonAcceleration(memory=3, ridge_identity=1e-3),
    parallel_dual_updates=False,
    recenter_potentials=False,
    use_danskin=None,
    implicit_diff=implicit_differentiation.ImplicitDiff(),
    initializer=None,
    progress_fn=None,
  )
  assert (solver.anderson_memory, solver.anderson_ridge, solver.inner_iterations) == (3, 1e-3, 10)
  assert solver.replace(threshold=1e-4).anderson_memory == 3
  refused = {
    "inner_iterations=0": {"inner_iterations": 0},
    "norm_error=0.5": {"norm_error": 0.5},
    "implicit_diff='yes'": {"implicit_diff": "yes"},
  }
  for name, kwargs in refused.items():
    with pytest.raises(ValueError, match=f"cannot honour: {name}"):
      SlicedSinkhorn(**kwargs)


def test_options_outside_its_path_run_otts_sinkhorn(x64):
  """Unbalanced problems and OTT options that the solver's path does not reproduce run OTT's own ``Sinkhorn``.

  The same keywords give OTT's output (plan and error trace, to rounding), jitted, and ``ott_reasons`` names why.
  """
  from ott.solvers.linear import acceleration

  rs = np.random.default_rng(11)
  x, a = random_measure(rs, 30, 3, zero_frac=0.1)
  y, b = random_measure(rs, 25, 3, zero_frac=0.1)
  balanced = _problem(x, y, a, b, 0.1)
  unbalanced = linear_problem.LinearProblem(balanced.geom, a, b, tau_a=0.9, tau_b=0.8)
  cases = [
    ("an unbalanced problem", unbalanced, {}),
    ("an unbalanced problem", unbalanced, {"recenter_potentials": True}),
    ("lse_mode=False", balanced, {"lse_mode": False}),
    ("norm_error=2", balanced, {"norm_error": 2}),
    ("momentum", balanced, {"momentum": acceleration.Momentum(value=1.3)}),
    ("parallel_dual_updates=True", balanced, {"parallel_dual_updates": True}),
    ("implicit_diff=None", balanced, {"implicit_diff": None}),
    ("refresh_every", balanced, {"anderson": acceleration.AndersonAcceleration(memory=2, refresh_every=3)}),
  ]
  for reason, prob, kwargs in cases:
    solver = SlicedSinkhorn(threshold=1e-6, **kwargs)
    assert any(reason in r for r in solver.ott_reasons(prob)), (reason, solver.ott_reasons(prob))
    out = _solve(solver, prob)
    ref = sinkhorn.Sinkhorn(threshold=1e-6, **kwargs)(prob)
    np.testing.assert_allclose(out.errors, ref.errors, rtol=1e-8, atol=1e-14)  # jitted vs eager: rounding only
    np.testing.assert_allclose(out.matrix, ref.matrix, rtol=1e-10, atol=1e-15)
    assert int(out.n_iters) == int(ref.n_iters)
  assert SlicedSinkhorn().ott_reasons(balanced) == ()


def test_recenter_potentials_centres_f_as_ott(x64):
  rs = np.random.default_rng(12)
  x, a = random_measure(rs, 30, 2, zero_frac=0.1)
  y, b = random_measure(rs, 20, 2)
  prob = _problem(x, y, a, b, 0.1)
  out = _solve(SlicedSinkhorn(threshold=1e-9, recenter_potentials=True), prob)
  ref = sinkhorn.Sinkhorn(threshold=1e-9, recenter_potentials=True)(prob)
  finite = np.isfinite(np.asarray(out.f))
  assert abs(float(np.mean(np.asarray(out.f)[finite]))) < 1e-12
  np.testing.assert_allclose(out.f[a > 0], ref.f[a > 0], atol=1e-7)
  np.testing.assert_allclose(out.g, ref.g, atol=1e-7)


@pytest.mark.parametrize("tail", ["newton", "sinkhorn"])
def test_implicit_gradients_of_potentials_and_plan_match_otts(x64, tail):
  """``jax.grad`` through ``f``, ``matrix`` and ``reg_ot_cost`` with ``use_danskin=False``: OTT's implicit gradients.

  The potentials are differentiated by OTT's ``ImplicitDiff`` at the solver's solution (threshold 1e-10,
  float64), so the gradients match those of OTT's converged solution (threshold 1e-14). Both solve the implicit
  system to 1e-12: at ImplicitDiff's default tolerance (1e-6) OTT's own gradients at thresholds 1e-10, 1e-12 and
  1e-14 differ by 2e-7, and a comparison at 1e-8 would be decided by the potentials' gauge.
  """
  from ott.solvers.linear import implicit_differentiation

  rs = np.random.default_rng(13)
  x, a = random_measure(rs, 17, 3)
  y, b = random_measure(rs, 23, 3)
  weights_f, weights_p = jnp.asarray(rs.normal(size=17)), jnp.asarray(rs.normal(size=(17, 23)))

  def losses(solver, x):
    out = solver(_problem(x, y, a, b, 0.1))
    return jnp.sum(weights_f * out.f), jnp.sum(weights_p * out.matrix), out.reg_ot_cost

  implicit = implicit_differentiation.ImplicitDiff(solver_kwargs={"rtol": 1e-12, "atol": 1e-12})
  kw = {"use_danskin": False, "implicit_diff": implicit}
  for index in range(3):
    grad = jax.jit(jax.grad(lambda s, x, i=index: losses(s, x)[i], argnums=1))
    ours = grad(SlicedSinkhorn(tail=tail, threshold=1e-10, max_iterations=10_000, **kw), jnp.asarray(x))
    ott = grad(sinkhorn.Sinkhorn(threshold=1e-14, max_iterations=100_000, **kw), jnp.asarray(x))
    assert np.abs(ott).max() > 1e-3
    np.testing.assert_allclose(ours, ott, atol=1e-9 * np.abs(ott).max())


@pytest.mark.parametrize("tail", ["newton", "sinkhorn"])
def test_progress_fn_is_called_as_ott_calls_it(tail, capsys):
  """OTT's own ``default_progress_fn``: every ``inner_iterations`` iterations (annealing sweeps included, their
  error ``inf``), with the error of that iteration."""
  from ott import utils

  rs = np.random.default_rng(6)
  x, a = random_measure(rs, 40, 2)
  y, b = random_measure(rs, 30, 2)
  prob = _problem(x, y + 1.0, a, b, 0.05)
  solver = SlicedSinkhorn(
    tail=tail, inner_iterations=3, threshold=1e-5, progress_fn=utils.default_progress_fn(fmt="{iter} {error}")
  )
  out = _solve(solver, prob)
  jax.effects_barrier()
  lines = [line.split() for line in capsys.readouterr().out.strip().splitlines()]
  done = _iterations(out)
  assert [int(i) for i, _ in lines] == list(range(3, done + 1, 3))
  errors = np.asarray(out.errors)
  assert np.isinf(errors[0])  # annealed: from 0.1 x mean cost down to 0.05
  np.testing.assert_allclose([float(e) for _, e in lines], errors[np.arange(3, done + 1, 3) - 1], rtol=1e-6)


@pytest.mark.parametrize("tail", ["newton", "sinkhorn"])
def test_cost_gradients_match_otts(x64, tail):
  """``jax.grad`` of ``reg_ot_cost`` with respect to the points (Danskin): OTT's gradient, float64."""
  rs = np.random.default_rng(7)
  x, a = random_measure(rs, 20, 2)
  y, b = random_measure(rs, 16, 2)

  def cost(solver, x):
    prob = _problem(x, y + 1.0, a, b, 0.1)
    return solver(prob).reg_ot_cost

  ours = jax.jit(jax.grad(lambda x: cost(SlicedSinkhorn(tail=tail, threshold=1e-10, max_iterations=10_000), x)))
  ott = jax.jit(jax.grad(lambda x: cost(sinkhorn.Sinkhorn(threshold=1e-10, max_iterations=10_000), x)))
  grad = ours(jnp.asarray(x))
  assert np.all(np.isfinite(grad))
  assert np.abs(grad).max() > 1e-3
  np.testing.assert_allclose(grad, ott(jnp.asarray(x)), atol=1e-8)


# ------------------------------------------------------------------ OTT's tools that take a solver instance


def test_gromov_wasserstein_with_sliced_sinkhorn_as_its_linear_solver():
  """``GromovWasserstein(linear_solver=SlicedSinkhorn())``: OTT's GW cost, and its stored inner error traces."""
  from ott.problems.quadratic import quadratic_problem
  from ott.solvers.quadratic import gromov_wasserstein

  rs = np.random.default_rng(14)
  x = jnp.asarray(rs.normal(size=(30, 2)), jnp.float32)
  y = jnp.asarray(rs.normal(size=(25, 3)), jnp.float32)
  prob = quadratic_problem.QuadraticProblem(pointcloud.PointCloud(x), pointcloud.PointCloud(y))

  def gw(linear_solver):
    solver = gromov_wasserstein.GromovWasserstein(linear_solver=linear_solver, epsilon=0.05, store_inner_errors=True)
    return jax.jit(solver)(prob)

  ours, ref = gw(SlicedSinkhorn()), gw(sinkhorn.Sinkhorn())
  assert bool(ours.converged)
  np.testing.assert_allclose(ours.reg_gw_cost, ref.reg_gw_cost, rtol=1e-3)
  assert ours.errors.shape == (50, SlicedSinkhorn().outer_iterations)


def test_free_wasserstein_barycenter_with_sliced_sinkhorn():
  """``FreeWassersteinBarycenter(SlicedSinkhorn())``: the solver under ``vmap`` inside OTT's loop, OTT's cost."""
  from ott.problems.linear import barycenter_problem
  from ott.solvers.linear import continuous_barycenter

  rs = np.random.default_rng(15)
  y = jnp.asarray(rs.normal(size=(60, 2)), jnp.float32)
  prob = barycenter_problem.FreeBarycenterProblem(y, jnp.full(60, 1.0 / 20), num_per_segment=(20, 20, 20), epsilon=0.1)

  def cost(linear_solver):
    out = continuous_barycenter.FreeWassersteinBarycenter(linear_solver)(prob, bar_size=15, rng=jax.random.key(0))
    costs = np.asarray(out.costs)
    return costs[costs > -1][-1], out.x

  (ours, x_ours), (ref, x_ref) = cost(SlicedSinkhorn()), cost(sinkhorn.Sinkhorn())
  np.testing.assert_allclose(ours, ref, rtol=1e-3)
  np.testing.assert_allclose(x_ours, x_ref, atol=1e-2)


@pytest.mark.parametrize(("dtype", "threshold"), [("float32", 1e-6), ("float64", 1e-10)])
def test_newton_steps_reach_tight_thresholds_on_self_transport(dtype, threshold):
  """x -> x: a plan close to the identity, an ill-conditioned Newton system on which CG alone stalls.

  "auto" factorises the steps where CG stops short of its tolerance, and keeps a step whose dual change is
  within round-off when it lowers the error (the dual's rise near the solution is below float precision).
  """
  with jax.enable_x64(dtype == "float64"):
    for seed, n in [(2, 64), (4, 24)]:
      x, a = (jnp.asarray(v, dtype) for v in random_measure(np.random.default_rng(seed), n, 2))
      prob = _problem(x, x, a, a, 0.05)
      out = _solve(SlicedSinkhorn(threshold=threshold, max_iterations=2000), prob)
      assert bool(out.converged), (seed, _iterations(out))
      # Both marginals from the returned plan (no reference: OTT's Sinkhorn stalls at 4e-8 and 1e-8 here, float64).
      plan = np.asarray(out.matrix, np.float64)
      for axis in (0, 1):
        assert np.abs(plan.sum(axis) - np.asarray(a)).sum() < 2 * threshold


@pytest.mark.parametrize("eps", [0.5, 0.005])
def test_fewer_sources_than_targets_runs_newton_on_f_with_exact_columns(x64, eps):
  """n < m: the steps move f (an n x n system), columns are exact and the error reported is the rows'."""
  rs = np.random.default_rng(12)
  x, a = random_measure(rs, 20, 3, zero_frac=0.2)
  y, b = random_measure(rs, 70, 3, zero_frac=0.2)
  prob = _problem(x, y, a, b, eps)
  out = _solve(SlicedSinkhorn(threshold=1e-9, max_iterations=5000), prob)
  ref = sinkhorn.Sinkhorn(threshold=1e-11, max_iterations=500_000)(prob)
  np.testing.assert_allclose(out.matrix, ref.matrix, atol=1e-9)
  plan = np.asarray(out.matrix)
  np.testing.assert_allclose(plan.sum(0), b, atol=1e-13)  # columns exact
  k = _iterations(out)
  row_error = np.abs(plan.sum(1) - a).sum()
  # out.matrix is recomputed from the recentred potentials: a rounding of 1e-16 in f moves the plan by 1e-16 / eps
  # relative (2e-14 at eps = 0.005), so an error near 1e-10 is reproduced to about 1e-14, not to 1e-15.
  np.testing.assert_allclose(float(out.errors[k - 1]), row_error, rtol=1e-6, atol=1e-14)
  assert 0 < row_error < 1e-9
  assert np.all(np.isneginf(np.asarray(out.f)[a == 0]))
  assert np.all(np.isneginf(np.asarray(out.g)[b == 0]))


@jax.tree_util.register_pytree_node_class
class _Drift(costs.CostFn):
  """An asymmetric cost, ``|x - y|^2 + <x - y, (1, 0, ...)>``: its transpose is not the cost of ``y`` to ``x``."""

  def __call__(self, x, y):
    return jnp.sum((x - y) ** 2) + (x - y)[0]


def test_cost_matrix_forms_the_transpose_in_its_own_layout_and_only_where_the_cost_is_symmetric(x64):
  from ottsliced.data.sphere import SphereGeodesic

  rs = np.random.default_rng(15)
  x, y = jnp.asarray(rs.normal(size=(30, 2))), jnp.asarray(rs.normal(size=(45, 2)))
  cases = [
    pointcloud.PointCloud(x, y),
    pointcloud.PointCloud(x, y, cost_fn=costs.Euclidean(), scale_cost=2.0),
    pointcloud.PointCloud(x, y, cost_fn=SphereGeodesic()),  # symmetric = True, its own all_pairs
    pointcloud.PointCloud(x, y, cost_fn=_Drift()),  # asymmetric: the formed matrix transposed
    pointcloud.PointCloud(x, y, scale_cost="mean"),  # the scale needs the matrix: transposed
  ]
  for geom in cases:
    expected = np.asarray(geom.cost_matrix)
    np.testing.assert_allclose(sliced_sinkhorn.cost_matrix(geom), expected, rtol=1e-13)
    np.testing.assert_allclose(sliced_sinkhorn.cost_matrix(geom, transposed=True), expected.T, rtol=1e-13, atol=1e-15)
  assert not np.allclose(pointcloud.PointCloud(y, x, cost_fn=_Drift()).cost_matrix, cases[3].cost_matrix.T)
  # Formed directly: no transpose of an [n, m] matrix in the program.
  hlo = jax.jit(lambda x, y: sliced_sinkhorn.cost_matrix(pointcloud.PointCloud(x, y), True)).lower(x, y).as_text()
  assert "transpose" not in hlo


@pytest.mark.parametrize("eps", [0.5, 0.01])
def test_fewer_sources_than_targets_with_an_asymmetric_cost_reach_otts_solution(x64, eps):
  """n < m with a cost whose transpose must be copied: the sweeps, the stage and the steps read it as OTT does."""
  rs = np.random.default_rng(16)
  x, a = random_measure(rs, 25, 2, zero_frac=0.2)
  y, b = random_measure(rs, 60, 2, zero_frac=0.2)
  geom = pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y), cost_fn=_Drift(), epsilon=eps)
  prob = linear_problem.LinearProblem(geom, jnp.asarray(a), jnp.asarray(b))
  out = _solve(SlicedSinkhorn(threshold=1e-9, max_iterations=5000), prob)
  if eps < 0.05:
    assert np.isinf(np.asarray(out.errors)).any()  # sweeps ran on the transposed matrix
  ref = sinkhorn.Sinkhorn(threshold=1e-11, max_iterations=500_000)(prob)
  np.testing.assert_allclose(out.matrix, ref.matrix, atol=1e-9)


def test_axis_potential_sums_the_coordinates_feasible_1d_potentials(x64):
  rs = np.random.default_rng(13)
  x, a = random_measure(rs, 400, 2, zero_frac=0.1)
  y, b = random_measure(rs, 380, 2, zero_frac=0.1)
  geom = pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y))
  f = np.asarray(sliced_sinkhorn.axis_potential(geom, jnp.asarray(a), jnp.asarray(b)))
  phi, psi = ots.sliced_potentials(jnp.asarray(x), jnp.asarray(y), a, b, jnp.eye(2))
  np.testing.assert_allclose(f[a > 0], np.asarray(phi).sum(1)[a > 0], rtol=1e-12)
  assert np.all(np.isneginf(f[a == 0]))
  # The squared cost is the coordinates' sum: the summed 1-D pairs are feasible for it.
  slack = np.asarray(geom.cost_matrix) - np.asarray(phi).sum(1)[:, None] - np.asarray(psi).sum(1)[None, :]
  assert slack[np.ix_(a > 0, b > 0)].min() > -1e-9
  # Where it does not apply: another cost, a scaled cost, d > 4, a small plan.
  a, b = jnp.asarray(a), jnp.asarray(b)
  assert sliced_sinkhorn.axis_potential(pointcloud.PointCloud(geom.x, geom.y, cost_fn=costs.Euclidean()), a, b) is None
  assert sliced_sinkhorn.axis_potential(pointcloud.PointCloud(geom.x, geom.y, scale_cost="mean"), a, b) is None
  x5 = jnp.asarray(rs.normal(size=(400, 5)))
  assert sliced_sinkhorn.axis_potential(pointcloud.PointCloud(x5, x5[:380]), a, b) is None
  assert sliced_sinkhorn.axis_potential(pointcloud.PointCloud(geom.x[:40], geom.y[:38]), a[:40], b[:38]) is None


@pytest.mark.parametrize("shape", [(400, 380), (380, 400)])
def test_a_cold_start_without_sweeps_starts_from_the_axis_potential(x64, shape):
  """A 2-D problem at a twentieth of the mean cost: no sweeps, Newton from the axis potential, OTT's solution."""
  rs = np.random.default_rng(14)
  x, a = random_measure(rs, shape[0], 2, zero_frac=0.1)
  y, b = random_measure(rs, shape[1], 2, zero_frac=0.1)
  y = y + 1.0
  eps = 0.05 * float(a @ np.asarray(pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y)).cost_matrix) @ b)
  prob = _problem(x, y, a, b, eps)
  assert sliced_sinkhorn.axis_potential(prob.geom, prob.a, prob.b) is not None
  out = _solve(SlicedSinkhorn(threshold=1e-9, max_iterations=500), prob)
  assert not np.any(np.isinf(np.asarray(out.errors)))  # no sweep
  ref = sinkhorn.Sinkhorn(threshold=1e-11, max_iterations=100_000)(prob)
  np.testing.assert_allclose(out.matrix, ref.matrix, atol=1e-9)
  # The start is the axis potential: the first error is that of its column (row) update, not of zeros'.
  start = sliced_sinkhorn.axis_potential(prob.geom, prob.a, prob.b)
  geom = prob.geom
  g = geom.update_potential(start, jnp.zeros_like(prob.b), jnp.log(prob.b), axis=0)
  if shape[0] >= shape[1]:  # Newton on g from g = T_b f0, then f = T_a g: the column error of that pair
    plan = np.asarray(geom.transport_from_potentials(geom.update_potential(start, g, jnp.log(prob.a), axis=1), g))
    np.testing.assert_allclose(float(out.errors[0]), np.abs(plan.sum(0) - b).sum(), rtol=1e-6)
  else:  # Newton on f from f0, then g = T_b f0: the row error of (f0, g)
    plan = np.asarray(geom.transport_from_potentials(start, g))
    np.testing.assert_allclose(float(out.errors[0]), np.abs(plan.sum(1) - a).sum(), rtol=1e-6)


def _product_grid(rs, n1, n2, shift):
  """A ``n1 x n2`` grid on the unit square, moved by ``shift``, with product weights: its OT is per axis."""
  points = np.stack(np.meshgrid(np.linspace(0, 1, n1), np.linspace(0, 1, n2), indexing="ij"), -1).reshape(-1, 2)
  w = np.outer(rs.uniform(0.2, 1.0, n1), rs.uniform(0.2, 1.0, n2)).reshape(-1)
  return points + shift, w / w.sum()


def test_the_axis_start_replaces_the_sweeps_only_where_its_plan_fits(x64):
  """At a sixtieth of the mean cost (sweeps and stage due): none where the axis plan's rows fit, OTT's solution."""
  rs = np.random.default_rng(3)
  grids = (*_product_grid(rs, 20, 20, 0.0), *_product_grid(rs, 20, 19, 0.3))
  x2, a2 = random_measure(rs, 400, 2)
  y2, b2 = random_measure(rs, 380, 2)
  rotation = np.array([[0.6, -0.8], [0.8, 0.6]])
  y2 = y2 @ rotation * np.array([3.0, 0.3]) @ rotation.T  # elongated along a diagonal: no axis sees its OT
  for (x, a, y, b), fits in ((grids, True), ((x2, a2, y2, b2), False)):
    eps = float(a @ np.asarray(pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y)).cost_matrix) @ b) / 60
    prob = _problem(x, y, a, b, eps)
    f = sliced_sinkhorn.axis_potential(prob.geom, prob.a, prob.b)
    g = prob.geom.update_potential(f, jnp.zeros_like(prob.b), jnp.log(prob.b), axis=0)
    rows = np.asarray(prob.geom.transport_from_potentials(f, g)).sum(1)
    assert (np.abs(rows - a).sum() <= sliced_sinkhorn.AXIS_START_MAX_ROW_ERROR) == fits
    out = _solve(SlicedSinkhorn(threshold=1e-9, max_iterations=500), prob)
    assert bool(np.any(np.isinf(np.asarray(out.errors)))) != fits  # sweeps (inf) only where it does not fit
    ref = sinkhorn.Sinkhorn(threshold=1e-11, max_iterations=100_000)(prob)
    np.testing.assert_allclose(out.matrix, ref.matrix, atol=1e-9)
