"""The paper's experiments, each run from a YAML file in ``configs/``.

``ottsliced bench configs/<name>.yaml`` reads the file, validates it against
its task's schema (:mod:`ottsliced.experiments.config`), runs the task and
writes ``results/<name>/metrics.json``, ``table.md`` and the task's figures.

A task module defines a frozen dataclass ``Config`` (every setting, no hidden
numbers), ``run(config, out_dir, progress) -> dict`` (JSON-serialisable
metrics; figures are written to ``out_dir``) and ``format_table(metrics) ->
str`` (Markdown).
"""

import importlib
import json
import os
import time
from types import ModuleType
from typing import Any, Dict, Optional, Tuple

from ottsliced.experiments.config import ConfigError, from_mapping, read_yaml, to_dict

__all__ = ["TASKS", "default_out_dir", "load_config", "run_and_report", "run_config"]

TASKS: Dict[str, str] = {
  "mnist": "ottsliced.experiments.mnist",
  "multires": "ottsliced.experiments.multires",
  "color": "ottsliced.experiments.color",
  "sphere": "ottsliced.experiments.sphere",
  "flow": "ottsliced.experiments.flow",
  "throughput": "ottsliced.experiments.throughput",
  "attention": "ottsliced.experiments.attention",
  "solvers": "ottsliced.experiments.solvers",
  "srot": "ottsliced.experiments.srot",
}


def _apply_overrides(data: Dict[str, Any], overrides: Dict[str, Any]) -> None:
  for dotted, value in overrides.items():
    node = data
    *parents, leaf = dotted.split(".")
    for key in parents:
      if not isinstance(node.get(key), dict):
        raise ConfigError(f"override {dotted!r}: no section {key!r} in the config")
      node = node[key]
    if leaf not in node:
      raise ConfigError(f"override {dotted!r}: no setting {leaf!r} in the config")
    node[leaf] = value


def load_config(path: str, overrides: Optional[Dict[str, Any]] = None) -> Tuple[ModuleType, Any]:
  """The task module and its validated ``Config`` for the YAML file at ``path``.

  Args:
    path: a YAML config file.
    overrides: ``{"data.num_train": 6, ...}``: dotted keys of existing
      settings replaced before validation.
  """
  data = read_yaml(path)
  _apply_overrides(data, overrides or {})
  task = data.pop("task")
  if task not in TASKS:
    raise ConfigError(f"{path}: unknown task {task!r}; known tasks: {sorted(TASKS)}")
  module = importlib.import_module(TASKS[task])
  return module, from_mapping(module.Config, data, where=os.path.basename(path))


def _jsonable(obj: Any) -> Any:
  import numpy as np

  if isinstance(obj, dict):
    return {str(k): _jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_jsonable(v) for v in obj]
  if hasattr(obj, "__array__"):
    return np.asarray(obj).tolist()
  if isinstance(obj, np.generic):
    return obj.item()
  return obj


def default_out_dir(path: str) -> str:
  """``results/<config file name without .yaml>``."""
  return os.path.join("results", os.path.splitext(os.path.basename(path))[0])


def run_config(
  path: str, out_dir: Optional[str] = None, progress: bool = True, overrides: Optional[Dict[str, Any]] = None
) -> Dict[str, Any]:
  """Run the experiment described by the YAML file at ``path``.

  Args:
    path: a config file, e.g. ``configs/mnist_quick.yaml``.
    out_dir: where results go (default ``results/<file name without .yaml>``).
    progress: show progress bars.
    overrides: dotted settings replaced before validation (see :func:`load_config`).

  Returns:
    The metrics dict, also written to ``out_dir/metrics.json`` together with
    ``out_dir/table.md``.
  """
  module, config = load_config(path, overrides)
  out_dir = out_dir or default_out_dir(path)
  os.makedirs(out_dir, exist_ok=True)
  t0 = time.perf_counter()
  metrics = module.run(config, out_dir, progress=progress)
  metrics = {
    "config_file": path,
    "task": module.__name__.rsplit(".", 1)[-1],
    "config": to_dict(config),
    "wall_seconds": time.perf_counter() - t0,
    **metrics,
  }
  table = module.format_table(metrics)
  with open(os.path.join(out_dir, "table.md"), "w") as fh:
    fh.write(table + "\n")
  with open(os.path.join(out_dir, "metrics.json"), "w") as fh:
    json.dump(_jsonable(metrics), fh, indent=1)
  return metrics


def run_and_report(
  path: str, out_dir: Optional[str] = None, progress: bool = True, overrides: Optional[Dict[str, Any]] = None
) -> Dict[str, Any]:
  """:func:`run_config`, then print the table and what was written (the command-line entry points)."""
  out_dir = out_dir or default_out_dir(path)
  metrics = run_config(path, out_dir=out_dir, progress=progress, overrides=overrides)
  with open(os.path.join(out_dir, "table.md")) as fh:
    print(fh.read())
  print(f"wrote {out_dir}/metrics.json, {out_dir}/table.md and {len(metrics.get('figures', {}))} figure(s)")
  return metrics
