"""OA-OT: the semi-dual, its gradient, training, and its optimality over RA-OT."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

import ottsliced as ots
from ottsliced.problems.batch import make_geometry


def _pool_dual(model, batch):
  def one(a, b):
    f, _ = model.predict(batch.x, batch.y, a, b, batch.epsilon)
    return ots.semi_dual(f, make_geometry(batch.x, batch.y, batch.epsilon), a, b)

  return float(jnp.mean(jax.vmap(one)(batch.a, batch.b)))


def test_semi_dual_matches_ott_and_gradient(x64):
  rs = np.random.default_rng(0)
  x, y = rs.normal(size=(9, 2)), rs.normal(size=(7, 2))
  a, b = rs.uniform(size=9), rs.uniform(size=7)
  a[2] = 0.0
  a, b = a / a.sum(), b / b.sum()
  geom = make_geometry(jnp.asarray(x), jnp.asarray(y), 0.5)
  f = jnp.asarray(rs.normal(size=9))
  prob = linear_problem.LinearProblem(geom, jnp.asarray(a), jnp.asarray(b))
  fm = jnp.where(prob.a > 0, f, -jnp.inf)
  g = geom.update_potential(fm, jnp.zeros(7), jnp.log(prob.b), axis=0)
  ref = sinkhorn.compute_kl_reg_cost(fm, g, prob, lse_mode=True)
  np.testing.assert_allclose(ots.semi_dual(f, geom, prob.a, prob.b), ref, rtol=1e-10)
  # gradient against central finite differences, and = a - P 1
  grad = jax.grad(ots.semi_dual)(f, geom, prob.a, prob.b)
  assert np.all(np.isfinite(grad))
  h = 1e-6
  for i in range(9):
    e = jnp.zeros(9).at[i].set(h)
    fd = (ots.semi_dual(f + e, geom, prob.a, prob.b) - ots.semi_dual(f - e, geom, prob.a, prob.b)) / (2 * h)
    np.testing.assert_allclose(grad[i], fd, rtol=1e-6, atol=1e-9)
  rows = geom.marginal_from_potentials(fm, g, axis=1)
  np.testing.assert_allclose(grad, prob.a - rows, atol=1e-10)


def test_loss_decreases(oa_model):
  loss = np.asarray(oa_model.summary["loss"])
  assert np.all(np.isfinite(loss))
  assert loss[-200:].mean() < loss[:50].mean()


def test_dual_value_beats_ra_on_pool(oa_model, ra_model, digits_train):
  assert _pool_dual(oa_model, digits_train) > _pool_dual(ra_model, digits_train)


def test_deterministic_for_a_seed(digits_train):
  batch = digits_train.take(slice(0, 5))
  kw = {"num_projections": 8, "steps": 30, "progress": False, "rng": jax.random.key(5)}
  m1, m2 = ots.fit_oa(batch, **kw), ots.fit_oa(batch, chunk_steps=7, **kw)
  np.testing.assert_allclose(m1.alpha, m2.alpha, rtol=1e-6)


class TestCheckpoints:
  KW = {"num_projections": 8, "steps": 60, "chunk_steps": 10, "progress": False}

  def _batch(self, digits_train):
    return digits_train.take(slice(0, 8))

  def test_resume_after_crash_matches_uninterrupted(self, digits_train, tmp_path):
    batch, ckpt = self._batch(digits_train), tmp_path / "oa.npz"
    full = ots.fit_oa(batch, rng=jax.random.key(3), **self.KW)

    def crash(step, alpha, losses):
      if step == 40:
        raise RuntimeError("injected failure")

    with pytest.raises(RuntimeError, match="injected failure"):
      ots.fit_oa(batch, rng=jax.random.key(3), checkpoint_path=ckpt, checkpoint_every=20, callback=crash, **self.KW)
    assert ckpt.exists()
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave no debris
    resumed = ots.fit_oa(
      batch, rng=jax.random.key(3), checkpoint_path=ckpt, checkpoint_every=20, resume=True, **self.KW
    )
    np.testing.assert_array_equal(resumed.alpha, full.alpha)
    np.testing.assert_array_equal(resumed.summary["loss"], full.summary["loss"])

  def test_resume_refuses_other_settings_and_corruption(self, digits_train, tmp_path):
    batch, ckpt = self._batch(digits_train), tmp_path / "oa.npz"
    ots.fit_oa(batch, checkpoint_path=ckpt, checkpoint_every=30, **self.KW)
    with pytest.raises(ValueError, match="other settings"):
      ots.fit_oa(batch, checkpoint_path=ckpt, resume=True, **{**self.KW, "steps": 90})
    with pytest.raises(ValueError, match="other settings"):
      ots.fit_oa(digits_train.take(slice(8, 16)), checkpoint_path=ckpt, resume=True, **self.KW)
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="truncated or corrupted"):
      ots.fit_oa(batch, checkpoint_path=ckpt, resume=True, **self.KW)
    with pytest.raises(ValueError, match="checkpoint_path"):
      ots.fit_oa(batch, resume=True, **self.KW)


def test_fits_are_deterministic(digits_train):
  batch = digits_train.take(slice(0, 6))
  r1 = ots.fit_ra(batch, num_projections=10, progress=False)
  r2 = ots.fit_ra(batch, num_projections=10, progress=False)
  np.testing.assert_array_equal(r1.alpha, r2.alpha)
  o1 = ots.fit_oa(batch, num_projections=10, steps=20, progress=False)
  o2 = ots.fit_oa(batch, num_projections=10, steps=20, progress=False)
  np.testing.assert_array_equal(o1.alpha, o2.alpha)
