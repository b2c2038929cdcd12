"""Fit the models shipped in :mod:`ottsliced.pretrained` with their tasks' protocols.

``python -m ottsliced.experiments.shipped_models [--tasks mnist color] [--out DIR]``
reads ``configs/<task>.yaml``, draws that task's training pairs, fits RA-OT and
OA-OT exactly as the task benchmark does (:func:`evaluation.fit_sliced_models`)
and writes ``<task>-ra.npz`` and ``<task>-oa.npz`` (default: into the
package's ``pretrained/models``), their training summaries with the config's
path (OA-OT's loss curve kept every 250th step, so that a file stays a few KB).
For the tasks of :data:`CORRECTION_HEADS` it then fits a correction head after
the saved RA-OT's start (:func:`fit_correction_head`) and writes
``<task>-ra-corrected.npz``.
"""

import argparse
import os
from typing import Dict, Sequence

from ottsliced.data import color as color_data
from ottsliced.experiments import color, evaluation, load_config, mnist
from ottsliced.fitting.corrections import fit_correction_steps
from ottsliced.fitting.regression import ground_truth
from ottsliced.initializers.sliced_initializer import SlicedInitializer
from ottsliced.problems.batch import ProblemBatch
from ottsliced.solvers.sliced_sinkhorn import SlicedSinkhorn

__all__ = ["CORRECTION_HEADS", "SHIPPED_TASKS", "fit_correction_head", "fit_shipped", "main", "training_pairs"]

SHIPPED_TASKS: Dict[str, str] = {"mnist": "configs/mnist.yaml", "color": "configs/color.yaml"}
# fit_correction_steps settings of the shipped correction heads (chosen by benchmarks/correction_head.py, 301e8bd).
CORRECTION_HEADS: Dict[str, Dict[str, object]] = {"mnist": {"method": "regression", "num_corrections": 2}}
_DEFAULT_OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained", "models")


def training_pairs(task: str, config: object, progress: bool = False) -> ProblemBatch:
  """The training pairs of ``task``'s protocol (the pairs its benchmark fits on)."""
  d = config.data
  if task == "mnist":
    return mnist.make_pairs(d, mnist.load_images(d))["train"]
  if task == "color":
    _, palettes = color.make_palettes(d, progress)
    return color_data.palette_pairs(palettes, d.num_train, epsilon=d.epsilon, seed=d.seed, offset=0).batch
  raise ValueError(f"no shipped model for task {task!r}; shipped tasks: {sorted(SHIPPED_TASKS)}.")


def fit_shipped(task: str, config_path: str, out_dir: str, progress: bool = False) -> Dict[str, str]:
  """Fit RA-OT and OA-OT for ``task`` and save them as ``<task>-ra.npz`` / ``<task>-oa.npz``; returns the paths."""
  _, config = load_config(config_path)
  train = training_pairs(task, config, progress)
  fitted, _ = evaluation.fit_sliced_models(train, config.model, progress)
  os.makedirs(out_dir, exist_ok=True)
  paths = {}
  for method, suffix in (("RA-OT", "ra"), ("OA-OT", "oa")):
    model = fitted[method]["initializer"]
    summary = {k: v for k, v in dict(model.summary).items() if k != "loss"}  # OA-OT's curve: every 250th step
    if "loss" in model.summary:
      summary["loss_every_250_steps"] = list(model.summary["loss"][::250])
    model = model.replace(summary={**summary, "config": config_path})
    paths[method] = os.path.join(out_dir, f"{task}-{suffix}.npz")
    model.save(paths[method])
  return paths


def fit_correction_head(task: str, config_path: str, out_dir: str, progress: bool = False) -> str:
  """Fit ``task``'s correction head after its saved RA-OT (``<task>-ra.npz`` in ``out_dir``); returns the path.

  The coefficients are fitted on the task's training pairs by
  :func:`~ottsliced.fit_correction_steps` with the settings of
  :data:`CORRECTION_HEADS` (the default solver: guarded line search,
  Anderson memory 2), attached to the model and saved as
  ``<task>-ra-corrected.npz`` (format version 3).
  """
  _, config = load_config(config_path)
  train = training_pairs(task, config, progress)
  ra = SlicedInitializer.load(os.path.join(out_dir, f"{task}-ra.npz"))
  settings = dict(CORRECTION_HEADS[task])
  truth = None
  if settings["method"] == "regression":
    m = config.model
    truth = ground_truth(train, threshold=m.ground_truth_threshold, max_iterations=m.ground_truth_max_iterations)
  fit = fit_correction_steps(train, SlicedSinkhorn.from_initializer(ra), truth=truth, progress=progress, **settings)
  summary = {**dict(ra.summary), "corrections": {**settings, "explained": [float(e) for e in fit.explained]}}
  path = os.path.join(out_dir, f"{task}-ra-corrected.npz")
  fit.model.replace(summary=summary).save(path)
  return path


def main(argv: Sequence[str] = None) -> None:  # noqa: D103
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tasks", nargs="+", default=sorted(SHIPPED_TASKS), choices=sorted(SHIPPED_TASKS))
  parser.add_argument("--out", default=_DEFAULT_OUT)
  args = parser.parse_args(argv)
  for task in args.tasks:
    print(task, fit_shipped(task, SHIPPED_TASKS[task], args.out, progress=True))
    if task in CORRECTION_HEADS:
      print(task, fit_correction_head(task, SHIPPED_TASKS[task], args.out, progress=True))


if __name__ == "__main__":
  main()
