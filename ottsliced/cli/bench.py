"""``ottsliced bench``: the core benchmark (``bench core``) or an experiment from its YAML config."""

import argparse
import json
import sys
from typing import List, Optional

from ottsliced.cli.args import positive_int

__all__ = ["main"]


def _run_config_main(argv: List[str]) -> int:
  from ottsliced.experiments import run_and_report

  parser = argparse.ArgumentParser(prog="ottsliced bench CONFIG.yaml", description="run an experiment from its config")
  parser.add_argument("config", help="a YAML file, e.g. configs/mnist_quick.yaml")
  parser.add_argument("--out", default=None, help="results folder (default results/<config name>)")
  parser.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)
  from ottsliced.experiments.config import ConfigError

  try:
    run_and_report(args.config, out_dir=args.out, progress=not args.no_progress)
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
  parser.add_argument("--json", default=None, help="also write the raw numbers to this file")
  args = parser.parse_args(argv)
  from ottsliced.experiments.core import core_benchmark, format_core

  result = core_benchmark(args.batch_sizes, size=args.size, repeats=args.repeats)
  print(format_core(result))
  if args.json:
    with open(args.json, "w") as fh:
      json.dump(result, fh, indent=2)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
