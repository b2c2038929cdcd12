"""Solvers: the sliced Sinkhorn (annealing, Newton or corrected steps), `solve`, amortized and batched solves, SROT."""

from ottsliced.solvers.amortized import AmortizedInfo, amortized_solve, amortized_solve_batch
from ottsliced.solvers.batch import solve_batch
from ottsliced.solvers.divergence import sinkhorn_divergence
from ottsliced.solvers.iterations import final_errors, marginal_errors, num_iterations, sinkhorn_sweeps
from ottsliced.solvers.sliced_sinkhorn import DEFAULT_STEPS, SlicedSinkhorn
from ottsliced.solvers.solve import solve
from ottsliced.solvers.srot import SROT, SROTOutput
from ottsliced.solvers.srot_divergence import SROTDivergenceOutput, srot_divergence
from ottsliced.solvers.step_selection import StepSelection, select_steps

__all__ = [
  "DEFAULT_STEPS",
  "AmortizedInfo",
  "SROT",
  "SROTDivergenceOutput",
  "SROTOutput",
  "SlicedSinkhorn",
  "StepSelection",
  "amortized_solve",
  "amortized_solve_batch",
  "final_errors",
  "marginal_errors",
  "num_iterations",
  "select_steps",
  "sinkhorn_divergence",
  "sinkhorn_sweeps",
  "solve",
  "solve_batch",
  "srot_divergence",
]
