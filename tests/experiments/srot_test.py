"""The SROT accuracy task: its quick config end to end, the rounding to couplings and the config checks."""

import json
import math
import pathlib

import numpy as np
import pytest

from ottsliced.experiments import load_config, run_config
from ottsliced.experiments import srot as task
from ottsliced.experiments.config import ConfigError

CONFIGS = pathlib.Path(__file__).parents[2] / "configs"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
  out = tmp_path_factory.mktemp("srot_quick")
  metrics = run_config(str(CONFIGS / "srot_quick.yaml"), out_dir=str(out), progress=False)
  return out, metrics


def _finite(values):
  return all(v is not None and math.isfinite(v) for v in values)


def test_quick_config_measures_every_method_on_every_case(quick):
  out, metrics = quick
  saved = json.loads((out / "metrics.json").read_text())
  assert saved["task"] == "srot"
  cfg = saved["config"]
  assert [c["kind"] for c in saved["cases"]] == ["gmm", "color", "digits"]
  assert all(pathlib.Path(p).exists() for p in saved["figures"].values())
  assert "gaps" in saved["figures"]
  num_pairs = cfg["data"]["num_pairs"]
  threshold = cfg["solver"]["threshold"]
  for case in metrics["cases"]:
    runs = case["runs"]
    labels = {r["label"] for r in runs}
    expected = {"entropic"}
    expected |= {f"SROT s={s:g} L={L}" for s in cfg["solver"]["smoothings"] for L in cfg["solver"]["num_directions"]}
    expected |= {f"sliced L={L}" for L in cfg["solver"]["num_directions"]}
    assert labels == expected, case["name"]
    # s = 1 is entropic OT: never listed as an SROT setting
    assert all(r["smoothing"] < 1.0 for r in runs if r["method"] == "srot")
    for p in case["pairs"]:
      assert 2 <= p["n"] <= cfg["data"]["num_points"] or case["kind"] == "digits"
      assert p["exact_cost"] > 0
      assert p["mean_cost"] > 0
    for r in runs:
      for key in ("gap", "plan_l1", "marginal_error", "seconds", "iterations"):
        assert len(r[key]) == num_pairs, (case["name"], r["label"], key)
        assert _finite(r[key]), (case["name"], r["label"], key)
      # plans are rounded to exact couplings: none beats exact OT (float64 rounding aside)
      assert min(r["gap"]) >= -1e-9, (case["name"], r["label"], r["gap"])
      assert all(0.0 <= v <= 2.0 + 1e-9 for v in r["plan_l1"])
      assert min(r["seconds"]) > 0
      if r["method"] != "sliced":
        assert all(r["converged"]), (case["name"], r["label"])
        # the solvers stop on one marginal's error; the other is exact after the last update
        assert max(r["marginal_error"]) <= 2 * threshold
    srot = [r for r in runs if r["method"] == "srot"]
    assert srot
    for r in srot:
      # SROT's own transport_cost is <C, P> of its dense plan
      assert max(r["transport_cost_check"]) < 1e-10
      # measured property at eps <= 0.1 x mean cost (not a theorem): SROT is far closer to OT than its sliced plan
      sliced = next(q for q in runs if q["method"] == "sliced" and q["num_directions"] == r["num_directions"])
      assert all(g <= h for g, h in zip(r["gap"], sliced["gap"])), (case["name"], r["label"])


def test_equal_time_comparison_is_the_best_converged_entropic_run_as_fast(quick):
  _, metrics = quick
  for case in metrics["cases"]:
    entropic = [r for r in case["runs"] if r["method"] == "entropic"]
    assert {r["relative_epsilon"] for r in entropic} > {r["relative_epsilon"] for r in entropic if r["grid"]}
    for r in case["runs"]:
      if r["method"] != "srot":
        continue
      for k, (t, best) in enumerate(zip(r["seconds"], r["entropic_equal_time_gap"])):
        eligible = [e["gap"][k] for e in entropic if e["converged"][k] and e["seconds"][k] <= t]
        assert best == (min(eligible) if eligible else None)


def test_table_renders(quick):
  out, metrics = quick
  table = (out / "table.md").read_text()
  assert table.rstrip("\n") == task.format_table(metrics)
  assert "| gmm d=2 | entropic |" in table
  assert "SROT s=0.5 L=16" in table
  assert "sliced L=4" in table
  assert "ε = 0.01·mean" in table
  assert table.count("| entropic |") == 2 * len(metrics["cases"])  # gap table and time table
  assert "nan" not in table.lower()


def test_round_to_coupling_has_exact_marginals():
  rs = np.random.default_rng(0)
  a, b = rs.uniform(size=7), rs.uniform(size=5)
  a[2] = 0.0
  a, b = a / a.sum(), b / b.sum()
  plan = np.outer(a, b) * rs.uniform(0.8, 1.2, size=(7, 5))
  out = task.round_to_coupling(plan, a, b)
  assert np.all(out >= 0)
  np.testing.assert_allclose(out.sum(1), a, atol=1e-15)
  np.testing.assert_allclose(out.sum(0), b, atol=1e-15)
  assert np.abs(out - plan).sum() <= 2 * (np.abs(plan.sum(1) - a).sum() + np.abs(plan.sum(0) - b).sum())
  coupling = np.outer(a, b)
  np.testing.assert_allclose(task.round_to_coupling(coupling, a, b), coupling, atol=1e-16)


def test_config_refuses_smoothing_one_and_bad_lists(tmp_path):
  text = (CONFIGS / "srot_quick.yaml").read_text()
  module, config = load_config(str(CONFIGS / "srot_quick.yaml"))
  assert module is task
  assert load_config(str(CONFIGS / "srot.yaml"))[0] is task
  bad = tmp_path / "bad.yaml"
  bad.write_text(text.replace("smoothings: [0.5]", "smoothings: [0.5, 1.0]"))
  with pytest.raises(ConfigError, match="entropic OT"):
    load_config(str(bad))
  bad.write_text(text.replace("kinds: [gmm, color, digits]", "kinds: [gmm, photos]"))
  with pytest.raises(ConfigError, match=r"kinds\[1\]"):
    load_config(str(bad))
  bad.write_text(text.replace("relative_epsilons: [0.1, 0.01]", "relative_epsilons: []"))
  with pytest.raises(ConfigError, match="relative_epsilons"):
    load_config(str(bad))
