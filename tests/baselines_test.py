"""Baselines: min-SWGG plans, Meta OT initializer, sorting applicability."""

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest
from ott.geometry import costs
from ott.solvers.linear import sinkhorn

import ottsliced as ots
from ottsliced import baselines as bl
from ottsliced.data import digit_pairs
from ottsliced.problems import ProblemBatch
from ottsliced.solve import num_iterations

EPS = 1e-2


def _measure(rs, n, d, zero_frac=0.0):
  x = rs.normal(size=(n, d))
  w = rs.uniform(0.1, 1.0, size=n)
  if zero_frac:
    w[rs.uniform(size=n) < zero_frac] = 0.0
    w[0] += 0.5
  return x, w / w.sum()


# --------------------------------------------------------------------------- #
# min-SWGG
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(("n", "m", "zero_frac"), [(9, 9, 0.0), (12, 7, 0.3), (1, 6, 0.0)])
def test_swgg_plan_marginals_support_and_cost_bound(x64, n, m, zero_frac):
  rs = np.random.default_rng(n * 100 + m)
  x, a = _measure(rs, n, 3, zero_frac)
  y, b = _measure(rs, m, 3, zero_frac)
  out = bl.min_swgg_plan(x, y, a, b, num_directions=30, rng=jax.random.key(1))
  plan = np.asarray(out.plans)
  assert plan.shape == (n, m)
  np.testing.assert_allclose(plan.sum(1), a, atol=1e-6)
  np.testing.assert_allclose(plan.sum(0), b, atol=1e-6)
  assert np.all(plan >= 0)
  assert np.count_nonzero(plan) <= n + m - 1
  cmat = ot.dist(x, y)
  np.testing.assert_allclose(float(out.cost), np.sum(plan * cmat), rtol=1e-10)
  assert float(out.cost) >= ot.emd2(a, b, cmat) - 1e-10
  np.testing.assert_allclose(np.linalg.norm(out.direction), 1.0, rtol=1e-10)


def test_swgg_exact_in_1d(x64):
  rs = np.random.default_rng(3)
  x, a = _measure(rs, 15, 1, 0.2)
  y, b = _measure(rs, 10, 1)
  out = bl.min_swgg_plan(x, y, a, b, num_directions=4)
  np.testing.assert_allclose(float(out.cost), ot.emd2(a, b, ot.dist(x, y)), rtol=1e-10)


def test_swgg_other_cost(x64):
  rs = np.random.default_rng(4)
  x, a = _measure(rs, 8, 2)
  y, b = _measure(rs, 6, 2)
  cost_fn = costs.PNormP(1.5)
  out = bl.min_swgg_plan(x, y, a, b, num_directions=20, cost_fn=cost_fn)
  cmat = np.asarray(jax.vmap(lambda u: jax.vmap(lambda v: cost_fn(u, v))(y))(x))
  np.testing.assert_allclose(float(out.cost), np.sum(np.asarray(out.plans) * cmat), rtol=1e-10)
  assert float(out.cost) >= ot.emd2(a, b, cmat) - 1e-10


def test_swgg_padding_invariant(x64):
  rs = np.random.default_rng(5)
  x, a = _measure(rs, 10, 2)
  y, b = _measure(rs, 8, 2)
  ref = bl.min_swgg_plan(x, y, a, b, num_directions=25, rng=jax.random.key(2))
  # Pad: extra zero-weight atoms at arbitrary places, interleaved.
  xp = np.concatenate([rs.normal(size=(3, 2)), x, x[:2]])
  ap = np.concatenate([np.zeros(3), a, np.zeros(2)])
  yp = np.concatenate([y, rs.normal(size=(4, 2))])
  bp = np.concatenate([b, np.zeros(4)])
  out = bl.min_swgg_plan(xp, yp, ap, bp, num_directions=25, rng=jax.random.key(2))
  plan = np.asarray(out.plans)
  np.testing.assert_allclose(plan[3:13, :8], np.asarray(ref.plans), atol=1e-12)
  assert plan.sum() == pytest.approx(1.0)
  np.testing.assert_allclose(float(out.cost), float(ref.cost), rtol=1e-12)
  np.testing.assert_allclose(out.direction, ref.direction)


