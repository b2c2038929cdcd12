"""Meta OT through OTT's MetaInitializer: training, warm start, jit argument, bad arguments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.solvers.linear import sinkhorn

import ottsliced as ots
from ottsliced.baselines import meta_ot
from ottsliced.data import digit_pairs, grid_points, load_digits
from ottsliced.problems.batch import ProblemBatch
from ottsliced.solvers.iterations import num_iterations

EPS = 1e-2


@pytest.fixture(scope="module")
def meta_model():
  train = digit_pairs(32, epsilon=EPS)
  return meta_ot.fit_meta_ot(train, hidden=(64, 64), steps=300, chunk_steps=100, progress=False, rng=jax.random.key(0))


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
    meta_ot.fit_meta_ot(per_pair, steps=1, progress=False)
  with pytest.raises(ValueError, match="steps"):
    meta_ot.fit_meta_ot(batch, steps=0, progress=False)
  with pytest.raises(ValueError, match="hidden"):
    meta_ot.fit_meta_ot(batch, hidden=(), progress=False)
  with pytest.raises(ValueError, match="batch_size"):
    meta_ot.fit_meta_ot(batch, batch_size=0, progress=False)


def test_meta_ot_pool_draws_fresh_pairs_and_trains():
  """The paper-budget trainer: pairs drawn per step from pools of measures, never stored; the loss goes down."""
  pool = np.asarray(load_digits()[:200], np.float32)
  grid = grid_points(8)
  model = meta_ot.fit_meta_ot_pool(
    grid, grid, pool, pool, EPS, hidden=(32,), steps=200, batch_size=8, chunk_steps=50, progress=False
  )
  assert model.losses.shape == (200,)
  assert np.all(np.isfinite(model.losses))
  assert model.losses[-40:].mean() < model.losses[:40].mean()
  test = digit_pairs(4, epsilon=EPS, offset=40)
  assert model.predict_f(test.a, test.b).shape == (4, 64)
  same = meta_ot.fit_meta_ot_pool(grid, grid, pool, pool, EPS, hidden=(32,), steps=20, batch_size=8, progress=False)
  again = meta_ot.fit_meta_ot_pool(grid, grid, pool, pool, EPS, hidden=(32,), steps=20, batch_size=8, progress=False)
  np.testing.assert_array_equal(same.losses, again.losses)  # seeded draws


def test_meta_ot_pool_rejects_bad_pools():
  pool = np.asarray(load_digits()[:10], np.float32)
  grid = grid_points(8)
  with pytest.raises(ValueError, match="pool widths"):
    meta_ot.fit_meta_ot_pool(grid, grid, pool[:, :32], pool, EPS, steps=1, progress=False)
  bad = pool.copy()
  bad[0, 0] = -1.0
  with pytest.raises(ValueError, match="negative entries"):
    meta_ot.fit_meta_ot_pool(grid, grid, bad, pool, EPS, steps=1, progress=False)
  with pytest.raises(ValueError, match="zero total mass"):
    meta_ot.fit_meta_ot_pool(grid, grid, np.zeros_like(pool), pool, EPS, steps=1, progress=False)
  with pytest.raises(ValueError, match="epsilon"):
    meta_ot.fit_meta_ot_pool(grid, grid, pool, pool, 0.0, steps=1, progress=False)
