"""Strict YAML configs: every number an experiment uses is read from its file.

A config file is a mapping with a ``task`` key (which experiment to run) and
the task's settings. Each task declares its settings as frozen dataclasses;
:func:`from_mapping` builds them and refuses unknown keys, missing keys and
values of the wrong type, naming the offending path (``model.ridge``) and the
expected type, so a typo never silently falls back to a default.
"""

import dataclasses
import os
import typing
from typing import Any, Dict, Mapping, Tuple, Type, TypeVar

import yaml

__all__ = ["ConfigError", "from_mapping", "read_yaml", "to_dict"]

T = TypeVar("T")


class ConfigError(ValueError):
  """A config file that does not match its task's schema."""


def _type_name(tp: Any) -> str:
  origin = typing.get_origin(tp)
  if origin is None:
    return getattr(tp, "__name__", str(tp))
  args = ", ".join(_type_name(a) for a in typing.get_args(tp))
  return f"{getattr(origin, '__name__', str(origin))}[{args}]"


def _convert(value: Any, tp: Any, where: str) -> Any:
  origin = typing.get_origin(tp)
  if dataclasses.is_dataclass(tp):
    return from_mapping(tp, value, where)
  if origin is typing.Union:
    args = typing.get_args(tp)
    if value is None and type(None) in args:
      return None
    errors = []
    for arg in args:
      if arg is type(None):
        continue
      try:
        return _convert(value, arg, where)
      except ConfigError as err:
        errors.append(str(err))
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
  if origin is typing.Literal:
    if value not in typing.get_args(tp):
      raise ConfigError(f"{where}: expected one of {list(typing.get_args(tp))}, got {value!r}")
    return value
  if origin in (tuple, Tuple):
    args = typing.get_args(tp)
    if not isinstance(value, (list, tuple)):
      raise ConfigError(f"{where}: expected a list, got {value!r}")
    if len(args) == 2 and args[1] is Ellipsis:
      return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if len(args) != len(value):
      raise ConfigError(f"{where}: expected a list of {len(args)} items, got {len(value)}")
    return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
  if tp is bool:
    if not isinstance(value, bool):
      raise ConfigError(f"{where}: expected true/false, got {value!r}")
    return value
  if tp is int:
    if isinstance(value, bool) or not isinstance(value, int):
      raise ConfigError(f"{where}: expected an integer, got {value!r}")
    return value
  if tp is float:
    # YAML reads 1e-3 as a string (YAML 1.1 needs a dot: 1.0e-3); accept both spellings.
    if isinstance(value, str):
      try:
        value = float(value)
      except ValueError:
        raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ConfigError(f"{where}: expected a number, got {value!r}")
    return float(value)
  if tp is str:
    if not isinstance(value, str):
      raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value
  raise TypeError(f"unsupported config field type {tp!r} at {where}")  # a schema bug, not a user error


def from_mapping(cls: Type[T], mapping: Any, where: str = "") -> T:
  """Build dataclass ``cls`` from ``mapping``, checking keys and types recursively.

  Args:
    cls: a dataclass whose fields are ``int``, ``float``, ``str``, ``bool``,
      ``Literal``, ``Optional``, ``Tuple[..]`` or nested dataclasses.
    mapping: the parsed YAML (a dict).
    where: path prefix for error messages.

  Returns:
    An instance of ``cls``; fields with dataclass defaults may be omitted.

  Raises:
    ConfigError: unknown or missing keys, or a value of the wrong type; then
      ``__post_init__`` checks of ``cls`` (e.g. ranges) also raise ConfigError.
  """
  label = where or cls.__name__
  if not isinstance(mapping, Mapping):
    raise ConfigError(f"{label}: expected a mapping of settings, got {mapping!r}")
  hints = typing.get_type_hints(cls)
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(mapping) - set(fields))
  if unknown:
    raise ConfigError(f"{label}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
  kwargs: Dict[str, Any] = {}
  for name, field in fields.items():
    path = f"{where}.{name}" if where else name
    if name not in mapping:
      if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
        raise ConfigError(f"{path}: missing (expected {_type_name(hints[name])})")
      continue
    kwargs[name] = _convert(mapping[name], hints[name], path)
  try:
    return cls(**kwargs)
  except (ValueError, TypeError) as err:
    raise ConfigError(f"{label}: {err}") from None


def to_dict(config: Any) -> Dict[str, Any]:
  """A dataclass config as plain JSON-serialisable data (tuples become lists)."""

  def plain(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
      return [plain(u) for u in v]
    if isinstance(v, dict):
      return {k: plain(u) for k, u in v.items()}
    return v

  return plain(dataclasses.asdict(config))


def read_yaml(path: str) -> Dict[str, Any]:
  """Parse a YAML config file into a dict with a ``task`` key.

  Raises:
    FileNotFoundError: no file at ``path``.
    ConfigError: not YAML, not a mapping, or no ``task`` key.
  """
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no config file at {path!r}; the bundled ones are in configs/.")
  with open(path) as fh:
    try:
      data = yaml.safe_load(fh)
    except yaml.YAMLError as err:
      raise ConfigError(f"{path}: not valid YAML: {err}") from None
  if not isinstance(data, dict) or "task" not in data:
    raise ConfigError(f"{path}: expected a mapping with a `task` key, got {type(data).__name__}")
  return data
