"""Result tables in the README and ``docs/`` regenerated from the benchmarks' ``metrics.json`` files.

A Markdown file holds a table between two markers naming the metrics file it
is generated from (relative to the repository) and, optionally, a format::

    <!-- table: docs/results/solvers_clouds/metrics.json -->
    ...generated: do not edit...
    <!-- end table -->

``python -m ottsliced.experiments.report`` rewrites every such block from its
file with the task's ``format_table`` (or ``format_summary`` with
``format=summary``); ``--check`` rewrites nothing and exits 1 when a block
differs from what its metrics give (the test suite runs it), so no number in
the docs is copied by hand. A benchmark run writes ``results/<config>/metrics.json``;
copy the file under ``docs/results/<config>/`` to publish it, then run this.
"""

import argparse
import importlib
import json
import os
import re
import sys
from typing import Dict, List, Optional, Tuple

from ottsliced.experiments import TASKS

__all__ = ["BLOCK", "render", "render_file", "main"]

BLOCK = re.compile(
  r"(?P<open><!-- table: (?P<path>\S+)(?: format=(?P<fmt>\w+))? -->\n)(?P<body>.*?)(?P<close><!-- end table -->)",
  re.S,
)
DEFAULT_FILES = ("README.md", "docs")


def render(metrics_path: str, fmt: Optional[str] = None) -> str:
  """The table of a metrics file: its task's ``format_table`` (or ``format_<fmt>``)."""
  with open(metrics_path) as fh:
    metrics = json.load(fh)
  task = metrics.get("task")
  if task not in TASKS:
    raise ValueError(f"{metrics_path}: unknown task {task!r}")
  module = importlib.import_module(TASKS[task])
  formatter = getattr(module, f"format_{fmt or 'table'}", None)
  if formatter is None:
    raise ValueError(f"{metrics_path}: task {task!r} has no format {fmt!r}")
  return formatter(metrics).rstrip("\n") + "\n"


def render_file(path: str, root: str) -> Tuple[str, str]:
  """``(current text, regenerated text)`` of a Markdown file; metrics paths are relative to ``root``."""
  with open(path) as fh:
    text = fh.read()

  def sub(match: "re.Match[str]") -> str:
    table = render(os.path.join(root, match["path"]), match["fmt"])
    return match["open"] + table + match["close"]

  return text, BLOCK.sub(sub, text)


def _markdown_files(root: str, targets: List[str]) -> List[str]:
  files = []
  for target in targets:
    path = os.path.join(root, target)
    if os.path.isdir(path):
      for dirpath, _, names in os.walk(path):
        files += [os.path.join(dirpath, n) for n in sorted(names) if n.endswith(".md")]
    elif os.path.isfile(path):
      files.append(path)
  return files


def main(argv: Optional[List[str]] = None) -> int:
  """Regenerate (or ``--check``) every table block of the README and ``docs/``."""
  parser = argparse.ArgumentParser(prog="python -m ottsliced.experiments.report", description=__doc__.split("\n")[0])
  parser.add_argument("files", nargs="*", default=list(DEFAULT_FILES), help="Markdown files or folders")
  parser.add_argument("--root", default=".", help="repository root (metrics paths are relative to it)")
  parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a table is out of date")
  args = parser.parse_args(argv)
  stale: Dict[str, int] = {}
  for path in _markdown_files(args.root, args.files):
    text, new = render_file(path, args.root)
    if new != text:
      stale[path] = len(BLOCK.findall(text))
      if not args.check:
        with open(path, "w") as fh:
          fh.write(new)
  for path in stale:
    print(("out of date: " if args.check else "regenerated: ") + path)
  return 1 if (args.check and stale) else 0


if __name__ == "__main__":
  sys.exit(main())