def test_swgg_more_directions_never_worse(x64):
  rs = np.random.default_rng(6)
  x, a = _measure(rs, 20, 3)
  y, b = _measure(rs, 20, 3)
  rng = jax.random.key(7)
  cost = [float(bl.min_swgg_plan(x, y, a, b, num_directions=k, rng=rng).cost) for k in (2, 40)]
  assert cost[1] <= cost[0] + 1e-12
  # Directions are a prefix-stable sequence: the first k directions do not depend on the total.
  t5 = bl._swgg_directions(rng, 3, 5, jnp.float64)  # noqa: SLF001
  t25 = bl._swgg_directions(rng, 3, 25, jnp.float64)  # noqa: SLF001
  np.testing.assert_array_equal(t5, t25[:5])


def test_swgg_batch_shared_matches_single_and_jit():
  batch = digit_pairs(6, epsilon=EPS)
  out = bl.min_swgg_plans(batch, num_directions=40, rng=jax.random.key(0), pair_chunk=4)
  n, m = batch.shape
  assert out.plans.shape == (6, n, m)
  assert out.cost.shape == (6,)
  assert out.direction.shape == (6, 2)
  np.testing.assert_allclose(out.plans.sum(2), batch.a, atol=1e-6)
  np.testing.assert_allclose(out.plans.sum(1), batch.b, atol=1e-6)
  one = bl.min_swgg_plan(batch.x, batch.y, batch.a[2], batch.b[2], num_directions=40, rng=jax.random.key(0))
  np.testing.assert_allclose(out.plans[2], one.plans, atol=1e-7)
  # Per-pair (unshared) supports, under an outer jit (the batch is a pytree), give the same result.
  xs = jnp.broadcast_to(batch.x, (6, n, 2))
  theta = bl._swgg_directions(jax.random.key(0), 2, 40, jnp.float32)  # noqa: SLF001
  jitted = jax.jit(lambda bt: bl.min_swgg_plans(bt, directions=theta, pair_chunk=None).cost)
  np.testing.assert_allclose(jitted(ProblemBatch(xs, xs, batch.a, batch.b, EPS)), out.cost, rtol=1e-6)


def test_swgg_bad_arguments():
  batch = digit_pairs(2, epsilon=EPS)
  with pytest.raises(ValueError, match="num_directions"):
    bl.min_swgg_plans(batch, num_directions=0)
  with pytest.raises(ValueError, match="directions"):
    bl.min_swgg_plans(batch, directions=jnp.ones((3, 5)))
  with pytest.raises(ValueError, match="pair_chunk"):
    bl.min_swgg_plans(batch, pair_chunk=0)
  with pytest.raises(ValueError, match="ProblemBatch"):
    bl.min_swgg_plans("nope")


# --------------------------------------------------------------------------- #
# Meta OT
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def meta_model():
  train = digit_pairs(32, epsilon=EPS)
  return bl.fit_meta_ot(train, hidden=(64, 64), steps=300, chunk_steps=100, progress=False, rng=jax.random.key(0))


def test_meta_ot_trains(meta_model):
  losses = meta_model.losses
  assert losses.shape == (300,)
  assert np.all(np.isfinite(losses))
  assert losses[-50:].mean() < losses[:50].mean() - 0.05
  assert meta_model.train_seconds > 0
  assert meta_model.compile_seconds <= meta_model.train_seconds
  assert meta_model.num_params == (128 * 64 + 64) + (64 * 64 + 64) + (64 * 64 + 64)
  assert repr(meta_model.initializer) == "MetaOTInitializer(hidden=(64, 64), n=64, m=64)"


