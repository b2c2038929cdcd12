"""ottsliced: amortized entropic optimal transport from sliced potentials, as drop-ins for OTT.

The package is a small core with applications on top, every import pointing down:

- :mod:`ottsliced.sliced`: directions, sorted projections, exact 1-D OT potentials (no I/O).
- :mod:`ottsliced.problems`: batches of problems, how pairs run (map / vmap / compaction), sharding.
- :mod:`ottsliced.initializers`: the amortized model (an OTT initializer) and its heads.
- :mod:`ottsliced.solvers`: the sliced Sinkhorn solver, amortized and batched solves, step selection.
- :mod:`ottsliced.fitting`: RA-OT (regression), OA-OT (dual objective), heads, correction steps.
- on top: ``data``, ``baselines``, ``pretrained``, ``attention``, ``flow_matching``, ``experiments``, ``cli``.
"""

from ottsliced._internal.compat import apply_shims

apply_shims()

from ottsliced.fitting.corrections import fit_correction_steps  # noqa: E402
from ottsliced.fitting.heads import MeasurePools, fit_head  # noqa: E402
from ottsliced.fitting.objective import fit_oa, semi_dual  # noqa: E402
from ottsliced.fitting.regression import fit_ra  # noqa: E402
from ottsliced.initializers.sliced_initializer import SlicedInitializer  # noqa: E402
from ottsliced.problems.batch import ProblemBatch  # noqa: E402
from ottsliced.sliced.directions import directions  # noqa: E402
from ottsliced.sliced.potentials import sliced_potentials  # noqa: E402
from ottsliced.solvers.amortized import AmortizedInfo, amortized_solve, amortized_solve_batch  # noqa: E402
from ottsliced.solvers.batch import solve_batch  # noqa: E402
from ottsliced.solvers.divergence import sinkhorn_divergence  # noqa: E402
from ottsliced.solvers.iterations import num_iterations  # noqa: E402
from ottsliced.solvers.sliced_sinkhorn import SlicedSinkhorn  # noqa: E402
from ottsliced.solvers.solve import solve  # noqa: E402
from ottsliced.solvers.srot import SROT, SROTOutput  # noqa: E402
from ottsliced.solvers.srot_divergence import SROTDivergenceOutput, srot_divergence  # noqa: E402
from ottsliced.solvers.step_selection import select_steps  # noqa: E402

__version__ = "0.1.0"

__all__ = [
  "AmortizedInfo",
  "MeasurePools",
  "SROT",
  "SROTDivergenceOutput",
  "SROTOutput",
  "ProblemBatch",
  "SlicedInitializer",
  "SlicedSinkhorn",
  "amortized_solve",
  "amortized_solve_batch",
  "directions",
  "fit_correction_steps",
  "fit_head",
  "fit_oa",
  "fit_ra",
  "num_iterations",
  "select_steps",
  "semi_dual",
  "sinkhorn_divergence",
  "sliced_potentials",
  "solve",
  "solve_batch",
  "srot_divergence",
]
