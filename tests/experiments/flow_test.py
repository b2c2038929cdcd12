"""The flow-matching experiment: its config schema and the quick config end to end."""

import json

import numpy as np
import pytest

from ottsliced import flow_matching as fm
from ottsliced.experiments import config as config_lib
from ottsliced.experiments import flow, run_config


def test_flow_config_rejects_bad_values(tmp_path):
  data = config_lib.read_yaml("configs/flow_quick.yaml")
  data.pop("task")
  data["couplings"] = ["independent", "bogus"]
  with pytest.raises(config_lib.ConfigError, match="couplings"):
    config_lib.from_mapping(flow.Config, data)


def test_quick_config_runs_and_ra_straightens_paths(tmp_path):
  metrics = run_config("configs/flow_quick.yaml", out_dir=str(tmp_path), progress=False)
  res = metrics["couplings"]
  assert set(res) == set(fm.COUPLINGS)
  for r in res.values():
    assert r["num_traces"] == 1
    assert np.isfinite([r["w2_euler1"], r["w2_adaptive"], r["path_energy"]]).all()
    assert r["adaptive_reached_t1"]
  assert res["ra"]["path_energy"] < res["independent"]["path_energy"]
  assert res["exact"]["path_energy"] < res["independent"]["path_energy"]
  for name in ("metrics.json", "table.md", "samples.png", "trajectories.png"):
    assert (tmp_path / name).stat().st_size > 0
  json.loads((tmp_path / "metrics.json").read_text())
  table = (tmp_path / "table.md").read_text()
  assert "RA-OT" in table
  assert "coupling ms B=128" in table
  same = metrics["sinkhorn_same_epsilon_ms"]  # each coupling against Sinkhorn at its own epsilon, side by side
  assert set(same) == {"sliced", "ra", "oa"}
  for per_size in same.values():
    assert set(per_size) == {"64", "128"}
    assert all(v > 0 for ms in per_size.values() for v in (ms["coupling"], ms["sinkhorn"]))
  assert "against OTT's Sinkhorn at the same ε, timed side by side" in table
  sel = metrics["sliced_steps"]  # "auto": the sliced coupling's steps timed on training-size batches
  assert sel["selected"]
  assert sel["chosen"] in sel["candidates"]
  assert sel["ms"][sel["candidates"].index(sel["chosen"])] == min(sel["ms"])
  assert "`sliced` coupling steps" in table
