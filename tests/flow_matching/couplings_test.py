"""Flow-matching couplings: shapes, draws from the plan, exactness, bad arguments."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import FLOW_SOURCE, FLOW_TARGET

import ottsliced as ots
from ottsliced import flow_matching as fm


def _kwargs(kind, flow_models):
  kw = {"sinkhorn": {"epsilon": 2.0}, "sliced": {"epsilon": 2.0}, "ra": {"model": flow_models.ra}}
  return {**kw, "oa": {"model": flow_models.oa}}.get(kind, {})


@pytest.fixture(scope="module")
def batch():
  return FLOW_SOURCE(jax.random.key(1), 16), FLOW_TARGET(jax.random.key(2), 16)


@pytest.mark.parametrize(("kind", "sample"), list(itertools.product(fm.COUPLINGS, fm.SAMPLE_MODES)))
def test_coupling_shapes(kind, sample, flow_models, batch):
  x0, x1 = batch
  pair = fm.couple(kind, x0, x1, jax.random.key(3), sample=sample, **_kwargs(kind, flow_models))
  assert isinstance(pair, fm.Pairing)
  for idx in pair:
    assert idx.shape == (16,)
    assert idx.dtype == jnp.int32
    assert int(idx.min()) >= 0
    assert int(idx.max()) < 16
  if sample != "joint":  # one target per source row
    np.testing.assert_array_equal(pair.i0, np.arange(16))
  if kind in ("independent", "exact") and sample != "joint":  # these plans are permutations
    assert sorted(np.asarray(pair.i1).tolist()) == list(range(16))


@pytest.mark.parametrize("sample", ["multinomial", "joint"])
def test_draws_follow_the_plan(sample):
  """Empirical pair frequencies match P = exp((f + g - C) / eps) (rows or the whole plan)."""
  rs = np.random.default_rng(0)
  f, g = jnp.asarray(rs.normal(size=4)), jnp.asarray(rs.normal(size=5))
  cost, eps = jnp.asarray(rs.uniform(size=(4, 5))), 0.5
  plan = np.exp((np.asarray(f)[:, None] + np.asarray(g)[None] - np.asarray(cost)) / eps)
  draw = jax.jit(jax.vmap(lambda k: fm.draw_pairs(k, f, g, cost, eps, sample)))
  pairs = draw(jax.random.split(jax.random.key(0), 20_000))
  freq = np.zeros((4, 5))
  np.add.at(freq, (np.asarray(pairs.i0).ravel(), np.asarray(pairs.i1).ravel()), 1.0)
  if sample == "multinomial":
    np.testing.assert_allclose(freq / freq.sum(1, keepdims=True), plan / plan.sum(1, keepdims=True), atol=0.02)
  else:
    np.testing.assert_allclose(freq / freq.sum(), plan / plan.sum(), atol=0.01)
  top = fm.draw_pairs(jax.random.key(0), f, g, cost, eps, "argmax").i1
  np.testing.assert_array_equal(top, plan.argmax(1))


@pytest.mark.parametrize("kind", ["sinkhorn", "sliced", "ra", "oa"])
def test_entropic_couplings_pair_closer_points(kind, flow_models, batch):
  """Drawn pairs are closer than the independent pairing, and a new key changes the draw."""
  x0, x1 = batch
  kw = _kwargs(kind, flow_models)
  draws = [fm.couple(kind, x0, x1, jax.random.key(k), **kw) for k in range(5)]
  cost = np.mean([float(jnp.mean(jnp.sum((x0[p.i0] - x1[p.i1]) ** 2, axis=1))) for p in draws])
  assert cost < float(jnp.mean(jnp.sum((x0 - x1) ** 2, axis=1)))
  assert any(bool(jnp.any(p.i1 != draws[0].i1)) for p in draws[1:])


def test_sliced_coupling_is_sinkhorns_plan(x64):
  """The corrected solver's coupling is Sinkhorn's at a tight threshold: the same rows, the same draws."""
  x0, x1 = FLOW_SOURCE(jax.random.key(4), 64), FLOW_TARGET(jax.random.key(5), 64)
  kw = {"epsilon": 0.5, "sinkhorn_threshold": 1e-10, "sinkhorn_max_iterations": 20_000}
  for sample, num_directions, steps in (("argmax", 16, (2.0, 1.0)), ("multinomial", 4, (2.0, 1.0)), ("argmax", 4, ())):
    ref = fm.couple("sinkhorn", x0, x1, jax.random.key(6), sample=sample, **kw)
    out = fm.couple(
      "sliced", x0, x1, jax.random.key(6), sample=sample, sliced_directions=num_directions, sliced_steps=steps, **kw
    )
    np.testing.assert_array_equal(out.i1, ref.i1)


def test_select_sliced_steps_times_every_candidate(batch):
  """The selection reports each candidate's time and iterations and keeps the fastest one."""
  x0, x1 = batch
  x0s, x1s = [x0, x0[::-1]], [x1, x1[::-1]]
  sel = fm.select_sliced_steps(x0s, x1s, epsilon=2.0, sliced_directions=4, repeats=2)
  assert [c["steps"] for c in sel.candidates] == [(2.0, 1.0), (2.0,), ()]
  assert sel.ms.shape == sel.iterations.shape == (3,)
  assert np.all(sel.ms > 0)
  assert sel.ms[sel.best] == sel.ms.min()  # all converge here, so all are eligible
  steps = sel.candidates[sel.best]["steps"]
  pair = fm.couple("sliced", x0, x1, jax.random.key(0), epsilon=2.0, sliced_directions=4, sliced_steps=steps)
  assert pair.i1.shape == (x0.shape[0],)
  with pytest.raises(ValueError, match="as many"):
    fm.select_sliced_steps(x0s, x1s[:1], epsilon=2.0)
  with pytest.raises(ValueError, match="epsilon"):
    fm.select_sliced_steps(x0s, x1s, epsilon=0.0)


