"""Compatibility shims for the JAX / OTT versions we support."""

import jax.interpreters.batching as _batching

__all__ = ["apply_shims"]


def apply_shims() -> None:
  """Restore ``jax.interpreters.batching.is_vmappable`` for ott-jax 0.6.0.

  JAX 0.9 removed the public alias that OTT 0.6.0 uses in its online
  ``PointCloud`` and ``utils.batched_vmap`` (ott-jax/ott#700, fixed upstream by
  #701, unreleased). The shim is a no-op once either side provides it.
  """
  if hasattr(_batching, "is_vmappable"):
    return
  from jax._src.interpreters import batching as _private  # private API

  _batching.is_vmappable = _private.is_vmappable
