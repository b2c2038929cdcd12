"""Argument types shared by the commands (below both ``bench`` and ``demo``)."""

import argparse

__all__ = ["positive_int"]


def positive_int(text: str) -> int:
  """``argparse`` type: an integer >= 1, with a message that names the fix."""
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"expected a positive integer (>= 1), got {value}")
  return value
