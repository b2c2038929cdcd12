"""1-D potentials: against OTT's north-west solver, feasibility, padding, batching."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_measure
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import univariate

import ottsliced as ots
from ottsliced import sliced

N, M, L = 30, 25, 6  # fixed shapes: one compilation per test


def _columns_problem(rs, zero_frac=0.0, ties=False):
  """L independent 1-D problems as columns; theta = identity projects onto them."""
  s = rs.normal(size=(N, L))
  t = rs.normal(size=(M, L))
  if ties:  # duplicate positions
    s[1::3] = s[::3][: s[1::3].shape[0]]
  a = rs.uniform(0.1, 1.0, size=N)
  b = rs.uniform(0.1, 1.0, size=M)
  if zero_frac:
    a[rs.uniform(size=N) < zero_frac] = 0
    b[rs.uniform(size=M) < zero_frac] = 0
    a[0], b[-1] = max(a[0], 0.3), max(b[-1], 0.3)
  return s, t, a / a.sum(), b / b.sum()


def _nw(s, t, a, b):
  prob = linear_problem.LinearProblem(
    pointcloud.PointCloud(jnp.asarray(s), jnp.asarray(t)), jnp.asarray(a), jnp.asarray(b)
  )
  return univariate.north_west_solver(prob)


@pytest.mark.usefixtures("x64")
class TestAgainstNorthWest:
  @pytest.mark.parametrize("zero_frac", [0.0, 0.3])
  @pytest.mark.parametrize("seed", [0, 1, 2])
  def test_equal_to_nw_duals_up_to_constant(self, seed, zero_frac):
    s, t, a, b = _columns_problem(np.random.default_rng(seed), zero_frac)
    phi, psi = ots.sliced_potentials(s, t, a, b, jnp.eye(L), centering="none")
    out = _nw(s, t, a, b)
    pa, pb = a > 0, b > 0
    for l in range(L):
      shift = np.mean(phi[pa, l] - out.dual_a[l][pa])
      np.testing.assert_allclose(phi[pa, l] - shift, out.dual_a[l][pa], atol=1e-8)
      np.testing.assert_allclose(psi[pb, l] + shift, out.dual_b[l][pb], atol=1e-8)

  @pytest.mark.parametrize("centering", ["weighted", "mean", "none"])
  @pytest.mark.parametrize(("zero_frac", "ties"), [(0.0, False), (0.3, False), (0.3, True)])
  def test_dual_equals_primal_and_feasible_everywhere(self, centering, zero_frac, ties):
    s, t, a, b = _columns_problem(np.random.default_rng(7), zero_frac, ties)
    phi, psi = ots.sliced_potentials(s, t, a, b, jnp.eye(L), centering=centering)
    out = _nw(s, t, a, b)
    np.testing.assert_allclose(a @ phi + b @ psi, out.ot_costs, rtol=1e-10, atol=1e-10)
    cost = (s[:, None, :] - t[None, :, :]) ** 2  # [N, M, L], all pairs incl. zero weights
    slack = phi[:, None, :] + psi[None, :, :] - cost
    assert slack.max() <= 1e-10

  def test_zero_weight_atoms_get_c_transform(self):
    s, t, a, b = _columns_problem(np.random.default_rng(3), 0.4)
    phi, psi = ots.sliced_potentials(s, t, a, b, jnp.eye(L), centering="none")
    phi, psi = np.asarray(phi), np.asarray(psi)
    cost = (s[:, None, :] - t[None, :, :]) ** 2
    pb = b > 0
    ct_phi = (cost[:, pb, :] - psi[None, pb, :]).min(axis=1)  # over positive targets
    ct_psi = (cost - phi[:, None, :]).min(axis=0)  # over all sources
    np.testing.assert_allclose(phi[a == 0], ct_phi[a == 0], atol=1e-12)
    np.testing.assert_allclose(psi[b == 0], ct_psi[b == 0], atol=1e-12)
    # On the support the staircase already equals the c-transform.
    np.testing.assert_allclose(phi[a > 0], ct_phi[a > 0], atol=1e-10)

  def test_uniform_equal_sizes_ties(self):
    rs = np.random.default_rng(4)
    s, t = rs.normal(size=(N, L)), rs.normal(size=(N, L))
    a = b = np.full(N, 1.0 / N)  # every CDF level coincides
    phi, psi = ots.sliced_potentials(s, t, a, b, jnp.eye(L))
    out = _nw(s, t, a, b)
    np.testing.assert_allclose(a @ phi + b @ psi, out.ot_costs, rtol=1e-10)
    assert (phi[:, None] + psi[None] - (s[:, None] - t[None]) ** 2).max() <= 1e-10

  def test_single_atoms(self):
    x, y = np.array([[0.3, -1.0]]), np.array([[1.0, 2.0], [0.0, 0.5]])
    theta = ots.directions(jax.random.key(1), 2, 4)
    phi, psi = ots.sliced_potentials(x, y, np.ones(1), np.array([0.25, 0.75]), theta, centering="none")
    proj_x, proj_y = x @ theta.T, y @ theta.T
    np.testing.assert_allclose(phi + psi, (proj_x - proj_y) ** 2, atol=1e-12)  # n=1: tight everywhere


@jax.jit
def _quantile_costs(sx, ty, a, b):
  """OTT's 1-D quantile solver (the primal reference), compiled once for the padded shape."""
  prob = linear_problem.LinearProblem(pointcloud.PointCloud(sx, ty), a, b)
  return univariate.quantile_solver(prob).ot_costs


