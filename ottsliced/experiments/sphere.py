"""Supply-demand on the sphere: 100 supply and 10,000 demand locations.

Locations are fixed (a synthetic population density on S², see
:mod:`ottsliced.data.sphere`; GPWv4 ships in no package). Instances differ in
their weights only (Meta OT's sampler): training instances use seeds
``train_seed + i``, test instances ``test_seed + i``. The cost is the
geodesic distance and the sliced features live on the stereographic plane
(the problems' coordinates). Sorting needs a square cost and does not apply.
"""

import dataclasses
import os
from typing import Any, Dict

import numpy as np

from ottsliced.data import sphere
from ottsliced.experiments import evaluation, figures
from ottsliced.experiments.evaluation import BaselinesConfig, EvalConfig, ModelConfig

__all__ = ["Config", "DataConfig", "FigureConfig", "format_table", "run"]


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Locations and instance seeds."""

  num_supply: int
  num_demand: int
  epsilon: float
  train_seed: int
  test_seed: int
  num_train: int
  num_test: int

  def __post_init__(self):
    if self.num_supply < 1 or self.num_demand < 1 or self.num_train < 1 or self.num_test < 1:
      raise ValueError("num_supply, num_demand, num_train and num_test must be >= 1")
    if self.train_seed + self.num_train > self.test_seed and self.test_seed + self.num_test > self.train_seed:
      raise ValueError(
        f"training seeds [{self.train_seed}, {self.train_seed + self.num_train}) overlap test seeds "
        f"[{self.test_seed}, {self.test_seed + self.num_test})"
      )


@dataclasses.dataclass(frozen=True)
class FigureConfig:
  """Maps of a few test plans."""

  enabled: bool
  pairs: int
  links_per_supply: int


@dataclasses.dataclass(frozen=True)
class Config:
  """The sphere task."""

  data: DataConfig
  model: ModelConfig
  baselines: BaselinesConfig
  evaluation: EvalConfig
  figures: FigureConfig


def run(config: Config, out_dir: str, progress: bool = True) -> Dict[str, Any]:
  """Draw instances, fit, evaluate, map plans."""
  d = config.data
  kw = {"num_supply": d.num_supply, "num_demand": d.num_demand, "epsilon": d.epsilon}
  train = sphere.supply_demand_pairs(d.num_train, seed=d.train_seed, **kw)
  test = sphere.supply_demand_pairs(d.num_test, seed=d.test_seed, **kw)
  result = evaluation.run_protocol(train.batch, test.batch, config, out_dir, "Sphere: iterations", progress)
  paths = result["figures"]
  if config.figures.enabled:
    threshold, swgg = config.evaluation.reference_threshold, config.baselines.min_swgg
    part, plans = evaluation.method_plans(test.batch, config.figures.pairs, result["models"], threshold, swgg)
    for r in range(part.num_pairs):
      paths[f"plan_map_{r}"] = os.path.join(out_dir, f"plan_map_{r}.png")
      figures.plot_sphere_plan(
        test.supply_xyz,
        test.demand_xyz,
        {n: p[r] for n, p in plans.items()},
        np.asarray(part.a[r]),
        np.asarray(part.b[r]),
        paths[f"plan_map_{r}"],
        links_per_supply=config.figures.links_per_supply,
      )
  result.pop("models")
  return result


def format_table(metrics: Dict[str, Any]) -> str:
  """The sphere tables (Markdown)."""
  d = metrics["config"]["data"]
  title = (
    f"### Supply-demand on S² ({d['num_supply']} supply x {d['num_demand']} demand, geodesic cost, "
    f"synthetic density), eps = {d['epsilon']:g}, L = {metrics['config']['model']['num_projections']}"
  )
  return evaluation.format_evaluation(metrics, title)
