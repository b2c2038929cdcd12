"""Fitted models shipped with the package, loaded by name: warm-start with no fitting.

Each model is a :class:`~ottsliced.SlicedInitializer` fitted by the task
protocol of ``configs/<task>.yaml`` on that task's training pairs (the same
model the task benchmark fits), saved with :meth:`~ottsliced.SlicedInitializer.save`
(format version and checksum) under ``ottsliced/pretrained/models/``:

* ``"mnist-ra"`` / ``"mnist-oa"``: 28x28 MNIST digit measures on the unit
  square grid, epsilon 1e-2, L = 16 (RA-OT / OA-OT).
* ``"color-ra"`` / ``"color-oa"``: RGB colour palettes in ``[0, 1]^3``,
  epsilon 5e-3.
* ``"mnist-ra-corrected"``: ``"mnist-ra"`` with a correction head, the
  coefficients ``[2, 16]`` of two sliced corrections fitted after its start
  on the same training pairs (``corrections``, applied by
  :meth:`~ottsliced.SlicedSinkhorn.from_initializer`).

A model predicts for any number of atoms; its epsilon is the one it was fitted
at (a problem at another epsilon is refused unless
``allow_epsilon_mismatch=True`` is passed). Regenerate the files with
``python -m ottsliced.experiments.shipped_models`` (from the repository root).

Example::

  model = ottsliced.pretrained.load_pretrained("mnist-ra").bind(grid)
  out = ott.solvers.linear.sinkhorn.Sinkhorn(initializer=model)(prob)
  corrected = ottsliced.pretrained.load_pretrained("mnist-ra-corrected").bind(grid)
  out = ottsliced.SlicedSinkhorn.from_initializer(corrected)(prob)
"""

from importlib import resources
from typing import Any, Dict, List

from ottsliced.initializers.sliced_initializer import SlicedInitializer

__all__ = ["available", "load_pretrained"]

_DIR = "models"


def _names() -> List[str]:
  entries = resources.files(__name__).joinpath(_DIR).iterdir()
  return sorted(e.name[: -len(".npz")] for e in entries if e.name.endswith(".npz"))


def available() -> Dict[str, Dict[str, Any]]:
  """The shipped models: ``name -> {"epsilon", "dim", "num_projections", "method", "summary"}`` (from their files)."""
  out = {}
  for name in _names():
    model = _load(name)
    out[name] = {
      "epsilon": model.epsilon,
      "dim": model.dim,
      "num_projections": model.num_projections,
      "method": model.method,
      "summary": dict(model.summary),
    }
  return out


def _load(name: str, **overrides: Any) -> SlicedInitializer:
  entry = resources.files(__name__).joinpath(_DIR, f"{name}.npz")
  with resources.as_file(entry) as path:
    return SlicedInitializer.load(str(path), **overrides)


def load_pretrained(name: str, **overrides: Any) -> SlicedInitializer:
  """The shipped model ``name`` (see :func:`available`).

  Args:
    name: e.g. ``"mnist-ra"``.
    **overrides: static fields replaced on load (e.g. ``allow_epsilon_mismatch=True``).

  Raises:
    ValueError: unknown name (the message lists the shipped ones), or a
      corrupted file (checksum mismatch).
  """
  names = _names()
  if name not in names:
    raise ValueError(f"no shipped model {name!r}; shipped: {names}.")
  return _load(name, **overrides)
