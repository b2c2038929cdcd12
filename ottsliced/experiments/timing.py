"""Wall-time measurement shared by every benchmark: medians of jit-compiled, synchronised calls."""

import platform
import statistics
import time
from typing import Any, Callable

import jax

__all__ = ["device_name", "median_seconds"]


def median_seconds(fn: Callable[[], Any], repeats: int, warmup: bool = True) -> float:
  """Median wall time of ``fn()`` over ``repeats`` calls.

  With ``warmup`` one untimed call comes first (it also compiles); pass
  ``warmup=False`` when the caller has just called ``fn()`` for its result.
  """
  if warmup:
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def device_name() -> str:
  """The first JAX device and the host processor, e.g. ``cpu:cpu (x86_64)``."""
  dev = jax.devices()[0]
  return f"{dev.platform}:{getattr(dev, 'device_kind', '')} ({platform.processor() or platform.machine()})"
