"""The ``ottsliced`` command: ``ottsliced demo`` and ``ottsliced bench core``."""

import sys
from typing import List, Optional

__all__ = ["main"]


_USAGE = """usage: ottsliced {demo,bench} [options]

  demo          the MNIST task at demo size: RA-OT and OA-OT against every baseline
  bench core    the throughput task at a small size: sliced features, amortized plans, Sinkhorn
  bench FILE    run an experiment from its YAML config, e.g. configs/mnist_quick.yaml

Run `ottsliced demo --help` or `ottsliced bench --help` for options."""


def main(argv: Optional[List[str]] = None) -> int:
  """Entry point of the ``ottsliced`` console script."""
  argv = list(sys.argv[1:] if argv is None else argv)
  if not argv or argv[0] in ("-h", "--help"):
    print(_USAGE)
    return 0
  command, rest = argv[0], argv[1:]
  if command == "demo":
    from ottsliced.cli import demo

    return demo.main(rest)
  if command == "bench":
    from ottsliced.cli import bench

    return bench.main(rest)
  print(f"ottsliced: unknown command {command!r}\n\n{_USAGE}", file=sys.stderr)
  return 2
