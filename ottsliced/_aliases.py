"""Old module paths kept working after the package was laid out as core + applications.

``import ottsliced.color`` (now :mod:`ottsliced.data.color`), ``ottsliced.sphere``
(:mod:`ottsliced.data.sphere`), ``ottsliced.bench`` and ``ottsliced.demo``
(:mod:`ottsliced.cli.bench`, :mod:`ottsliced.cli.demo`) resolve to the new
modules, with a ``DeprecationWarning`` naming the new path. The new module is
only imported when the old name is, so the core still loads none of them.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import Dict

__all__ = ["MOVED", "install"]

MOVED: Dict[str, str] = {
  "ottsliced.color": "ottsliced.data.color",
  "ottsliced.sphere": "ottsliced.data.sphere",
  "ottsliced.bench": "ottsliced.cli.bench",
  "ottsliced.demo": "ottsliced.cli.demo",
}


class _AliasLoader(importlib.abc.Loader):
  def __init__(self, target: str):
    self.target = target

  def create_module(self, spec):
    warnings.warn(f"`{spec.name}` moved to `{self.target}`; import it from there.", DeprecationWarning, stacklevel=2)
    module = importlib.import_module(self.target)
    self.spec = module.__spec__
    return module

  def exec_module(self, module):
    # Already executed; importlib set __spec__ to the alias's, put the real one back.
    module.__spec__ = self.spec


class _AliasFinder(importlib.abc.MetaPathFinder):
  def find_spec(self, fullname, path=None, target=None):
    if fullname not in MOVED:
      return None
    return importlib.util.spec_from_loader(fullname, _AliasLoader(MOVED[fullname]))


def install() -> None:
  """Put the alias finder on ``sys.meta_path`` (once)."""
  if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
    sys.meta_path.append(_AliasFinder())