def test_coupling_times_side_by_side(flow_models, batch):
  x0, x1 = batch
  calls = {"ra": ("ra", {"model": flow_models.ra}), "sinkhorn": ("sinkhorn", {"epsilon": 2.0})}
  ms = fm.coupling_times_ms(calls, x0, x1, jax.random.key(0), repeats=3)
  assert set(ms) == {"ra", "sinkhorn"}
  assert all(np.isfinite(v) and v > 0 for v in ms.values())
  assert fm.coupling_time_ms("independent", x0, x1, jax.random.key(0), repeats=1) > 0
  with pytest.raises(ValueError, match="repeats"):
    fm.coupling_times_ms(calls, x0, x1, jax.random.key(0), repeats=0)


def test_exact_is_optimal_permutation():
  rs = np.random.default_rng(0)
  x0, x1 = rs.normal(size=(5, 2)).astype(np.float32), rs.normal(size=(5, 2)).astype(np.float32)
  cost = ((x0[:, None] - x1[None]) ** 2).sum(-1)
  best = min(itertools.permutations(range(5)), key=lambda p: cost[np.arange(5), list(p)].sum())
  perm = jax.jit(fm.exact_permutation)(jnp.asarray(x0), jnp.asarray(x1))
  np.testing.assert_array_equal(perm, best)
  pair = fm.couple("exact", jnp.asarray(x0), jnp.asarray(x1), jax.random.key(0))
  np.testing.assert_array_equal(pair.i1, best)


def test_couple_rejects_bad_arguments(batch, flow_models):
  x0, x1 = batch
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="unknown coupling"):
    fm.couple("emd", x0, x1, key)
  with pytest.raises(ValueError, match="unknown sample mode"):
    fm.couple("exact", x0, x1, key, sample="gumbel")
  with pytest.raises(ValueError, match="needs `model`"):
    fm.couple("ra", x0, x1, key)
  with pytest.raises(ValueError, match="positive `epsilon`"):
    fm.couple("sinkhorn", x0, x1, key)
  with pytest.raises(ValueError, match="sliced_directions"):
    fm.couple("sliced", x0, x1, key, epsilon=1.0, sliced_directions=0)
  with pytest.raises(ValueError, match="sliced_steps"):
    fm.couple("sliced", x0, x1, key, epsilon=1.0, sliced_steps=[[2.0]])
  with pytest.raises(ValueError, match="sliced_steps"):
    fm.couple("sliced", x0, x1, key, epsilon=1.0, sliced_steps=[float("nan")])
  with pytest.raises(ValueError, match="same shape"):
    fm.couple("independent", x0, x1[:8], key)
  with pytest.raises(ValueError, match="unknown toy"):
    fm.sample_toy("spiral", key, 4)


def test_model_is_a_sliced_initializer(flow_models):
  assert isinstance(flow_models.ra, ots.SlicedInitializer)
  assert flow_models.ra.method == "ra"
  assert flow_models.ra.epsilon == 2.0
  assert isinstance(flow_models.oa, ots.SlicedInitializer)
  assert flow_models.oa.method == "oa"
  assert flow_models.oa.epsilon == 0.1
