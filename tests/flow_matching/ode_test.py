"""ODE solvers."""

import jax.numpy as jnp
import numpy as np
import pytest

from ottsliced import flow_matching as fm


def test_dopri5_matches_closed_form():
  y0 = jnp.array([[1.0, 2.0], [-0.5, 0.3]])
  sol = fm.dopri5(lambda t, y: -y * (1.0 + t), y0, rtol=1e-7, atol=1e-7)
  np.testing.assert_allclose(sol.y, y0 * np.exp(-1.5), rtol=1e-5)
  assert float(sol.t) == pytest.approx(1.0)
  assert int(sol.num_steps) > 1
