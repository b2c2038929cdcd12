"""Training checkpoints: parameters, optimizer state and loss history in a checksummed ``.npz``."""

from typing import Any, Dict, List, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ottsliced._internal import npz

__all__ = ["load_checkpoint", "save_checkpoint"]

_VERSION = 2  # 2: parameters stored as a pytree's leaves (1 stored fit_oa's alpha only)


def save_checkpoint(
  path: str, fmt: str, config: Dict[str, Any], params: Any, opt_state: Any, losses: List[np.ndarray], done: int
) -> None:
  """Write the state of a run after ``done`` steps (atomic, checksummed); ``config`` identifies the run."""
  arrays = {"losses": np.concatenate(losses) if losses else np.zeros(0)}
  arrays.update({f"param_{k:03d}": np.asarray(v) for k, v in enumerate(jax.tree_util.tree_leaves(params))})
  arrays.update({f"opt_{k:03d}": np.asarray(v) for k, v in enumerate(jax.tree_util.tree_leaves(opt_state))})
  npz.save_npz(path, arrays, {"format": fmt, "format_version": _VERSION, "step": int(done), **config})


def _restore(contents: Dict[str, np.ndarray], prefix: str, template: Any, path: str, what: str) -> Any:
  leaves, treedef = jax.tree_util.tree_flatten(template)
  saved = [contents[f"{prefix}{k:03d}"] for k in range(len(leaves)) if f"{prefix}{k:03d}" in contents]
  extra = f"{prefix}{len(leaves):03d}" in contents
  if extra or len(saved) != len(leaves) or any(np.shape(s) != np.shape(t) for s, t in zip(saved, leaves)):
    raise ValueError(f"checkpoint {path!r} holds another {what}; resume with the same {what}.")
  return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(s, t.dtype) for s, t in zip(saved, leaves)])


def load_checkpoint(
  path: str, fmt: str, config: Dict[str, Any], params_template: Any, opt_state_template: Any
) -> Tuple[Any, Any, List[np.ndarray], int]:
  """``(params, opt_state, losses, done)`` of a run written by :func:`save_checkpoint` with the same ``config``.

  Raises:
    ValueError: another format or settings, another model or optimizer, a corrupted file.
  """
  contents, meta = npz.load_npz(path, fmt, _VERSION)
  differ = [k for k, v in config.items() if meta.get(k) != v]
  if differ:
    raise ValueError(
      f"checkpoint {path!r} was written by a run with other settings ({', '.join(differ)}); "
      "resume with the same problems and arguments, or remove the checkpoint."
    )
  params = _restore(contents, "param_", params_template, path, "model")
  opt_state = _restore(contents, "opt_", opt_state_template, path, "optimizer")
  return params, opt_state, [contents["losses"]], int(meta["step"])