@pytest.mark.usefixtures("x64")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
  # Every example is padded to 12; only the unpadded reference compiles per (n, m) (seconds each): a few sizes
  # (a single atom, some padding, none) share those compilations across the examples.
  n=st.sampled_from([1, 2, 7, 12]),
  m=st.sampled_from([1, 5, 12]),
  seed=st.integers(0, 2**31 - 1),
  zero_frac=st.sampled_from([0.0, 0.25, 0.5]),
  scale=st.sampled_from([1e-3, 1.0, 1e3]),
)
def test_hypothesis_feasible_optimal_padding_invariant(n, m, seed, zero_frac, scale):
  """Random problems padded to 12 (one compile): feasibility, dual = primal, padding invariance."""
  rs = np.random.default_rng(seed)
  x, a = (lambda z, w: (z * scale, w))(*_measure(rs, n, zero_frac))
  y, b = (lambda z, w: (z * scale, w))(*_measure(rs, m, zero_frac))
  theta = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
  pad = lambda z, w, k: (np.concatenate([z, rs.normal(size=(k - len(z), 2)) * scale]), np.pad(w, (0, k - len(w))))
  xp, ap = pad(x, a, 12)
  yp, bp = pad(y, b, 12)
  phi, psi = ots.sliced_potentials(xp, yp, ap, bp, theta)
  phi, psi = np.asarray(phi), np.asarray(psi)
  assert np.all(np.isfinite(phi))
  assert np.all(np.isfinite(psi))
  sx, ty = xp @ theta.T, yp @ theta.T
  cost = (sx[:, None] - ty[None]) ** 2
  tol = 1e-9 * max(1.0, scale**2)
  assert (phi[:, None] + psi[None] - cost).max() <= tol
  # dual value = primal (quantile solver, no duals involved)
  primal = np.asarray(_quantile_costs(sx, ty, ap, bp))
  np.testing.assert_allclose(ap @ phi + bp @ psi, primal, rtol=1e-8, atol=tol)
  # padding invariance on the positive-weight atoms (weighted centring)
  phi0, psi0 = ots.sliced_potentials(x, y, a, b, theta)
  np.testing.assert_allclose(phi[:n][a > 0], np.asarray(phi0)[a > 0], rtol=1e-9, atol=tol)
  np.testing.assert_allclose(psi[:m][b > 0], np.asarray(psi0)[b > 0], rtol=1e-9, atol=tol)


def _measure(rs, n, zero_frac):
  x = rs.normal(size=(n, 2))
  w = rs.uniform(0.1, 1.0, size=n)
  w[rs.uniform(size=n) < zero_frac] = 0.0
  if w.sum() == 0:
    w[rs.integers(n)] = 1.0
  return x, w / w.sum()


def _pad(rs, x, w, size):
  """Append zero-weight atoms at random positions up to ``size`` atoms (one shape for every example)."""
  k = size - len(x)
  return np.concatenate([x, rs.normal(size=(k, x.shape[1]))]), np.pad(w, (0, k))


@functools.partial(jax.jit, static_argnames="centering")
def _phi_and_source_potentials(x, y, a, b, theta, centering):
  px, py = sliced.sort_projections(x, theta), sliced.sort_projections(y, theta)
  phi, _ = sliced.sliced_potentials_sorted(px, py, a, b, centering)
  return phi, sliced.source_potentials_sorted(px, py, a, b, centering)


@pytest.mark.usefixtures("x64")
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
  n=st.integers(1, 12),
  m=st.integers(1, 12),
  seed=st.integers(0, 2**31 - 1),
  zero_frac=st.sampled_from([0.0, 0.3, 0.6]),
  centering=st.sampled_from(["weighted", "none"]),
)
def test_source_potentials_equal_phi_on_positive_atoms(n, m, seed, zero_frac, centering):
  """The prediction path's source-only kernel reproduces phi wherever the weight is positive (padded to 12)."""
  rs = np.random.default_rng(seed)
  x, a = _pad(rs, *_measure(rs, n, zero_frac), 12)
  y, b = _pad(rs, *_measure(rs, m, zero_frac), 12)
  theta = ots.directions(jax.random.key(seed % 97), 2, 7)
  phi, fast = _phi_and_source_potentials(x, y, a, b, theta, centering)
  assert fast.shape == phi.shape
  assert np.all(np.isfinite(fast))
  np.testing.assert_allclose(np.asarray(fast)[a > 0], np.asarray(phi)[a > 0], rtol=1e-12, atol=1e-12)


