"""Pairs split over devices: padding and trimming, and equality with one device on 4 virtual CPUs."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_measure
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import ottsliced as ots
from ottsliced.problems import sharding


def _batch(num: int, shared_x: bool = False, n: int = 7, d: int = 2) -> ots.ProblemBatch:
  rs = np.random.default_rng(num)
  xs, as_ = zip(*(random_measure(rs, n, d, zero_frac=0.2) for _ in range(num)))
  ys, bs = zip(*(random_measure(rs, n + 1, d) for _ in range(num)))
  x = xs[0] if shared_x else np.stack(xs)
  return ots.ProblemBatch(x, np.stack(ys), np.stack(as_), np.stack(bs), 0.1)


def test_pair_mesh_and_default_mesh():
  mesh = sharding.pair_mesh()
  assert mesh.axis_names == ("pairs",)
  assert mesh.size == len(jax.devices())
  assert sharding.pair_mesh(jax.devices()[:1]).size == 1
  assert sharding.default_mesh(mesh) is mesh
  if len(jax.devices()) == 1:
    assert sharding.default_mesh() is None  # one device: the plain path, nothing placed
  with pytest.raises(ValueError, match="empty"):
    sharding.pair_mesh([])
  with pytest.raises(ValueError, match="Mesh"):
    sharding.default_mesh("gpu")
  with pytest.raises(ValueError, match="1-D"):
    sharding.default_mesh(jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("data",)))


@pytest.mark.parametrize("shared_x", [False, True])
def test_pad_pairs_repeats_the_last_pair(shared_x):
  batch = _batch(5, shared_x)
  padded = sharding.pad_pairs(batch, 4)
  assert padded.num_pairs == 8
  assert padded.shared_x == shared_x
  np.testing.assert_array_equal(padded.a[:5], batch.a)
  for k in range(5, 8):  # copies of a real pair: positive mass, never a zero-weight pair
    for z, ref in ((padded.a, batch.a), (padded.b, batch.b), (padded.y, batch.y)):
      np.testing.assert_array_equal(z[k], ref[4])
  want_x = batch.x if shared_x else jnp.concatenate([batch.x, jnp.repeat(batch.x[4:], 3, axis=0)])
  np.testing.assert_array_equal(padded.x, want_x)
  assert (padded.epsilon, padded.cost_fn, padded.online_batch_size) == (batch.epsilon, None, None)
  assert sharding.pad_pairs(batch, 5) is batch
  assert sharding.pad_pairs(batch, 1) is batch
  with pytest.raises(ValueError, match="positive"):
    sharding.pad_pairs(batch, 0)


@pytest.mark.parametrize("shared_x", [False, True])
def test_shard_batch_places_pairs_and_replicates_shared_supports(shared_x):
  mesh = sharding.pair_mesh(jax.devices()[:1])
  batch = _batch(3, shared_x)
  sharded, num = sharding.shard_batch(batch, mesh)
  assert (num, sharded.num_pairs) == (3, 3)
  split, rep = NamedSharding(mesh, P("pairs")), NamedSharding(mesh, P())
  assert sharded.a.sharding.is_equivalent_to(split, 2)
  assert sharded.y.sharding.is_equivalent_to(split, 3)
  assert sharded.x.sharding.is_equivalent_to(rep if shared_x else split, sharded.x.ndim)
  np.testing.assert_array_equal(sharded.x, batch.x)


def test_trim_pairs():
  tree = {"f": jnp.ones((8, 3)), "n": np.arange(8), "scalar": jnp.float32(1.0), "none": None, "k": 2}
  out = sharding.trim_pairs(tree, 6)
  assert (out["f"].shape, out["n"].shape) == ((6, 3), (6,))
  assert out["scalar"] is tree["scalar"]
  assert (out["none"], out["k"]) == (None, 2)
  assert sharding.trim_pairs(tree, 8)["f"] is tree["f"]  # nothing to drop: no copy
  with pytest.raises(ValueError, match="fewer"):
    sharding.trim_pairs(tree, 9)


def test_gather_to_host():
  out = sharding.gather_to_host({"f": jnp.arange(4.0), "s": 1.0})
  assert isinstance(out["f"], np.ndarray)
  np.testing.assert_array_equal(out["f"], np.arange(4.0))


# Runs in a fresh interpreter: the device count is fixed when JAX starts.
_FOUR_DEVICES = textwrap.dedent(
  """
  import jax
  import numpy as np
  from jax.sharding import NamedSharding, PartitionSpec as P

  import ottsliced as ots
  from ottsliced.problems import sharding

  assert len(jax.devices()) == 4, jax.devices()
  assert jax.config.jax_enable_x64
  one = sharding.pair_mesh(jax.devices()[:1])
  split = NamedSharding(sharding.pair_mesh(), P("pairs"))
  rs = np.random.default_rng(0)
  n, d = 30, 2
  x, y = rs.normal(size=(8, n, d)), rs.normal(size=(8, n, d)) + 1.0
  a, b = rs.uniform(0.1, 1.0, (8, n)), rs.uniform(0.1, 1.0, (8, n))
  a[:, -3:] = 0.0  # padded atoms
  a, b = a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True)
  batches = {
    "pairs": ots.ProblemBatch(x[:6], y[:6], a[:6], b[:6], 0.1),  # 6 pairs: padded to 8 on 4 devices, trimmed back
    "shared_x": ots.ProblemBatch(x[0], y, a, b, 0.1),  # 8 pairs: no padding, outputs stay split
  }

  def same(u, v):
    for k, (p, q) in enumerate(zip(jax.tree_util.tree_leaves(u), jax.tree_util.tree_leaves(v))):
      assert p.shape == q.shape, (k, p.shape, q.shape)
      np.testing.assert_allclose(np.asarray(p), np.asarray(q), rtol=1e-10, atol=1e-12, err_msg=str(k))

  # fit_ra: the ground-truth solves split over 4 devices; the same model as on one.
  model = ots.fit_ra(batches["pairs"], num_projections=8, progress=False)
  model1 = ots.fit_ra(batches["pairs"], num_projections=8, progress=False, mesh=one)
  np.testing.assert_allclose(model.alpha, model1.alpha, rtol=1e-9, atol=1e-12)
  s, s1 = model.summary, model1.summary
  assert (s["ground_truth_mean_iterations"], s["rows"]) == (s1["ground_truth_mean_iterations"], s1["rows"])
  assert s["non_converged"] == s1["non_converged"] == 0

  for name, batch in batches.items():
    B = batch.num_pairs
    sb, num = sharding.shard_batch(batch, split.mesh)
    assert num == B and sb.num_pairs == 8
    assert sb.x.sharding.is_equivalent_to(NamedSharding(split.mesh, P() if batch.shared_x else P("pairs")), sb.x.ndim)

    # fit_ra's solver settings: "pairs" reuses the solvers it compiled for both meshes.
    kw = dict(threshold=1e-6, max_iterations=20_000, inner_iterations=10)
    out = ots.solve_batch(batch, **kw)  # default: all 4 devices
    ref = ots.solve_batch(batch, mesh=one, **kw)
    assert out.f.shape == (B, n) and len(out.f.sharding.device_set) == 4, out.f.sharding
    np.testing.assert_array_equal(ots.num_iterations(out), ots.num_iterations(ref))
    same(out, ref)
    # Refinement and the fallback Sinkhorn once (compiling them is most of this test's time).
    kw = dict(return_info=True)
    if name == "pairs":
      kw.update(refine_iterations=3, fallback_threshold=1e-3, fallback_max_iterations=500)
    res, res1 = ots.amortized_solve_batch(batch, model, **kw), ots.amortized_solve_batch(batch, model, mesh=one, **kw)
    same(res, res1)
    assert bool(res[1].fallback_solved.any()) == (name == "pairs")
    if name == "pairs":  # inside the caller's own jit: no placement by default (the caller's jit decides)
      traced = jax.jit(lambda bt: ots.amortized_solve_batch(bt, model, **kw)[0].f)(batch)
      assert len(traced.sharding.device_set) == 1, traced.sharding
      same(traced, res1[0].f)
    else:  # nothing trimmed: the compiled solves left every device with its own 2 of the 8 pairs
      for z in (out.f, out.errors, res[0].g, res[1].predicted_error):
        assert z.sharding.is_equivalent_to(split, z.ndim), z.sharding
        assert {sh.data.shape[0] for sh in z.addressable_shards} == {2}
  print("OK")
  """
)


def test_four_devices_equal_one():
  env = dict(
    os.environ,
    XLA_FLAGS="--xla_force_host_platform_device_count=4",
    JAX_PLATFORMS="cpu",
    JAX_ENABLE_X64="1",
  )
  proc = subprocess.run(
    [sys.executable, "-c", _FOUR_DEVICES], env=env, capture_output=True, text=True, timeout=300, check=False
  )
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert proc.stdout.strip().endswith("OK")
