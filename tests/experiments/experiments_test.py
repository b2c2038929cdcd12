"""Experiment runner: strict configs, and every quick config end to end."""

import dataclasses
import json
import pathlib
from typing import Optional, Tuple

import numpy as np
import pytest

from ottsliced import cli
from ottsliced.experiments import TASKS, load_config, run_config
from ottsliced.experiments.config import ConfigError, from_mapping

CONFIGS = pathlib.Path(__file__).parents[2] / "configs"


@dataclasses.dataclass(frozen=True)
class _Inner:
  rate: float
  steps: int


@dataclasses.dataclass(frozen=True)
class _Schedules:
  pairs: Tuple[Tuple[float, float], ...]


@dataclasses.dataclass(frozen=True)
class _Outer:
  name: str
  sizes: Tuple[int, ...]
  inner: _Inner
  path: Optional[str] = None


class TestConfigSchema:
  def test_builds_nested_dataclasses(self):
    cfg = from_mapping(_Outer, {"name": "a", "sizes": [1, 2], "inner": {"rate": "1e-3", "steps": 3}})
    assert cfg == _Outer("a", (1, 2), _Inner(1e-3, 3))

  def test_fixed_length_tuples_inside_lists(self):
    cfg = from_mapping(_Schedules, {"pairs": [[10, 0.9], ["1e2", 0.95]]})
    assert cfg == _Schedules(((10.0, 0.9), (100.0, 0.95)))
    with pytest.raises(ConfigError, match=r"pairs\[1\]: expected a list of 2 items"):
      from_mapping(_Schedules, {"pairs": [[10, 0.9], [1.0]]})
    with pytest.raises(ConfigError, match=r"pairs\[0\]\[1\]: expected a number"):
      from_mapping(_Schedules, {"pairs": [[10, "fast"]]})

  @pytest.mark.parametrize(
    ("mapping", "message"),
    [
      ({"name": "a", "sizes": [1], "inner": {"rate": 1.0, "steps": 3}, "typo": 1}, "unknown key(s) ['typo']"),
      ({"name": "a", "sizes": [1], "inner": {"rate": 1.0}}, "inner.steps: missing"),
      ({"name": "a", "sizes": [1], "inner": {"rate": 1.0, "steps": 2.5}}, "inner.steps: expected an integer"),
      ({"name": "a", "sizes": [1, "x"], "inner": {"rate": 1.0, "steps": 2}}, "sizes[1]: expected an integer"),
      ({"name": "a", "sizes": [1], "inner": {"rate": "fast", "steps": 2}}, "inner.rate: expected a number"),
      ({"name": "a", "sizes": [1], "inner": {"rate": True, "steps": 2}}, "inner.rate: expected a number"),
      ({"name": 3, "sizes": [1], "inner": {"rate": 1.0, "steps": 2}}, "name: expected a string"),
      ({"name": "a", "sizes": 1, "inner": {"rate": 1.0, "steps": 2}}, "sizes: expected a list"),
    ],
  )
  def test_refuses_bad_configs(self, mapping, message):
    with pytest.raises(ConfigError) as err:
      from_mapping(_Outer, mapping)
    assert message in str(err.value)

  def test_bundled_configs_validate(self):
    files = sorted(CONFIGS.glob("*.yaml"))
    tasks = set()
    for path in files:
      module, config = load_config(str(path))
      tasks.add(module.__name__.rsplit(".", 1)[-1])
      assert dataclasses.is_dataclass(config)
    assert {"mnist", "multires", "color", "sphere"} <= tasks
    for task in ("mnist", "multires", "color", "sphere"):
      assert (CONFIGS / f"{task}.yaml").exists()
      assert (CONFIGS / f"{task}_quick.yaml").exists()

  def test_range_checks_and_bad_files(self, tmp_path):
    text = (CONFIGS / "mnist_quick.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("num_test: 20", "num_test: 500"))
    with pytest.raises(ConfigError, match="must fit"):
      load_config(str(bad))
    bad.write_text(text.replace("task: mnist", "task: nope"))
    with pytest.raises(ConfigError, match="unknown task 'nope'"):
      load_config(str(bad))
    bad.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="`task` key"):
      load_config(str(bad))
    with pytest.raises(FileNotFoundError):
      load_config(str(tmp_path / "missing.yaml"))

  def test_cli_reports_config_errors(self, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIGS / "mnist_quick.yaml").read_text().replace("ridge:", "rigde:"))
    with pytest.raises(SystemExit) as exc:
      cli.main(["bench", str(bad)])
    assert exc.value.code == 2
    assert "unknown key(s) ['rigde']" in capsys.readouterr().err

  def test_every_task_is_registered(self):
    assert set(TASKS) >= {"mnist", "multires", "color", "sphere"}


