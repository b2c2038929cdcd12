"""Batches of OT problems and how their pairs run: one after another, all at once, compacted, or over devices."""

from ottsliced.problems import batching, compaction, sharding
from ottsliced.problems.batch import ProblemBatch, as_problem_batch, make_geometry

__all__ = ["ProblemBatch", "as_problem_batch", "batching", "compaction", "make_geometry", "sharding"]
