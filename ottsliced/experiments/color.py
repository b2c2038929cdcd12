"""Colour transfer: palettes of image crops, squared Euclidean cost in RGB.

scikit-image's bundled photographs stand in for WikiArt (nothing is
downloaded). Random crops are quantised to ``num_colors`` k-means centroids
(weights = cluster frequencies), so every palette has its own support; pairs
of distinct palettes are drawn once from ``seed`` and split into training and
test parts. Meta OT needs one fixed support and does not apply. The figure
recolours a test crop with each method's plan (barycentric map).
"""

import dataclasses
import os
from typing import Any, Dict, Tuple

import numpy as np
from tqdm.auto import tqdm

from ottsliced.data import color
from ottsliced.experiments import evaluation, figures
from ottsliced.experiments.evaluation import BaselinesConfig, EvalConfig, ModelConfig, PairPool

__all__ = ["Config", "DataConfig", "FigureConfig", "format_table", "make_palettes", "run"]


@dataclasses.dataclass(frozen=True)
class DataConfig(PairPool):
  """Images, crops and palettes, and the pair pool."""

  images: Tuple[str, ...]
  num_crops: int
  crop_size: int
  num_colors: int
  kmeans_n_init: int
  kmeans_max_pixels: int

  def __post_init__(self):
    if self.num_crops < 2:
      raise ValueError(f"num_crops must be >= 2, got {self.num_crops}")
    if self.pool_pairs > self.num_crops * (self.num_crops - 1) // 2:
      raise ValueError(f"pool_pairs={self.pool_pairs} exceeds the distinct pairs of {self.num_crops} crops")
    super().__post_init__()


@dataclasses.dataclass(frozen=True)
class FigureConfig:
  """Recoloured crops beside the originals."""

  enabled: bool
  pairs: int


@dataclasses.dataclass(frozen=True)
class Config:
  """The colour-transfer task."""

  data: DataConfig
  model: ModelConfig
  baselines: BaselinesConfig
  evaluation: EvalConfig
  figures: FigureConfig


def make_palettes(cfg: DataConfig, progress: bool = True):
  """The crops and their palettes (k-means per crop, seeded)."""
  images = color.load_images(list(cfg.images) or None)
  crops = color.random_crops(images, cfg.num_crops, cfg.crop_size, seed=cfg.seed)
  palettes = [
    color.palette(c, cfg.num_colors, seed=cfg.seed, n_init=cfg.kmeans_n_init, max_pixels=cfg.kmeans_max_pixels)
    for c in tqdm(crops, desc="palettes (k-means)", disable=not progress)
  ]
  return crops, palettes


def run(config: Config, out_dir: str, progress: bool = True) -> Dict[str, Any]:
  """Palettes, pairs, fit, evaluate, recolour."""
  d = config.data
  crops, palettes = make_palettes(d, progress)
  train = color.palette_pairs(palettes, d.num_train, epsilon=d.epsilon, seed=d.seed, offset=0)
  test = color.palette_pairs(palettes, d.num_test, epsilon=d.epsilon, seed=d.seed, offset=d.split)
  result = evaluation.run_protocol(train.batch, test.batch, config, out_dir, "Colour transfer: iterations", progress)
  paths = result["figures"]
  if config.figures.enabled:
    threshold, swgg = config.evaluation.reference_threshold, config.baselines.min_swgg
    part, plans = evaluation.method_plans(test.batch, config.figures.pairs, result["models"], threshold, swgg)
    k = part.num_pairs
    columns: Dict[str, Any] = {"source crop": [], "target crop": []}
    for name in plans:
      columns[name] = []
    for r in range(k):
      i, j = test.index[r]
      columns["source crop"].append(crops[i])
      columns["target crop"].append(crops[j])
      for name, p in plans.items():
        columns[name].append(color.recolor(crops[i], palettes[i], np.asarray(part.y[r]), p[r]))
    paths["recolored"] = os.path.join(out_dir, "recolored.png")
    figures.plot_recolored({n: np.stack(v) for n, v in columns.items()}, paths["recolored"])
  result.pop("models")
  return result


def format_table(metrics: Dict[str, Any]) -> str:
  """The colour-transfer tables (Markdown)."""
  d = metrics["config"]["data"]
  title = (
    f"### Colour transfer ({d['num_crops']} crops of {len(d['images']) or 'all'} scikit-image photos, "
    f"{d['num_colors']} colours), eps = {d['epsilon']:g}, L = {metrics['config']['model']['num_projections']}"
  )
  return evaluation.format_evaluation(metrics, title)