def _iters(metrics, method, t="0.01"):
  return float(np.mean(metrics["methods"][method]["iterations"][t]))


@pytest.mark.slow
@pytest.mark.parametrize("task", ["mnist", "multires", "color", "sphere"])
def test_quick_config_end_to_end(task, tmp_path):
  """The issue's acceptance checks, on each task's quick config."""
  out = tmp_path / task
  metrics = run_config(str(CONFIGS / f"{task}_quick.yaml"), out_dir=str(out), progress=False)
  saved = json.loads((out / "metrics.json").read_text())
  assert (out / "table.md").read_text().count("| RA-OT |") >= 2  # plan table and initializer table
  assert all(pathlib.Path(p).exists() for p in saved["figures"].values())
  methods = metrics["methods"]
  indep = np.mean(methods["independent"]["plan"]["rmse"])
  for name in ("RA-OT", "OA-OT"):
    # Warm start: fewer Sinkhorn iterations to 1e-2 than zeros and than OTT's Gaussian initializer.
    assert _iters(metrics, name) < _iters(metrics, "zeros")
    if "Gaussian" in methods:
      assert _iters(metrics, name) < _iters(metrics, "Gaussian")
    # Amortized plan without refinement: closer to the converged plan than the independent coupling.
    assert np.mean(methods[name]["plan"]["rmse"]) < indep
    assert np.all(np.isfinite(methods[name]["plan"]["rmse"]))
    # Amortized plan cost (plan table): timed one pair and batched.
    assert min(methods[name]["inference_ms"].values()) > 0
  assert metrics["reference"]["converged"] == metrics["num_test"]


@pytest.mark.slow
def test_throughput_quick_config(tmp_path):
  """Every cell timed, dense and online, and the fixed-K errors behave like Sinkhorn's."""
  metrics = run_config(str(CONFIGS / "throughput_quick.yaml"), out_dir=str(tmp_path), progress=False)
  table = (tmp_path / "table.md").read_text()
  assert "c-transform (floor)" in table
  assert "K matching Sinkhorn" in table
  rows = metrics["rows"]
  assert [(r["n"], r["B"], r["online"]) for r in rows] == [(64, 1, False), (64, 3, True)]
  for r in rows:
    keys = ("c_transform_us", "features_us", "plan_us", "api_us", "sinkhorn_zeros_us", "sinkhorn_ra_us")
    for key in (*keys, "sinkhorn_loop_us"):
      assert r[key] > 0
    # SlicedSinkhorn's loop without corrections: OTT's iterations (float32: the error read from the update may round
    # across the threshold), dense and online.
    assert r["sinkhorn_loop_converged"] == 1.0
    assert abs(r["sinkhorn_loop_iters"]["mean"] - r["sinkhorn_zeros_iters"]["mean"]) <= 1
    # Sinkhorn stops every pair below its threshold; the warm start needs fewer iterations.
    assert r["sinkhorn_zeros_converged"] == r["sinkhorn_ra_converged"] == 1.0
    assert r["sinkhorn_ra_iters"]["mean"] < r["sinkhorn_zeros_iters"]["mean"]
    one, many = r["fixed"]["1"], r["fixed"]["64"]
    assert many["error_max"] < one["error_max"] < r["api_error"]["error_max"]
    assert many["converged"] == 1.0
    assert r["bind_ms"] > 0
  assert rows[1]["zeros_vs_own_count"] > 0
  assert rows[1]["loop_vs_own_count"] > 0
  skip = run_config(
    str(CONFIGS / "throughput_quick.yaml"),
    out_dir=str(tmp_path / "skip"),
    progress=False,
    overrides={"bench.max_cost_entries": 5000.0, "bench.refine_iterations": [2]},
  )
  assert [(r["n"], r["B"]) for r in skip["rows"]] == [(64, 1)]
  assert skip["skipped"] == [{"n": 64, "B": 3}]
