"""The core: directions, sorted projections and exact 1-D OT potentials of projected measures (no I/O)."""

from ottsliced.sliced.directions import directions
from ottsliced.sliced.plans import SlicedPlan, monotone_coupling, sliced_plan
from ottsliced.sliced.potentials import (
  Centering,
  batched_sliced_potentials,
  check_centering,
  combined_source_potentials,
  sliced_potentials,
  sliced_potentials_sorted,
  source_potentials_sorted,
)
from ottsliced.sliced.projections import SortedProjections, argsort_rows, sort_projections
from ottsliced.sliced.support import BoundSupport, bind_supports, bound_projections
from ottsliced.sliced.uniform import uniform_source_potentials

__all__ = [
  "BoundSupport",
  "Centering",
  "SlicedPlan",
  "SortedProjections",
  "argsort_rows",
  "batched_sliced_potentials",
  "bind_supports",
  "bound_projections",
  "check_centering",
  "combined_source_potentials",
  "directions",
  "monotone_coupling",
  "sliced_plan",
  "sliced_potentials",
  "sliced_potentials_sorted",
  "sort_projections",
  "source_potentials_sorted",
  "uniform_source_potentials",
]
