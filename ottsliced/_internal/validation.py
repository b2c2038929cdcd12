"""Input checks at the Python boundary.

Every public entry point calls these on its inputs before tracing. The checks
that look at values (finiteness, signs, total mass) run only on concrete arrays:
inside ``jax.jit`` the inputs are tracers and only shapes are checked; values
must then be checked by the caller before entering the compiled function.
"""

from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
  "check_epsilon",
  "check_points",
  "check_weights",
  "is_concrete",
]


def is_concrete(*xs: Any) -> bool:
  """Whether every one of ``xs`` holds values: no tracer, no abstract placeholder (e.g. in ``jit(...).lower``)."""
  return all(
    x is None or (isinstance(x, (np.ndarray, jax.Array, np.generic, float, int)) and not isinstance(x, jax.core.Tracer))
    for x in xs
  )


def check_points(name: str, x: Any, ranks: Tuple[int, ...] = (2,)) -> Tuple[int, ...]:
  """Check a point array's rank and values; return its shape."""
  shape = tuple(np.shape(x))
  if len(shape) not in ranks:
    want = " or ".join(f"{r}-D" for r in ranks)
    raise ValueError(f"`{name}` must be a {want} array of points, got shape {shape}.")
  if shape[-1] < 1 or shape[-2] < 1:
    raise ValueError(f"`{name}` must hold at least one point of dimension >= 1, got shape {shape}.")
  if is_concrete(x):
    xv = np.asarray(x)
    if not jnp.issubdtype(xv.dtype, jnp.number):  # jnp: also bfloat16
      raise ValueError(f"`{name}` must be numeric, got dtype {xv.dtype}.")
    if not np.all(np.isfinite(xv)):
      bad = int(np.size(xv) - np.isfinite(xv).sum())
      raise ValueError(f"`{name}` has {bad} non-finite coordinate(s) (NaN or inf); remove or fix those points.")
  return shape


def check_weights(name: str, w: Any, shape: Tuple[int, ...]) -> None:
  """Check that weights have the given shape, are finite, >= 0 and not all 0."""
  wshape = tuple(np.shape(w))
  if wshape != tuple(shape):
    raise ValueError(f"`{name}` must have shape {tuple(shape)} to match the points, got {wshape}.")
  if not is_concrete(w):
    return
  wv = np.asarray(w)
  if not np.all(np.isfinite(wv)):
    raise ValueError(f"`{name}` has non-finite entries (NaN or inf); weights must be finite.")
  if np.any(wv < 0):
    raise ValueError(f"`{name}` has negative entries (min {wv.min():.3g}); weights must be >= 0.")
  total = wv.sum(axis=-1)
  if np.any(total <= 0):
    raise ValueError(
      f"`{name}` has zero total mass{' in some pairs' if wv.ndim > 1 else ''}; "
      "every measure needs at least one positive weight."
    )


def check_epsilon(epsilon: Any, fitted: Optional[float] = None, allow_mismatch: bool = False) -> None:
  """Check that ``epsilon`` is positive and, if given, equal to the fitted one."""
  if not is_concrete(epsilon):
    return
  if epsilon is None:
    raise ValueError("`epsilon` must be given explicitly (a positive float).")
  eps = float(np.asarray(epsilon))
  if not np.isfinite(eps) or eps <= 0:
    raise ValueError(f"`epsilon` must be a positive finite float, got {eps}.")
  if fitted is not None and not allow_mismatch and not np.isclose(eps, fitted, rtol=1e-6, atol=0.0):
    raise ValueError(
      f"the problem's epsilon={eps:g} differs from the epsilon={fitted:g} the model was fitted at; "
      "refit at this epsilon or pass `allow_epsilon_mismatch=True`."
    )
