r"""Mini-batch OT conditional flow matching with amortized couplings.

The flow-matching pipeline of the paper's toy experiment, one concept per module:

- :mod:`~ottsliced.flow_matching.couplings`: independent, exact, Sinkhorn and
  amortized (RA-OT / OA-OT) couplings of two mini-batches, and the draw of
  pairs from a plan;
- :mod:`~ottsliced.flow_matching.training`: the flax velocity MLP, the
  conditional flow matching loss and a training step that is one ``jax.jit``
  function (batches, coupling, loss, gradient, AdamW update);
- :mod:`~ottsliced.flow_matching.ode`: Euler, RK4 trajectories and a jitted
  adaptive Dormand--Prince 5(4) solver;
- :mod:`~ottsliced.flow_matching.metrics`: exact :math:`W_2` and the
  normalised path energy.

The 2-D toy distributions are data sets: :mod:`ottsliced.data.toys`
(re-exported here as ``sample_toy`` and ``TOYS``).
"""

from ottsliced.data.toys import TOYS, sample_toy
from ottsliced.flow_matching.couplings import (
  COUPLINGS,
  SAMPLE_MODES,
  Coupling,
  FlowCouplings,
  Pairing,
  SampleMode,
  couple,
  coupling_time_ms,
  coupling_times_ms,
  draw_pairs,
  exact_permutation,
  fit_flow_couplings,
  select_sliced_steps,
)
from ottsliced.flow_matching.metrics import PathEnergy, path_energy, w2_exact
from ottsliced.flow_matching.ode import ODESolution, dopri5, euler_sample, trajectory
from ottsliced.flow_matching.training import TrainResult, VelocityMLP, cfm_loss, make_train_step, train_flow

__all__ = [
  "COUPLINGS",
  "SAMPLE_MODES",
  "TOYS",
  "Coupling",
  "FlowCouplings",
  "ODESolution",
  "Pairing",
  "PathEnergy",
  "SampleMode",
  "TrainResult",
  "VelocityMLP",
  "cfm_loss",
  "coupling_time_ms",
  "coupling_times_ms",
  "couple",
  "dopri5",
  "draw_pairs",
  "euler_sample",
  "exact_permutation",
  "fit_flow_couplings",
  "make_train_step",
  "select_sliced_steps",
  "path_energy",
  "sample_toy",
  "train_flow",
  "trajectory",
  "w2_exact",
]
