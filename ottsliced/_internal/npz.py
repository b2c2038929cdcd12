"""Portable, atomic, checksummed ``.npz`` files (arrays + JSON metadata)."""

import hashlib
import json
import os
import tempfile
import zipfile
from typing import Any, Dict, Tuple

import numpy as np

__all__ = ["checksum", "load_npz", "save_npz"]


def checksum(arrays: Dict[str, np.ndarray]) -> str:
  """SHA-256 over names, dtypes, shapes and bytes of ``arrays``."""
  h = hashlib.sha256()
  for name in sorted(arrays):
    arr = np.ascontiguousarray(arrays[name])
    h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
    h.update(arr.tobytes())
  return h.hexdigest()


def save_npz(path: str, arrays: Dict[str, np.ndarray], meta: Dict[str, Any]) -> None:
  """Write ``arrays`` and ``meta`` (plus a checksum) to a temporary file, then rename it."""
  meta = dict(meta, checksum=checksum(arrays))
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as fh:
      np.savez(fh, metadata=np.array(json.dumps(meta)), **arrays)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def load_npz(path: str, fmt: str, version: int) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
  """Read a file written by :func:`save_npz`, refusing anything suspicious.

  Raises:
    FileNotFoundError: no file at ``path``.
    ValueError: unreadable (truncated, not a zip), no or corrupted metadata,
      another format, a version newer than ``version``, checksum mismatch.
  """
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"no file at {path!r}.")
  try:
    with np.load(path, allow_pickle=False) as data:
      contents = {k: data[k] for k in data.files}
  except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
    raise ValueError(f"{path!r} is not a readable {fmt} file (truncated or corrupted?): {err}") from err
  if "metadata" not in contents:
    raise ValueError(f"{path!r} has no ottsliced metadata; it is not a {fmt} file.")
  try:
    meta = json.loads(str(contents.pop("metadata")))
  except json.JSONDecodeError as err:
    raise ValueError(f"{path!r} has corrupted metadata: {err}") from err
  if meta.get("format") != fmt:
    raise ValueError(f"{path!r} is not a {fmt} file (format={meta.get('format')!r}).")
  found = meta.get("format_version")
  if not isinstance(found, int) or found > version:
    raise ValueError(
      f"{path!r} has format version {found!r}, newer than this ottsliced reads ({version}); upgrade ottsliced."
    )
  if checksum(contents) != meta.get("checksum"):
    raise ValueError(f"{path!r} failed its checksum: the arrays are corrupted.")
  return contents, meta
