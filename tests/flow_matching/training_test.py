"""The conditional flow matching training step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import FLOW_SOURCE, FLOW_TARGET

from ottsliced import flow_matching as fm


def test_train_step_jits_once_with_amortized_coupling(flow_models):
  net = fm.VelocityMLP()
  params = net.init(jax.random.key(0), jnp.zeros((1, 2)), jnp.zeros((1,)))
  opt = optax.adamw(1e-3, weight_decay=1e-5)
  opt_state = opt.init(params)
  step = fm.make_train_step("ra", FLOW_SOURCE, FLOW_TARGET, net.apply, opt, batch_size=32)
  key = jax.random.key(1)
  other = flow_models.ra.replace(alpha=flow_models.ra.alpha * 0.5)  # a new alpha must not retrace
  for k, model in enumerate([flow_models.ra, other, flow_models.ra]):
    params, opt_state, loss = step(params, opt_state, key, k, model)
    assert np.isfinite(float(loss))
  assert step.num_traces() == 1


def test_train_step_rejects_sinkhorn_couplings_without_epsilon():
  net = fm.VelocityMLP()
  opt = optax.adamw(1e-3)
  for kind in ("sinkhorn", "sliced"):
    with pytest.raises(ValueError, match="positive `sinkhorn_epsilon`"):
      fm.make_train_step(kind, FLOW_SOURCE, FLOW_TARGET, net.apply, opt)
  with pytest.raises(ValueError, match="sliced_directions"):
    fm.make_train_step("sliced", FLOW_SOURCE, FLOW_TARGET, net.apply, opt, sinkhorn_epsilon=1.0, sliced_directions=0)
