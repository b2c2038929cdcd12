"""min-SWGG plans: marginals, exactness in 1-D, padding, batching, bad arguments."""

import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest
from helpers import random_measure
from ott.geometry import costs

from ottsliced.baselines import min_swgg
from ottsliced.data import digit_pairs
from ottsliced.problems.batch import ProblemBatch

EPS = 1e-2


@pytest.mark.parametrize(("n", "m", "zero_frac"), [(9, 9, 0.0), (12, 7, 0.3), (1, 6, 0.0)])
def test_swgg_plan_marginals_support_and_cost_bound(x64, n, m, zero_frac):
  rs = np.random.default_rng(n * 100 + m)
  x, a = random_measure(rs, n, 3, zero_frac, keep_first=True)
  y, b = random_measure(rs, m, 3, zero_frac, keep_first=True)
  out = min_swgg.min_swgg_plan(x, y, a, b, num_directions=30, rng=jax.random.key(1))
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
  x, a = random_measure(rs, 15, 1, 0.2, keep_first=True)
  y, b = random_measure(rs, 10, 1, keep_first=True)
  out = min_swgg.min_swgg_plan(x, y, a, b, num_directions=4)
  np.testing.assert_allclose(float(out.cost), ot.emd2(a, b, ot.dist(x, y)), rtol=1e-10)


def test_swgg_other_cost(x64):
  rs = np.random.default_rng(4)
  x, a = random_measure(rs, 8, 2, keep_first=True)
  y, b = random_measure(rs, 6, 2, keep_first=True)
  cost_fn = costs.PNormP(1.5)
  out = min_swgg.min_swgg_plan(x, y, a, b, num_directions=20, cost_fn=cost_fn)
  cmat = np.asarray(jax.vmap(lambda u: jax.vmap(lambda v: cost_fn(u, v))(y))(x))
  np.testing.assert_allclose(float(out.cost), np.sum(np.asarray(out.plans) * cmat), rtol=1e-10)
  assert float(out.cost) >= ot.emd2(a, b, cmat) - 1e-10


def test_swgg_padding_invariant(x64):
  rs = np.random.default_rng(5)
  x, a = random_measure(rs, 10, 2, keep_first=True)
  y, b = random_measure(rs, 8, 2, keep_first=True)
  ref = min_swgg.min_swgg_plan(x, y, a, b, num_directions=25, rng=jax.random.key(2))
  # Pad: extra zero-weight atoms at arbitrary places, interleaved.
  xp = np.concatenate([rs.normal(size=(3, 2)), x, x[:2]])
  ap = np.concatenate([np.zeros(3), a, np.zeros(2)])
  yp = np.concatenate([y, rs.normal(size=(4, 2))])
  bp = np.concatenate([b, np.zeros(4)])
  out = min_swgg.min_swgg_plan(xp, yp, ap, bp, num_directions=25, rng=jax.random.key(2))
  plan = np.asarray(out.plans)
  np.testing.assert_allclose(plan[3:13, :8], np.asarray(ref.plans), atol=1e-12)
  assert plan.sum() == pytest.approx(1.0)
  np.testing.assert_allclose(float(out.cost), float(ref.cost), rtol=1e-12)
  np.testing.assert_allclose(out.direction, ref.direction)


def test_swgg_more_directions_never_worse(x64):
  rs = np.random.default_rng(6)
  x, a = random_measure(rs, 20, 3, keep_first=True)
  y, b = random_measure(rs, 20, 3, keep_first=True)
  rng = jax.random.key(7)
  cost = [float(min_swgg.min_swgg_plan(x, y, a, b, num_directions=k, rng=rng).cost) for k in (2, 40)]
  assert cost[1] <= cost[0] + 1e-12
  # Directions are a prefix-stable sequence: the first k directions do not depend on the total.
  t5 = min_swgg._swgg_directions(rng, 3, 5, jnp.float64)  # noqa: SLF001
  t25 = min_swgg._swgg_directions(rng, 3, 25, jnp.float64)  # noqa: SLF001
  np.testing.assert_array_equal(t5, t25[:5])


def test_swgg_batch_shared_matches_single_and_jit():
  batch = digit_pairs(6, epsilon=EPS)
  out = min_swgg.min_swgg_plans(batch, num_directions=40, rng=jax.random.key(0), pair_chunk=4)
  n, m = batch.shape
  assert out.plans.shape == (6, n, m)
  assert out.cost.shape == (6,)
  assert out.direction.shape == (6, 2)
  np.testing.assert_allclose(out.plans.sum(2), batch.a, atol=1e-6)
  np.testing.assert_allclose(out.plans.sum(1), batch.b, atol=1e-6)
  one = min_swgg.min_swgg_plan(batch.x, batch.y, batch.a[2], batch.b[2], num_directions=40, rng=jax.random.key(0))
  np.testing.assert_allclose(out.plans[2], one.plans, atol=1e-7)
  # Per-pair (unshared) supports, under an outer jit (the batch is a pytree), give the same result.
  xs = jnp.broadcast_to(batch.x, (6, n, 2))
  theta = min_swgg._swgg_directions(jax.random.key(0), 2, 40, jnp.float32)  # noqa: SLF001
  jitted = jax.jit(lambda bt: min_swgg.min_swgg_plans(bt, directions=theta, pair_chunk=None).cost)
  np.testing.assert_allclose(jitted(ProblemBatch(xs, xs, batch.a, batch.b, EPS)), out.cost, rtol=1e-6)


def test_swgg_bad_arguments():
  batch = digit_pairs(2, epsilon=EPS)
  with pytest.raises(ValueError, match="num_directions"):
    min_swgg.min_swgg_plans(batch, num_directions=0)
  with pytest.raises(ValueError, match="directions"):
    min_swgg.min_swgg_plans(batch, directions=jnp.ones((3, 5)))
  with pytest.raises(ValueError, match="pair_chunk"):
    min_swgg.min_swgg_plans(batch, pair_chunk=0)
  with pytest.raises(ValueError, match="ProblemBatch"):
    min_swgg.min_swgg_plans("nope")
