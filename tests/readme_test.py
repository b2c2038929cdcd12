"""The README's examples run as printed (each Python block in order, in one namespace)."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).parents[1] / "README.md"


def _blocks():
  return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_is_a_front_door():
  text = README.read_text()
  assert len(text) <= 10_000, f"README.md has {len(text)} characters; keep it under 10,000 (details go to docs/)"
  assert "../shared" not in text
  for link in re.findall(r"\]\(([^)#]+)", text):
    if not link.startswith("http"):
      assert (README.parent / link).exists(), f"README links to a missing file: {link}"


@pytest.mark.slow
def test_readme_examples_run(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # the examples write a model file
  namespace = {}
  blocks = _blocks()
  assert len(blocks) == 3
  for code in blocks:
    exec(compile(code, str(README), "exec"), namespace)
  out = namespace["out"]
  assert bool(out.converged.all())
  assert (tmp_path / "digits_ra.npz").exists()
