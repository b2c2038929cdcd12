"""Every notebook runs top to bottom with small parameters, so they never rot."""

import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK_DIR = pathlib.Path(__file__).parent.parent / "notebooks"
# flow_matching.ipynb has its own test (tests/flow_notebook_test.py).
OWN_TEST = {"flow_matching.ipynb"}
NOTEBOOKS = sorted(p for p in NOTEBOOK_DIR.glob("*.ipynb") if p.name not in OWN_TEST)
SMALL = {
  "quickstart.ipynb": "NUM_TRAIN, NUM_TEST, OA_STEPS = 8, 6, 50",
  "mnist.ipynb": "NUM_TRAIN, NUM_TEST, OA_STEPS, SIZE = 4, 4, 20, 8",
  "color_transfer.ipynb": "NUM_TRAIN, NUM_TEST, OA_STEPS, NUM_CROPS, NUM_COLORS = 4, 3, 20, 5, 16",
  "sphere.ipynb": "NUM_TRAIN, NUM_TEST, OA_STEPS, NUM_DEMAND = 4, 3, 20, 200",
  "attention.ipynb": "NUM_TRAIN, NUM_TEST, EPOCHS, SEEDS = 128, 64, 1, [0]",
  "srot_gradient_flow.ipynb": "NUM_POINTS, NUM_STEPS, EPSILON = 40, 5, 0.1",
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path):
  nb = nbformat.read(path, as_version=4)
  params = SMALL.get(path.name)
  if params:
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(params.split("=")[0]))
    cell.source = params
  NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
  errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
  assert not errors


def test_there_are_notebooks():
  names = {p.name for p in NOTEBOOKS}
  assert {"quickstart.ipynb", "mnist.ipynb", "color_transfer.ipynb", "sphere.ipynb"} <= names
  assert all(n in SMALL for n in names), f"give every notebook small parameters in SMALL: {sorted(names - set(SMALL))}"
