"""The package layout: a core with no application imports, applications importing down only."""

import ast
import os
import subprocess
import sys
import textwrap
import warnings

import pytest

import ottsliced

PACKAGE = os.path.dirname(ottsliced.__file__)

# Layers from the bottom up; a module may import its own layer and the layers below it.
LAYERS = {
  "core": 0,
  "data": 1,
  "baselines": 1,
  "pretrained": 1,
  "attention": 1,
  "flow_matching": 2,
  "experiments": 3,
  "cli": 4,
}
APPLICATIONS = [name for name, level in LAYERS.items() if level > 0]


def _layer_of(module: str) -> str:
  """``ottsliced.data.color`` -> ``data``; top-level modules are the core."""
  if module == "ottsliced.__main__":
    return "cli"  # `python -m ottsliced` is the command line's entry point
  parts = module.split(".")
  if len(parts) > 1 and parts[1] in LAYERS:
    return parts[1]
  return "core"


def _modules():
  for root, _, files in os.walk(PACKAGE):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(root, name)
        rel = os.path.relpath(path, os.path.dirname(PACKAGE))[: -len(".py")].replace(os.sep, ".")
        yield rel.removesuffix(".__init__"), path


def _imports(path: str):
  """Every ``ottsliced`` module a file imports, at module level or inside functions."""
  with open(path) as fh:
    tree = ast.parse(fh.read())
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (a.name for a in node.names if a.name.startswith("ottsliced"))
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ottsliced"):
      if node.module == "ottsliced":  # `from ottsliced import data` names a module or a core symbol
        yield from (f"ottsliced.{a.name}" for a in node.names)
      else:
        yield node.module


def test_every_module_imports_down_only():
  seen = 0
  for module, path in _modules():
    if module == "ottsliced":
      continue  # the package's __init__ re-exports the core (checked at run time below)
    here = LAYERS[_layer_of(module)]
    for target in _imports(path):
      there = LAYERS[_layer_of(target)]
      assert there <= here, f"{module} (layer {_layer_of(module)}) imports {target} (layer {_layer_of(target)})"
      seen += 1
  assert seen > 50  # the walk really read the package


def test_core_modules_import_no_application():
  core = [m for m, _ in _modules() if _layer_of(m) == "core"]
  assert {"ottsliced.sliced", "ottsliced.solve", "ottsliced.initializer", "ottsliced.problems"} <= set(core)
  for module, path in _modules():
    if _layer_of(module) != "core":
      continue
    bad = [t for t in _imports(path) if _layer_of(t) != "core"]
    assert not bad, f"core module {module} imports application modules {bad}"


def test_importing_the_core_loads_no_application_module():
  code = textwrap.dedent(
    """
    import sys
    import ottsliced, ottsliced.sliced, ottsliced.solve, ottsliced.sharding, ottsliced.objective
    print(" ".join(sorted(m for m in sys.modules if m.startswith("ottsliced"))))
    """
  )
  loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
  assert "ottsliced.solve" in loaded
  apps = [m for m in loaded if _layer_of(m) in APPLICATIONS]
  assert not apps, f"`import ottsliced` loaded application modules: {apps}"


@pytest.mark.parametrize(
  ("old", "new"),
  [
    ("ottsliced.color", "ottsliced.data.color"),
    ("ottsliced.sphere", "ottsliced.data.sphere"),
    ("ottsliced.bench", "ottsliced.cli.bench"),
    ("ottsliced.demo", "ottsliced.cli.demo"),
  ],
)
def test_old_module_paths_still_import(old, new):
  import importlib

  sys.modules.pop(old, None)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    module = importlib.import_module(old)
  assert module is importlib.import_module(new)
  assert module.__spec__.name == new  # the alias does not rename the real module
  assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)


def test_public_names_kept():
  from ottsliced import baselines, data, flow_matching

  for name in ("fit_ra", "fit_oa", "SlicedInitializer", "amortized_solve", "solve_batch", "ProblemBatch"):
    assert hasattr(ottsliced, name)
  for name in ("load_mnist", "digit_pairs", "image_pairs", "multires_pairs", "grid_points", "pair_indices"):
    assert hasattr(data, name)
  for name in ("fit_meta_ot", "min_swgg_plans", "sorting_applicable", "MetaOTInitializer"):
    assert hasattr(baselines, name)
  for name in flow_matching.__all__:
    assert hasattr(flow_matching, name)
  assert callable(data.color.palette_pairs)
  assert callable(data.sphere.supply_demand_pairs)
