"""The SROT gradient-flow example: both flows decrease their loss and approach the target; SROT(s=1) is OTT's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.geometry import pointcloud
from ott.tools import sinkhorn_divergence as ott_divergence

from ottsliced import SROT, srot_divergence
from ottsliced.data.toys import sample_toy
from ottsliced.experiments import srot_flow

EPSILON, STEP, NUM_STEPS = 0.1, 0.1, 10


@pytest.fixture(scope="module")
def clouds():
  x0 = 0.5 * sample_toy("gaussian", jax.random.key(0), 30)
  y = sample_toy("8gaussians", jax.random.key(1), 30, scale=2.0, variance=0.01)
  return x0, y


@pytest.mark.parametrize(
  "loss_fn",
  [srot_flow.srot_loss(EPSILON, SROT(smoothing=0.5, num_directions=8)), srot_flow.sinkhorn_loss(EPSILON)],
  ids=["srot", "sinkhorn"],
)
def test_flow_decreases_the_loss_and_approaches_the_target(clouds, loss_fn):
  x0, y = clouds
  run = srot_flow.run_flow(x0, y, loss_fn, STEP, NUM_STEPS)
  assert run.trajectory.shape == (NUM_STEPS + 1, 30, 2)
  assert run.losses.shape == (NUM_STEPS + 1,)
  assert np.isfinite(run.trajectory).all()
  assert np.isfinite(run.losses).all()
  np.testing.assert_allclose(run.trajectory[0], x0)
  assert np.all(np.diff(run.losses[:5]) < 0), run.losses  # far from the target every step descends
  assert run.losses[-1] < 0.3 * run.losses[0], run.losses
  costs = srot_flow.ot_cost_curve(run.trajectory, y)
  assert costs[-1] < 0.3 * costs[0], costs
  assert run.compile_seconds > 0
  assert run.seconds_per_step > 0
  # gradient_flow (cached jit) gives the same trajectory as the ahead-of-time compiled run
  traj = srot_flow.gradient_flow(x0, y, loss_fn, STEP, NUM_STEPS)
  np.testing.assert_allclose(np.asarray(traj), run.trajectory, rtol=1e-5, atol=1e-5)


def test_srot_at_smoothing_one_is_otts_sinkhorn_divergence(clouds):
  x0, y = clouds
  ours = srot_divergence(x0, y, solver=SROT(smoothing=1.0, threshold=1e-6, max_iterations=5000), epsilon=EPSILON)
  theirs, out = ott_divergence.sinkhorn_divergence(
    pointcloud.PointCloud, x0, y, epsilon=EPSILON, solve_kwargs={"threshold": 1e-6, "max_iterations": 5000}
  )
  assert all(bool(c) for c in out.converged)
  assert bool(ours.cross.converged)
  np.testing.assert_allclose(float(ours.divergence), float(theirs), rtol=1e-4)
  # ... and so is the flow's loss (the default threshold)
  value = srot_flow.srot_loss(EPSILON, SROT(smoothing=1.0))(x0, y)
  np.testing.assert_allclose(float(value), float(theirs), rtol=1e-3)


def test_exact_ot_cost():
  x = jnp.array([[0.0, 0.0], [1.0, 0.0]])
  assert srot_flow.exact_ot_cost(x, x) == pytest.approx(0.0, abs=1e-12)
  assert srot_flow.exact_ot_cost(x, x[::-1] + jnp.array([0.0, 2.0])) == pytest.approx(4.0)
  assert srot_flow.exact_ot_cost(x, jnp.array([[0.5, 0.0]])) == pytest.approx(0.25)


def test_flow_figure(clouds):
  x0, y = clouds
  traj = np.stack([np.asarray(x0), np.asarray(y)])
  costs = srot_flow.ot_cost_curve(traj, y)
  fig = srot_flow.flow_figure({"a": traj, "b": traj}, y, {"a": costs + 1e-3, "b": costs + 1e-3}, (0, 1))
  assert len(fig.axes) == 5
