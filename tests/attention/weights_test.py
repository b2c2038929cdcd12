"""Attention weights: Sinkhorn mode against OTT, the sliced mode's marginals, padding, the semi-dual."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.geometry import geometry
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

from ottsliced import sliced
from ottsliced.attention import layer, weights


def _qk(seed=0, batch=2, n=7, m=5, heads=3, d=4, scale=1.0):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  return scale * jax.random.normal(k1, (batch, n, heads, d)), scale * jax.random.normal(k2, (batch, m, heads, d))


def _directions(heads=3, num=8, d=4):
  theta = layer.init_directions(jax.random.PRNGKey(1), (heads, num, d), jnp.float64)
  alpha = layer.init_alpha(num, d)(None, (heads, num), jnp.float64)
  return theta, alpha


def _ott_plan(logits, num_iterations=None):
  n, m = logits.shape
  prob = linear_problem.LinearProblem(
    geometry.Geometry(cost_matrix=-logits, epsilon=1.0), jnp.ones(n) / n, jnp.ones(m) / m
  )
  if num_iterations is None:
    solver = sinkhorn.Sinkhorn(threshold=1e-12, max_iterations=20_000)
  else:
    solver = sinkhorn.Sinkhorn(min_iterations=num_iterations, max_iterations=num_iterations, inner_iterations=1)
  return solver(prob).matrix


@pytest.mark.usefixtures("x64")
class TestSinkhornMode:
  @pytest.mark.parametrize("domain", weights.DOMAINS)
  @pytest.mark.parametrize("num_iterations", [1, 3, 10])
  def test_equals_ott_after_k_iterations(self, num_iterations, domain):
    q, k = _qk()
    logits = weights.attention_logits(q, k)
    attn = weights.sinkhorn_weights(logits, None, num_iterations, domain)
    for b in range(2):
      for h in range(3):
        plan = _ott_plan(logits[b, h], num_iterations)
        np.testing.assert_allclose(attn[b, h] / 7, plan, atol=1e-12)

  def test_converges_to_ott_doubly_stochastic_plan(self):
    q, k = _qk(scale=1.5)
    logits = weights.attention_logits(q, k)
    attn = weights.sinkhorn_weights(logits, None, 300)
    np.testing.assert_allclose(attn[1, 2] / 7, _ott_plan(logits[1, 2]), atol=1e-10)
    np.testing.assert_allclose(attn.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(attn.sum(-2), 7 / 5, atol=1e-8)
    assert float(jnp.max(weights.column_marginal_error(attn))) < 1e-8

  @pytest.mark.parametrize(
    ("mode", "domain"), [("softmax", None), ("sinkhorn", "kernel"), ("sinkhorn", "log"), ("sliced", "kernel")]
  )
  def test_padding_changes_nothing(self, mode, domain):
    q, k = _qk(n=6, m=5)
    pq = jnp.concatenate([q, 50.0 * jnp.ones_like(q[:, :3])], axis=1)
    pk = jnp.concatenate([k, -30.0 * jnp.ones_like(k[:, :2])], axis=1)
    mask = jnp.zeros((2, 1, 9, 7), bool).at[:, :, :6, :5].set(True)
    theta, alpha = _directions()

    def attend(q, k, mask):
      logits = weights.attention_logits(q, k)
      if mode == "softmax":
        return weights.softmax_weights(logits, mask)
      if mode == "sinkhorn":
        return weights.sinkhorn_weights(logits, mask, 5, domain)
      return weights.sliced_weights(q, k, theta, alpha, mask, domain=domain)

    plain, padded = attend(q, k, None), attend(pq, pk, mask)
    np.testing.assert_allclose(padded[:, :, :6, :5], plain, atol=1e-12)
    np.testing.assert_allclose(padded[:, :, :6, 5:], 0.0, atol=0)
    assert np.all(np.isfinite(padded))
    err = weights.column_marginal_error(padded, mask)
    np.testing.assert_allclose(err, weights.column_marginal_error(plain), atol=1e-12)

  def test_padded_keys_per_example(self):
    """Different valid lengths in one batch: each example equals its own unpadded problem."""
    q, k = _qk(batch=2, n=4, m=6, heads=2)
    valid = jnp.array([6, 3])
    mask = (jnp.arange(6)[None, :] < valid[:, None])[:, None, None, :]
    attn = weights.sinkhorn_weights(weights.attention_logits(q, k), mask, 4)
    alone = weights.sinkhorn_weights(weights.attention_logits(q[1:], k[1:, :3]), None, 4)
    np.testing.assert_allclose(attn[1:, :, :, :3], alone, atol=1e-12)

  def test_bad_arguments(self):
    with pytest.raises(ValueError, match="num_iterations"):
      weights.sinkhorn_weights(jnp.zeros((3, 3)), None, 0)
    with pytest.raises(ValueError, match="domain"):
      weights.sinkhorn_weights(jnp.zeros((3, 3)), None, 2, "exp")


@pytest.mark.usefixtures("x64")
class TestSlicedMode:
  def test_prediction_is_sliced_features_times_alpha(self):
    q, k = _qk()
    theta, alpha = _directions()
    a, b = jnp.ones((2, 3, 7)) / 7, jnp.ones((2, 3, 5)) / 5
    f = weights.predicted_potential(q, k, a, b, theta, alpha)
    for bb in range(2):
      for h in range(3):
        phi, _ = sliced.sliced_potentials(q[bb, :, h], k[bb, :, h], a[bb, h], b[bb, h], theta[h])
        want = phi @ alpha[h] - 0.5 * jnp.sum(q[bb, :, h] ** 2, -1) / 2.0
        np.testing.assert_allclose(f[bb, h], want, atol=1e-12)

  @pytest.mark.parametrize("domain", weights.DOMAINS)
  def test_weights_are_the_transported_prediction(self, domain):
    q, k = _qk(seed=2)
    theta, alpha = _directions()
    logits = weights.attention_logits(q, k)
    w = weights.token_weights(logits)
    phi = weights.sliced_features(q, k, w.a, w.b, theta)
    assert phi.shape == (2, 3, 8, 7)
    f = weights.potential_from_features(q, phi, alpha)
    np.testing.assert_allclose(f, weights.predicted_potential(q, k, w.a, w.b, theta, alpha), atol=1e-14)
    attn = weights.sliced_weights(q, k, theta, alpha, domain=domain)
    np.testing.assert_allclose(attn, weights.transported_weights(logits, f, domain=domain), atol=1e-12)
    # From f = 0 the transport is one Sinkhorn iteration.
    np.testing.assert_allclose(
      weights.transported_weights(logits, jnp.zeros_like(f), domain=domain),
      weights.sinkhorn_weights(logits, None, 1, domain),
      atol=1e-14,
    )
    with pytest.raises(ValueError, match="domain"):
      weights.transported_weights(logits, f, domain="exp")

  def test_rows_exact_columns_between_softmax_and_sinkhorn(self):
    q, k = _qk(seed=3, batch=4, n=12, m=12)
    theta, alpha = _directions()
    logits = weights.attention_logits(q, k)
    attn = weights.sliced_weights(q, k, theta, alpha)
    np.testing.assert_allclose(attn.sum(-1), 1.0, atol=1e-14)
    err = weights.column_marginal_error(attn)
    plan_cols = jnp.einsum("...n,...nm->...m", jnp.ones(12) / 12, attn)
    np.testing.assert_allclose(err, jnp.sum(jnp.abs(plan_cols - 1 / 12), -1), atol=1e-14)
    assert float(jnp.mean(err)) < 0.6 * float(
      jnp.mean(weights.column_marginal_error(weights.softmax_weights(logits)))
    ), "the sliced prediction should fix most of softmax's column error"

  def test_semi_dual_is_maximal_at_the_sinkhorn_potential(self):
    q, k = _qk(seed=4)
    theta, alpha = _directions()
    logits = weights.attention_logits(q, k)
    w = weights.token_weights(logits)
    f_pred = weights.predicted_potential(q, k, w.a, w.b, theta, alpha)
    # The converged potential in this gauge: f = T_row(g) after many iterations.
    attn = weights.sinkhorn_weights(logits, None, 500)
    g = jnp.log(attn[..., 0, :]) - logits[..., 0, :] - jnp.log(w.b)  # softmax rows: A = b e^{S + g + f}
    f_star = -jax.nn.logsumexp(logits + (g + jnp.log(w.b))[..., None, :], axis=-1)
    best = weights.semi_dual(logits, f_star)
    assert np.all(best >= weights.semi_dual(logits, f_pred) - 1e-12)
    assert np.all(best >= weights.semi_dual(logits, jnp.zeros_like(f_pred)) - 1e-12)
    grad = jax.grad(lambda f: jnp.sum(weights.semi_dual(logits, f)))(f_star)
    np.testing.assert_allclose(grad, 0.0, atol=1e-10)

  def test_alpha_fitted_on_the_dual_closes_the_columns(self):
    q, k = _qk(seed=5, batch=8, n=10, m=10)
    theta, alpha0 = _directions()
    logits = weights.attention_logits(q, k)
    w = weights.token_weights(logits)

    def loss(alpha):
      return -jnp.mean(weights.semi_dual(logits, weights.predicted_potential(q, k, w.a, w.b, theta, alpha)))

    step = jax.jit(lambda alpha: alpha - 0.5 * jax.grad(loss)(alpha))
    alpha = alpha0
    for _ in range(200):
      alpha = step(alpha)
    before = jnp.mean(weights.column_marginal_error(weights.sliced_weights(q, k, theta, alpha0)))
    after = jnp.mean(weights.column_marginal_error(weights.sliced_weights(q, k, theta, alpha)))
    assert float(loss(alpha)) < float(loss(alpha0))
    assert float(after) < float(before)


@pytest.mark.usefixtures("x64")
def test_kernel_domain_equals_log_domain_for_sliced_predictions():
  q, k = _qk(seed=6, n=9, m=11)
  theta, alpha = _directions()
  mask = jnp.ones((2, 1, 9, 11), bool).at[1, :, :, 8:].set(False)
  np.testing.assert_allclose(
    weights.sliced_weights(q, k, theta, alpha, mask, domain="kernel"),
    weights.sliced_weights(q, k, theta, alpha, mask, domain="log"),
    atol=1e-13,
  )


@pytest.mark.parametrize("num_iterations", [1, 10])
def test_kernel_domain_degrades_gracefully_where_scalings_underflow(num_iterations):
  """Logit spreads of hundreds: exp underflows in float32; the kernel domain stays finite and row-exact."""
  q, k = _qk(seed=7, n=12, m=12, scale=12.0)
  q, k = q.astype(jnp.float32), k.at[:, 0].multiply(-4.0).astype(jnp.float32)  # a key far from every query
  logits = weights.attention_logits(q, k)
  assert float(jnp.max(logits) - jnp.min(logits)) > 300
  kernel = weights.sinkhorn_weights(logits, None, num_iterations, "kernel")
  log = weights.sinkhorn_weights(logits, None, num_iterations, "log")
  assert np.all(np.isfinite(kernel))
  np.testing.assert_allclose(kernel.sum(-1), 1.0, atol=1e-5)
  assert not np.allclose(kernel, log, atol=1e-3)  # the regime is really past the kernel domain's range
  # Moderate logits: the two domains agree in float32 too.
  q, k = _qk(seed=7, n=12, m=12, scale=2.0)
  logits = weights.attention_logits(q.astype(jnp.float32), k.astype(jnp.float32))
  np.testing.assert_allclose(
    weights.sinkhorn_weights(logits, None, num_iterations, "kernel"),
    weights.sinkhorn_weights(logits, None, num_iterations, "log"),
    atol=1e-5,
  )


def test_float32_stays_finite_on_large_logits():
  q, k = _qk(scale=6.0, n=16, m=16)
  theta, alpha = _directions()
  mask = jnp.ones((2, 1, 16, 16), bool).at[:, :, :, 12:].set(False)
  q32, k32 = q.astype(jnp.float32), k.astype(jnp.float32)
  for attn in (
    weights.sinkhorn_weights(weights.attention_logits(q32, k32), mask, 10),
    weights.sliced_weights(q32, k32, theta.astype(jnp.float32), alpha.astype(jnp.float32), mask),
  ):
    assert attn.dtype == jnp.float32
    assert np.all(np.isfinite(attn))
    np.testing.assert_allclose(attn.sum(-1), 1.0, atol=1e-5)


@pytest.mark.usefixtures("x64")
def test_transported_attention_is_the_weights_times_the_values():
  """The fused output (row normalisation after the value product) equals the materialised matrix times V."""
  q, k = _qk(seed=8, n=9, m=7)
  value = jax.random.normal(jax.random.PRNGKey(9), (2, 7, 3, 5))
  valid_q, valid_k = jnp.arange(9) < jnp.array([[9], [6]]), jnp.arange(7) < jnp.array([[4], [7]])
  mask = (valid_q[:, :, None] & valid_k[:, None, :])[:, None]
  logits = weights.attention_logits(q, k)
  f = 3.0 * jax.random.normal(jax.random.PRNGKey(10), (2, 3, 9))
  out = weights.transported_attention(logits, f, value, mask)
  assert out.shape == (2, 9, 3, 5)
  want = jnp.einsum("...hqk,...khd->...qhd", weights.transported_weights(logits, f, mask), value)
  np.testing.assert_allclose(out, want, atol=1e-12)
  assert np.all(np.isfinite(out))
  # Sinkhorn K iterations = the transport of the potential after K - 1 of them.
  f3 = weights.sinkhorn_potential(logits, mask, 2)
  np.testing.assert_allclose(
    weights.transported_weights(logits, f3, mask), weights.sinkhorn_weights(logits, mask, 3), atol=1e-12
  )


@pytest.mark.parametrize("f_scale", [0.0, 40.0])
def test_transport_is_exact_in_float32_past_the_kernel_range(f_scale):
  """Logit spreads of hundreds and predictions off by tens: float32 equals a float64 log-domain reference."""
  q, k = _qk(seed=11, n=12, m=10, scale=12.0)
  logits64 = weights.attention_logits(q, k)
  f64 = f_scale * jax.random.normal(jax.random.PRNGKey(12), logits64.shape[:-1])
  with jax.enable_x64(True):
    s, f = jnp.asarray(logits64, jnp.float64), jnp.asarray(f64, jnp.float64)
    g = -jax.nn.logsumexp(s + f[..., :, None] + jnp.log(1 / 12), axis=-2)
    want = np.asarray(jax.nn.softmax(s + (g + jnp.log(1 / 10))[..., None, :], axis=-1))
  assert float(jnp.max(logits64) - jnp.min(logits64)) > 300
  got = weights.transported_weights(logits64.astype(jnp.float32), f64.astype(jnp.float32))
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, want, atol=2e-5)
  np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)
  grads = jax.grad(lambda s, f: jnp.sum(weights.transported_weights(s, f) ** 2), (0, 1))(
    logits64.astype(jnp.float32), f64.astype(jnp.float32)
  )
  assert all(np.all(np.isfinite(g)) for g in grads)