def test_source_potentials_refuse_mean_centering():
  px = sliced.sort_projections(jnp.ones((3, 2)), jnp.eye(2))
  with pytest.raises(ValueError, match="'weighted' or 'none'"):
    sliced.source_potentials_sorted(px, px, jnp.ones(3), jnp.ones(3), "mean")


class TestBatching:
  def test_shared_support_fast_path_equals_general_path(self, digits_train):
    batch = digits_train.take(slice(0, 4))
    theta = ots.directions(jax.random.key(0), 2, 16)
    # The traced building block of the batch APIs, compiled as they use it (eager, every op compiles anew).
    batched = jax.jit(sliced.batched_sliced_potentials)
    phi_s, psi_s = batched(batch.x, batch.y, batch.a, batch.b, theta)
    xb = jnp.broadcast_to(batch.x, (4, *batch.x.shape))
    yb = jnp.broadcast_to(batch.y, (4, *batch.y.shape))
    phi_g, psi_g = batched(xb, yb, batch.a, batch.b, theta)
    np.testing.assert_allclose(phi_s, phi_g, atol=1e-6)
    np.testing.assert_allclose(psi_s, psi_g, atol=1e-6)

  def test_vmap_equals_per_pair(self):
    rs = np.random.default_rng(0)
    xs, as_ = zip(*[_measure(rs, 10, 0.2) for _ in range(3)])
    ys, bs = zip(*[_measure(rs, 8, 0.2) for _ in range(3)])
    theta = ots.directions(jax.random.key(2), 2, 5)
    phi_b, psi_b = jax.jit(jax.vmap(ots.sliced_potentials, in_axes=(0, 0, 0, 0, None)))(
      *map(jnp.asarray, (np.stack(xs), np.stack(ys), np.stack(as_), np.stack(bs))), theta
    )
    for k in range(3):
      phi, psi = ots.sliced_potentials(xs[k], ys[k], as_[k], bs[k], theta)
      np.testing.assert_allclose(phi_b[k], phi, atol=1e-5)
      np.testing.assert_allclose(psi_b[k], psi, atol=1e-5)


class TestInputs:
  @pytest.mark.parametrize(
    ("kwargs", "match"),
    [
      ({"a": np.array([0.5, -0.5, 1.0])}, "negative"),
      ({"a": np.array([0.5, np.nan, 0.5])}, "non-finite"),
      ({"b": np.zeros(2)}, "zero total mass"),
      ({"x": np.array([[0.0, np.inf], [1.0, 1.0], [2.0, 2.0]])}, "non-finite"),
      ({"y": np.ones((2, 3))}, "dimension mismatch"),
      ({"a": np.ones(4) / 4}, "shape"),
      ({"x": np.ones(3)}, "2-D"),
    ],
  )
  def test_bad_input_raises(self, kwargs, match):
    args = {"x": np.zeros((3, 2)), "y": np.ones((2, 2)), "a": np.ones(3) / 3, "b": np.ones(2) / 2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
      ots.sliced_potentials(args["x"], args["y"], args["a"], args["b"], np.eye(2))

  def test_bad_centering(self):
    with pytest.raises(ValueError, match="centering"):
      ots.sliced_potentials(np.zeros((3, 2)), np.ones((2, 2)), np.ones(3), np.ones(2), np.eye(2), centering="median")


@jax.jit
def _combined_and_features(x, y, a, b, theta, coef):
  px, py = sliced.sort_projections(x, theta), sliced.sort_projections(y, theta)
  phi, _ = sliced.sliced_potentials_sorted(px, py, a, b, "weighted")
  return sliced.combined_source_potentials(px, py, a, b, coef), phi @ coef


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
  n=st.integers(1, 40),
  m=st.integers(1, 40),
  seed=st.integers(0, 10_000),
  zero_frac=st.sampled_from([0.0, 0.3, 0.7]),
  ties=st.booleans(),
)
def test_combined_source_potentials_equal_features_times_coefficients(x64, n, m, seed, zero_frac, ties):
  """The prediction path equals the features times the coefficients on positive-weight atoms (padded to 40)."""
  rs = np.random.default_rng(seed)
  x, a = random_measure(rs, n, 2, zero_frac)
  y, b = random_measure(rs, m, 2, zero_frac)
  if ties:  # repeated points and repeated cumulative levels
    x[1::2] = x[0]
    a = np.where(a > 0, 1.0 / max(1, (a > 0).sum()), 0.0)
  x, a = _pad(rs, x, a, 40)
  y, b = _pad(rs, y, b, 40)
  theta = ots.directions(jax.random.key(seed), 2, 7)
  coef = jnp.asarray(rs.normal(size=7))
  fast, reference = _combined_and_features(x, y, a, b, theta, coef)
  np.testing.assert_allclose(np.asarray(fast)[a > 0], np.asarray(reference)[a > 0], atol=1e-10)
