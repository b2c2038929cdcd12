"""The package layout: folders are layers, and every import points down (or stays in its layer)."""

import ast
import os
import subprocess
import sys
import textwrap

import ottsliced

PACKAGE = os.path.dirname(ottsliced.__file__)

# Layers from the bottom up; a module may import its own layer and the layers below it.
LAYERS = {
  "_internal": 0,  # version shims, input checks, model files, checkpoints
  "sliced": 1,  # directions, sorted projections, exact 1-D potentials, bound supports
  "problems": 1,  # batches of problems, how pairs run, sharding
  "initializers": 2,  # the amortized model and its heads
  "solvers": 3,  # sliced Sinkhorn, amortized and batched solves, step selection
  "fitting": 4,  # RA-OT, OA-OT, heads, correction steps
  "data": 5,
  "baselines": 5,
  "pretrained": 5,
  "attention": 5,
  "flow_matching": 6,
  "experiments": 7,
  "cli": 8,
}
CORE = [name for name, level in LAYERS.items() if level <= LAYERS["fitting"]]
APPLICATIONS = [name for name in LAYERS if name not in CORE]


def _layer_of(module: str) -> str:
  """``ottsliced.data.color`` -> ``data``; ``ottsliced.__main__`` is the command line's entry point."""
  if module == "ottsliced.__main__":
    return "cli"
  parts = module.split(".")
  assert len(parts) > 1, f"{module} is in no layer: the package's top level holds no module"
  assert parts[1] in LAYERS, f"{module} is in no layer"
  return parts[1]


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
      if node.module == "ottsliced":  # `from ottsliced import data` names a sub-package
        yield from (f"ottsliced.{a.name}" for a in node.names)
      else:
        yield node.module


def test_the_top_level_holds_only_the_package_entry_points():
  top = sorted(n for n in os.listdir(PACKAGE) if n.endswith(".py"))
  assert top == ["__init__.py", "__main__.py"]
  folders = sorted(n for n in os.listdir(PACKAGE) if os.path.isfile(os.path.join(PACKAGE, n, "__init__.py")))
  assert folders == sorted(LAYERS)


def test_every_module_imports_down_only():
  seen = 0
  for module, path in _modules():
    if module == "ottsliced":
      continue  # the package's __init__ re-exports the core (checked at run time below)
    here = LAYERS[_layer_of(module)]
    for target in _imports(path):
      if target == "ottsliced":
        continue
      there = LAYERS[_layer_of(target)]
      assert there <= here, f"{module} ({_layer_of(module)}) imports {target} ({_layer_of(target)}), a layer above it"
      seen += 1
  assert seen > 50  # the walk really read the package


def test_the_package_imports_only_the_core():
  path = os.path.join(PACKAGE, "__init__.py")
  layers = {_layer_of(t) for t in _imports(path)}
  assert layers, "ottsliced/__init__.py imports nothing of the package"
  assert layers <= set(CORE), f"ottsliced/__init__.py imports {sorted(layers - set(CORE))}"


def test_importing_the_core_loads_no_application_module():
  code = textwrap.dedent(
    """
    import sys
    import ottsliced, ottsliced.sliced, ottsliced.solvers, ottsliced.problems, ottsliced.fitting
    print(" ".join(sorted(m for m in sys.modules if m.startswith("ottsliced"))))
    """
  )
  loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
  assert "ottsliced.solvers.sliced_sinkhorn" in loaded
  apps = [m for m in loaded if m != "ottsliced" and _layer_of(m) in APPLICATIONS]
  assert not apps, f"`import ottsliced` loaded application modules: {apps}"


def test_public_names():
  from ottsliced import baselines, data, fitting, flow_matching, initializers, problems, sliced, solvers

  for name in ottsliced.__all__:
    assert hasattr(ottsliced, name), name
  for package in (sliced, problems, initializers, solvers, fitting, flow_matching):
    for name in package.__all__:
      assert hasattr(package, name), f"{package.__name__}.{name}"
  for name in ("fit_ra", "fit_oa", "SlicedInitializer", "SlicedSinkhorn", "amortized_solve", "solve_batch"):
    assert hasattr(ottsliced, name)
  for name in ("load_mnist", "digit_pairs", "image_pairs", "multires_pairs", "grid_points", "pair_indices"):
    assert hasattr(data, name)
  for name in ("fit_meta_ot", "min_swgg_plans", "sorting_applicable", "MetaOTInitializer"):
    assert hasattr(baselines, name)
  assert callable(data.color.palette_pairs)
  assert callable(data.sphere.supply_demand_pairs)


def test_every_module_declares_all():
  missing = []
  for module, path in _modules():
    if module == "ottsliced.__main__":
      continue
    with open(path) as fh:
      tree = ast.parse(fh.read())
    assigned = (t for node in tree.body if isinstance(node, ast.Assign) for t in node.targets)
    names = {t.id for t in assigned if isinstance(t, ast.Name)}
    if "__all__" not in names and module.rsplit(".", 1)[-1] != "_internal":
      missing.append(module)
  assert not missing, f"modules without __all__: {missing}"