def test_meta_ot_warm_start_converges_to_same_plan(meta_model):
  test = digit_pairs(8, epsilon=EPS, offset=32)
  f = meta_model.predict_f(test.a, test.b)
  assert f.shape == (8, 64)
  assert bool(jnp.all(jnp.isfinite(f)))
  out = ots.solve_batch(test, meta_model.initializer, threshold=1e-2, inner_iterations=1)
  assert bool(jnp.all(out.converged))
  # Same (unique) solution as from zeros, at a tighter threshold.
  kw = {"threshold": 1e-3, "inner_iterations": 1, "max_iterations": 5000}
  warm, cold = ots.solve_batch(test, meta_model.initializer, **kw), ots.solve_batch(test, None, **kw)
  assert bool(jnp.all(warm.converged))
  assert bool(jnp.all(cold.converged))
  matrix = jax.vmap(lambda o: o.matrix)
  np.testing.assert_allclose(matrix(warm), matrix(cold), atol=1e-4)
  assert np.all(np.asarray(num_iterations(warm)) > 0)
  # Also a plain OTT Sinkhorn initializer, and the same f as OTT's MetaInitializer.
  prob = test.problem(0)
  direct = jax.jit(sinkhorn.Sinkhorn(initializer=meta_model.initializer, threshold=1e-2))(prob)
  assert bool(direct.converged)
  f_ott = meta_model.meta_initializer.init_fu(prob, lse_mode=True)
  np.testing.assert_allclose(f[0], f_ott, rtol=1e-5, atol=1e-6)


def test_meta_ot_initializer_is_jit_argument(meta_model):
  traces = []

  @jax.jit
  def first_f(init, a, b):
    traces.append(1)
    return init.predict_f(a, b)

  test = digit_pairs(2, epsilon=EPS)
  init = meta_model.initializer
  f0 = first_f(init, test.a, test.b)
  moved = jax.tree_util.tree_map(lambda p: p + 0.01, init)
  f1 = first_f(moved, test.a, test.b)
  assert len(traces) == 1
  assert not np.allclose(f0, f1)
  with pytest.raises(ValueError, match="fixed geometry"):
    init.predict_f(jnp.ones((1, 10)), jnp.ones((1, 64)))


def test_meta_ot_rejects_per_pair_supports_and_bad_args():
  batch = digit_pairs(4, epsilon=EPS)
  n = batch.shape[0]
  per_pair = ProblemBatch(jnp.broadcast_to(batch.x, (4, n, 2)), batch.y, batch.a, batch.b, EPS)
  with pytest.raises(ValueError, match="fixed geometry"):
    bl.fit_meta_ot(per_pair, steps=1, progress=False)
  with pytest.raises(ValueError, match="steps"):
    bl.fit_meta_ot(batch, steps=0, progress=False)
  with pytest.raises(ValueError, match="hidden"):
    bl.fit_meta_ot(batch, hidden=(), progress=False)
  with pytest.raises(ValueError, match="batch_size"):
    bl.fit_meta_ot(batch, batch_size=0, progress=False)


# --------------------------------------------------------------------------- #
# Sorting initializer
# --------------------------------------------------------------------------- #


def test_sorting_applicable():
  batch = digit_pairs(2, epsilon=EPS)
  ok, note = bl.sorting_applicable(batch)
  assert ok
  assert "exactly zeros" in note
  rs = np.random.default_rng(0)
  x, a = _measure(rs, 5, 2)
  y, b = _measure(rs, 7, 2)
  ok, reason = bl.sorting_applicable(ProblemBatch(x, y, a[None], b[None], EPS))
  assert not ok
  assert "n == m" in reason
  y, b = _measure(rs, 5, 2)
  ok, note = bl.sorting_applicable(ProblemBatch(x, y, a[None], b[None], EPS))
  assert ok
  assert "exactly zeros" not in note
