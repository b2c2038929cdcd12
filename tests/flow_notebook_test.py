"""The flow-matching notebook runs top to bottom with small parameters and shows its figures."""

import pathlib

import nbformat
from nbclient import NotebookClient

NOTEBOOK = pathlib.Path(__file__).parent.parent / "notebooks" / "flow_matching.ipynb"
SMALL = "STEPS, BATCH, NUM_BATCHES, OA_STEPS, NUM_SAMPLES = 60, 64, 3, 50, 300"


def test_flow_notebook_runs(tmp_path):
  nb = nbformat.read(NOTEBOOK, as_version=4)
  cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(SMALL.split("=")[0]))
  cell.source = SMALL
  NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  assert not [o for o in outputs if o.output_type == "error"]
  images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
  assert len(images) == 2
