"""The command-line interface: demo and benchmark run end to end on small sizes."""

import json

from ottsliced import cli


def test_help(capsys):
  assert cli.main([]) == 0
  assert "ottsliced {demo,bench}" in capsys.readouterr().out
  assert cli.main(["nope"]) == 2


def test_demo_small(tmp_path, capsys):
  out = tmp_path / "demo"
  assert cli.main(["demo", "--train", "6", "--test", "5", "--steps", "40", "--no-progress", "--out", str(out)]) == 0
  table = capsys.readouterr().out
  for method in ("zeros (Sinkhorn)", "Gaussian (OTT)", "RA-OT", "OA-OT", "independent coupling"):
    assert method in table
  metrics = json.loads((out / "metrics.json").read_text())
  assert len(metrics["rows"]) == 4
  assert (out / "table.md").exists()
  assert all(r["converged"] == 5 for r in metrics["rows"])


def test_bench_core_small(tmp_path, capsys):
  path = tmp_path / "bench.json"
  assert cli.main(["bench", "core", "--batch-sizes", "2", "--size", "8", "--repeats", "1", "--json", str(path)]) == 0
  assert "features + predict in iterations" in capsys.readouterr().out
  row = json.loads(path.read_text())["rows"][0]
  assert row["batch"] == 2
  assert row["features_ms"] > 0
  assert row["iters_ra_mean"] <= row["iters_zeros_mean"]


def test_bad_arguments_exit_with_a_message(capsys):
  import pytest

  for argv in (["demo", "--train", "0"], ["demo", "--steps", "-5"], ["bench", "core", "--repeats", "x"]):
    with pytest.raises(SystemExit) as exc:
      cli.main(argv)
    assert exc.value.code == 2
    assert "positive integer" in capsys.readouterr().err
