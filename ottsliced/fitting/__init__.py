"""Fitting the model: RA-OT (ridge regression), OA-OT (the entropic dual), heads, and correction steps."""

from ottsliced.fitting.corrections import CorrectionFit, fit_correction_steps
from ottsliced.fitting.heads import MeasurePools, fit_head
from ottsliced.fitting.objective import fit_oa, semi_dual
from ottsliced.fitting.regression import GroundTruth, fit_ra, ground_truth

__all__ = [
  "CorrectionFit",
  "GroundTruth",
  "MeasurePools",
  "fit_correction_steps",
  "fit_head",
  "fit_oa",
  "fit_ra",
  "ground_truth",
  "semi_dual",
]
