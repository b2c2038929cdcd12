"""Flow-matching couplings, training step and the quick flow config."""

import functools
import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ottsliced as ots
from ottsliced import flow_matching as fm
from ottsliced.experiments import config as config_lib
from ottsliced.experiments import flow, run_config

SOURCE = functools.partial(fm.sample_toy, "gaussian")
TARGET = functools.partial(fm.sample_toy, "8gaussians")


@pytest.fixture(scope="module")
def models():
  return fm.fit_flow_couplings(SOURCE, TARGET, jax.random.key(0), num_batches=4, batch_size=32, oa_steps=50)


@pytest.fixture(scope="module")
def batch():
  return SOURCE(jax.random.key(1), 16), TARGET(jax.random.key(2), 16)


def _kwargs(kind, models):
  return {"sinkhorn": {"epsilon": 2.0}, "ra": {"model": models.ra}, "oa": {"model": models.oa}}.get(kind, {})


@pytest.mark.parametrize(("kind", "sample"), list(itertools.product(fm.COUPLINGS, fm.SAMPLE_MODES)))
def test_coupling_shapes(kind, sample, models, batch):
  x0, x1 = batch
  pair = fm.couple(kind, x0, x1, jax.random.key(3), sample=sample, **_kwargs(kind, models))
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


@pytest.mark.parametrize("kind", ["sinkhorn", "ra", "oa"])
def test_entropic_couplings_pair_closer_points(kind, models, batch):
  """Drawn pairs are closer than the independent pairing, and a new key changes the draw."""
  x0, x1 = batch
  kw = _kwargs(kind, models)
  draws = [fm.couple(kind, x0, x1, jax.random.key(k), **kw) for k in range(5)]
  cost = np.mean([float(jnp.mean(jnp.sum((x0[p.i0] - x1[p.i1]) ** 2, axis=1))) for p in draws])
  assert cost < float(jnp.mean(jnp.sum((x0 - x1) ** 2, axis=1)))
  assert any(bool(jnp.any(p.i1 != draws[0].i1)) for p in draws[1:])


def test_exact_is_optimal_permutation():
  rs = np.random.default_rng(0)
  x0, x1 = rs.normal(size=(5, 2)).astype(np.float32), rs.normal(size=(5, 2)).astype(np.float32)
  cost = ((x0[:, None] - x1[None]) ** 2).sum(-1)
  best = min(itertools.permutations(range(5)), key=lambda p: cost[np.arange(5), list(p)].sum())
  perm = jax.jit(fm.exact_permutation)(jnp.asarray(x0), jnp.asarray(x1))
  np.testing.assert_array_equal(perm, best)
  pair = fm.couple("exact", jnp.asarray(x0), jnp.asarray(x1), jax.random.key(0))
  np.testing.assert_array_equal(pair.i1, best)


def test_couple_rejects_bad_arguments(batch, models):
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
  with pytest.raises(ValueError, match="same shape"):
    fm.couple("independent", x0, x1[:8], key)
  with pytest.raises(ValueError, match="unknown toy"):
    fm.sample_toy("spiral", key, 4)


def test_toys_shapes_and_scale():
  key = jax.random.key(0)
  for name in fm.TOYS:
    z = fm.sample_toy(name, key, 1000)
    assert z.shape == (1000, 2)
    assert bool(jnp.all(jnp.isfinite(z)))
  radius = jnp.linalg.norm(fm.sample_toy("8gaussians", key, 4000), axis=1)
  assert 4.5 < float(jnp.median(radius)) < 5.5


def test_train_step_jits_once_with_amortized_coupling(models):
  net = fm.VelocityMLP()
  params = net.init(jax.random.key(0), jnp.zeros((1, 2)), jnp.zeros((1,)))
  opt = optax.adamw(1e-3, weight_decay=1e-5)
  opt_state = opt.init(params)
  step = fm.make_train_step("ra", SOURCE, TARGET, net.apply, opt, batch_size=32)
  key = jax.random.key(1)
  other = models.ra.replace(alpha=models.ra.alpha * 0.5)  # a new alpha must not retrace
  for k, model in enumerate([models.ra, other, models.ra]):
    params, opt_state, loss = step(params, opt_state, key, k, model)
    assert np.isfinite(float(loss))
  assert step.num_traces() == 1


def test_dopri5_matches_closed_form():
  y0 = jnp.array([[1.0, 2.0], [-0.5, 0.3]])
  sol = fm.dopri5(lambda t, y: -y * (1.0 + t), y0, rtol=1e-7, atol=1e-7)
  np.testing.assert_allclose(sol.y, y0 * np.exp(-1.5), rtol=1e-5)
  assert float(sol.t) == pytest.approx(1.0)
  assert int(sol.num_steps) > 1


def test_path_energy_of_straight_optimal_flow_is_zero():
  x0 = jax.random.normal(jax.random.key(0), (200, 2))
  shift = jnp.array([3.0, -1.0])
  pe = fm.path_energy(lambda p, x, t: jnp.broadcast_to(shift, x.shape), None, x0)
  assert pe.normalized < 1e-4
  assert pe.energy == pytest.approx(10.0, rel=1e-4)


def test_flow_config_rejects_bad_values(tmp_path):
  data = config_lib.read_yaml("configs/flow_quick.yaml")
  data.pop("task")
  data["couplings"] = ["independent", "bogus"]
  with pytest.raises(config_lib.ConfigError, match="couplings"):
    config_lib.from_mapping(flow.Config, data)


def test_quick_config_runs_and_ra_straightens_paths(tmp_path):
  metrics = run_config("configs/flow_quick.yaml", out_dir=str(tmp_path), progress=False)
  res = metrics["couplings"]
  assert set(res) == set(fm.COUPLINGS)
  for r in res.values():
    assert r["num_traces"] == 1
    assert np.isfinite([r["w2_euler1"], r["w2_adaptive"], r["path_energy"]]).all()
    assert r["adaptive_reached_t1"]
  assert res["ra"]["path_energy"] < res["independent"]["path_energy"]
  assert res["exact"]["path_energy"] < res["independent"]["path_energy"]
  for name in ("metrics.json", "table.md", "samples.png", "trajectories.png"):
    assert (tmp_path / name).stat().st_size > 0
  json.loads((tmp_path / "metrics.json").read_text())
  table = (tmp_path / "table.md").read_text()
  assert "RA-OT" in table
  assert "coupling ms B=128" in table


def test_model_is_a_sliced_initializer(models):
  assert isinstance(models.ra, ots.SlicedInitializer)
  assert models.ra.method == "ra"
  assert models.ra.epsilon == 2.0
  assert isinstance(models.oa, ots.SlicedInitializer)
  assert models.oa.method == "oa"
  assert models.oa.epsilon == 0.1
