"""ottsliced: amortized entropic optimal transport from sliced potentials."""

from ottsliced import _aliases
from ottsliced._compat import apply_shims

apply_shims()
_aliases.install()

from ottsliced.correction_fit import fit_correction_steps  # noqa: E402
from ottsliced.directions import directions  # noqa: E402
from ottsliced.head_fit import MeasurePools, fit_head  # noqa: E402
from ottsliced.initializer import SlicedInitializer  # noqa: E402
from ottsliced.objective import fit_oa, semi_dual  # noqa: E402
from ottsliced.problems import ProblemBatch  # noqa: E402
from ottsliced.regression import fit_ra  # noqa: E402
from ottsliced.sliced import sliced_potentials  # noqa: E402
from ottsliced.sliced_sinkhorn import SlicedSinkhorn  # noqa: E402
from ottsliced.solve import (  # noqa: E402
  AmortizedInfo,
  amortized_solve,
  amortized_solve_batch,
  num_iterations,
  solve_batch,
)
from ottsliced.step_selection import select_steps  # noqa: E402

__version__ = "0.1.0"

__all__ = [
  "AmortizedInfo",
  "MeasurePools",
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
  "sliced_potentials",
  "solve_batch",
]
