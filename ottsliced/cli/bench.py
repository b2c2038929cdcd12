"""``ottsliced bench``: an experiment from its YAML config, or ``bench core``: the throughput task at a small size.

There is one benchmark implementation per question: ``bench core`` runs the
throughput task (:mod:`ottsliced.experiments.throughput`) on the config shipped
in the package (``ottsliced/experiments/core.yaml``), with the command line's
sizes as overrides.
"""

import argparse
import os
import shutil
import sys
from typing import List, Optional

from ottsliced.cli.args import positive_int

__all__ = ["CORE_CONFIG", "main"]

CORE_CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments", "core.yaml")


def _run_config_main(argv: List[str]) -> int:
  from ottsliced.experiments import run_and_report

  parser = argparse.ArgumentParser(
    prog="ottsliced bench CONFIG.yaml [CONFIG.yaml ...]", description="run experiments from their configs, in order"
  )
  parser.add_argument("config", nargs="+", help="YAML files, e.g. configs/mnist_quick.yaml or configs/attention*.yaml")
  parser.add_argument("--out", default=None, help="results folder (default results/<config name>; one config only)")
  parser.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)
  if args.out is not None and len(args.config) > 1:
    parser.error("--out takes one config; with several, each writes results/<config name>")
  from ottsliced.experiments import load_config
  from ottsliced.experiments.config import ConfigError

  try:
    for path in args.config:  # validate every file before running any
      load_config(path)
    for path in args.config:
      run_and_report(path, out_dir=args.out, progress=not args.no_progress)
  except (ConfigError, FileNotFoundError) as err:
    parser.exit(2, f"ottsliced bench: error: {err}\n")
  return 0


def main(argv: Optional[List[str]] = None) -> int:
  """``ottsliced bench core [--batch-sizes 1 256] [--repeats 5] [--json PATH]`` or ``ottsliced bench CONFIG.yaml``."""
  argv = list(sys.argv[1:] if argv is None else argv)
  if argv and argv[0] != "core" and not argv[0].startswith("-"):
    return _run_config_main(argv)
  parser = argparse.ArgumentParser(prog="ottsliced bench", description=__doc__)
  parser.add_argument("suite", choices=["core"], help="`core`, or give a config file: ottsliced bench configs/x.yaml")
  parser.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[1, 256])
  parser.add_argument("--size", type=positive_int, default=28, help="image side: size^2 atoms (default 28 -> 784)")
  parser.add_argument("--repeats", type=positive_int, default=5)
  parser.add_argument("--json", default=None, help="also write the raw numbers (metrics.json) to this file")
  parser.add_argument("--out", default=os.path.join("results", "core"), help="results folder")
  parser.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)
  from ottsliced.experiments import run_and_report

  overrides = {
    "data.sides": [args.size],
    "data.train_side": args.size,
    "data.batch_sizes": list(args.batch_sizes),
    "bench.repeats": args.repeats,
  }
  run_and_report(CORE_CONFIG, out_dir=args.out, progress=not args.no_progress, overrides=overrides)
  if args.json:
    shutil.copyfile(os.path.join(args.out, "metrics.json"), args.json)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
