"""Docs tables are generated from metrics files, and the published ones are up to date."""

import json
import pathlib

from ottsliced.experiments import report

ROOT = pathlib.Path(__file__).parents[2]


def test_published_tables_match_their_metrics():
  """Every table block of the README and docs/ equals what its metrics.json gives (no hand-copied number)."""
  files = report._markdown_files(str(ROOT), list(report.DEFAULT_FILES))
  blocks = 0
  for path in files:
    text, regenerated = report.render_file(path, str(ROOT))
    blocks += len(report.BLOCK.findall(text))
    assert regenerated == text, f"{path}: a table is out of date; run `python -m ottsliced.experiments.report`"
  assert blocks >= 1


def test_check_mode_reports_and_rewrite_mode_fixes(tmp_path):
  metrics = {
    "task": "solvers",
    "suite": "t",
    "device": "cpu",
    "cases": [],
  }
  (tmp_path / "m.json").write_text(json.dumps(metrics))
  doc = tmp_path / "doc.md"
  doc.write_text("before\n<!-- table: m.json -->\nstale\n<!-- end table -->\nafter\n")
  assert report.main([str(doc), "--root", str(tmp_path), "--check"]) == 1
  assert "stale" in doc.read_text()
  assert report.main([str(doc), "--root", str(tmp_path)]) == 0
  text = doc.read_text()
  assert "stale" not in text
  assert text.startswith("before\n<!-- table: m.json -->\nSolver suite `t`")
  assert text.endswith("<!-- end table -->\nafter\n")
  assert report.main([str(doc), "--root", str(tmp_path), "--check"]) == 0
