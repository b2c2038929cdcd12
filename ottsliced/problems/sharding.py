"""Data parallelism over pairs: a batch of problems split across devices.

Every pair of a :class:`~ottsliced.problems.batch.ProblemBatch` is an independent
problem, so a batch is split along its pair axis over a 1-D device mesh (axis
``"pairs"``) and the vmapped, jit-compiled solvers run unchanged: ``jax.jit``
follows the input shardings and XLA inserts the few collectives needed (e.g.
the "is any pair still iterating" test of a vmapped ``while_loop``). No
communication is written by hand.
"""

import functools
from typing import Any, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from ottsliced.problems.batch import ProblemBatch

__all__ = [
  "PAIR_AXIS",
  "default_mesh",
  "gather_to_host",
  "pad_pairs",
  "pair_mesh",
  "replicate",
  "shard_batch",
  "trim_pairs",
]

PAIR_AXIS = "pairs"


def pair_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-D mesh with axis ``"pairs"``.

  Args:
    devices: the devices to split pairs over; ``None``: ``jax.devices()``,
      every device of every process (all GPUs of a host, all chips of a pod).

  Returns:
    A :class:`jax.sharding.Mesh` of shape ``(len(devices),)``.
  """
  devices = jax.devices() if devices is None else list(devices)
  if not devices:
    raise ValueError("`devices` is empty: give at least one device.")
  return Mesh(np.asarray(devices, dtype=object), (PAIR_AXIS,))


def default_mesh(mesh: Optional[Mesh] = None, batch: Any = None) -> Optional[Mesh]:
  """The mesh a solver uses for ``batch``.

  Args:
    mesh: an explicit mesh (checked and returned), or ``None``.
    batch: the solver's input pytree, or ``None``.

  Returns:
    ``mesh`` if given; else ``None`` (the plain single-device path: no
    placement, no padding) when there is one device or when ``batch`` holds
    tracers (a call inside the caller's own ``jax.jit``, whose placement is
    the caller's); else :func:`pair_mesh` over all devices.
  """
  if mesh is not None:
    if not isinstance(mesh, Mesh):
      raise ValueError(f"`mesh` must be a jax.sharding.Mesh or None, got {type(mesh).__name__}.")
    if PAIR_AXIS not in mesh.axis_names or mesh.devices.ndim != 1:
      raise ValueError(f"`mesh` must be 1-D with axis {PAIR_AXIS!r} (see pair_mesh), got axes {mesh.axis_names}.")
    return mesh
  if len(jax.devices()) == 1 or any(isinstance(z, jax.core.Tracer) for z in jax.tree_util.tree_leaves(batch)):
    return None
  return pair_mesh()


def pad_pairs(batch: ProblemBatch, multiple: int) -> ProblemBatch:
  """``batch`` with its last pair repeated until the number of pairs is a multiple of ``multiple``.

  Repeating a real pair (rather than adding zero-weight pairs, which are not
  valid problems) keeps every padded solve well defined; :func:`trim_pairs`
  drops the copies from the outputs. Shared (2-D) supports are unchanged.

  Args:
    batch: ``B`` pairs.
    multiple: a positive int, e.g. the number of devices.

  Returns:
    A batch of ``ceil(B / multiple) * multiple`` pairs (``batch`` itself when
    no padding is needed).
  """
  if int(multiple) < 1:
    raise ValueError(f"`multiple` must be a positive int, got {multiple}.")
  extra = -batch.num_pairs % int(multiple)
  if not extra:
    return batch

  def pad(z: jax.Array, per_pair: bool) -> jax.Array:
    if not per_pair:
      return z
    return jnp.concatenate([z, jnp.repeat(z[-1:], extra, axis=0)], axis=0)

  per_pair = (not batch.shared_x, not batch.shared_y, True, True)
  children, treedef = jax.tree_util.tree_flatten(batch)
  return jax.tree_util.tree_unflatten(treedef, [pad(z, p) for z, p in zip(children, per_pair)])


def shard_batch(batch: ProblemBatch, mesh: Mesh) -> Tuple[ProblemBatch, int]:
  """Pad ``batch`` to a multiple of the mesh size and split its pairs over the mesh.

  Per-pair arrays (``a [B, n]``, ``b [B, m]``, ``x [B, n, d]``, ``y [B, m, d]``)
  are placed with ``NamedSharding(mesh, P("pairs"))``: device ``k`` holds
  pairs ``k B' / K .. (k + 1) B' / K - 1`` of the ``B'`` padded pairs. Shared
  supports (2-D ``x`` or ``y``) are replicated on every device (``P()``).

  Args:
    batch: ``B`` pairs (host arrays, single-device arrays, or global arrays
      already laid out on ``mesh``: then this is free).
    mesh: a 1-D mesh with axis ``"pairs"`` (:func:`pair_mesh`).

  Returns:
    ``(sharded, B)``: the padded, placed batch and the number of real pairs,
    for :func:`trim_pairs`.
  """
  num = batch.num_pairs
  padded = pad_pairs(batch, mesh.size)
  split, rep = NamedSharding(mesh, P(PAIR_AXIS)), NamedSharding(mesh, P())
  shardings = (rep if batch.shared_x else split, rep if batch.shared_y else split, split, split)
  children, treedef = jax.tree_util.tree_flatten(padded)
  placed = [jax.device_put(z, s) for z, s in zip(children, shardings)]
  return jax.tree_util.tree_unflatten(treedef, placed), num


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Every array leaf of ``tree`` copied to every device of ``mesh`` (model parameters, thresholds)."""
  rep = NamedSharding(mesh, P())
  return jax.tree_util.tree_map(lambda z: jax.device_put(z, rep) if isinstance(z, (jax.Array, np.ndarray)) else z, tree)


def trim_pairs(tree: Any, num_pairs: int) -> Any:
  """Keep the first ``num_pairs`` entries of every array leaf of ``tree`` (drop the padding).

  Every array leaf with at least one axis is taken to have the pairs on its
  leading axis, as the outputs of a ``vmap`` over pairs do; scalars and
  non-array leaves pass through. Leaves of exactly ``num_pairs`` are returned
  as they are (no copy, sharding kept).

  Args:
    tree: a pytree of ``[B', ...]`` arrays, e.g. a batched ``SinkhornOutput``.
    num_pairs: ``B <= B'``, as returned by :func:`shard_batch`.

  Returns:
    The same pytree with ``[B, ...]`` leaves.
  """
  leaves, treedef = jax.tree_util.tree_flatten(tree)
  cut = [isinstance(z, (jax.Array, np.ndarray)) and np.ndim(z) > 0 and z.shape[0] != num_pairs for z in leaves]
  for z, c in zip(leaves, cut):
    if c and z.shape[0] < num_pairs:
      raise ValueError(f"a leaf of shape {z.shape} has fewer than num_pairs={num_pairs} entries.")
  if any(cut):
    # One compiled program for the whole tree (not one per leaf).
    trimmed = iter(_slice_leading([z for z, c in zip(leaves, cut) if c], num_pairs))
    leaves = [next(trimmed) if c else z for z, c in zip(leaves, cut)]
  return jax.tree_util.tree_unflatten(treedef, leaves)


@functools.partial(jax.jit, static_argnums=1)
def _slice_leading(leaves: List[jax.Array], num: int) -> List[jax.Array]:
  return [z[:num] for z in leaves]


def gather_to_host(tree: Any) -> Any:
  """Every array leaf of ``tree`` as a NumPy array holding its global value.

  Works for arrays split over the devices of several processes (multi-host),
  where ``np.asarray`` alone fails: those are gathered with
  ``process_allgather``, a collective, so every process must call this with
  the same tree. Arrays a process can read whole (on its own devices, or
  replicated) are read directly.
  """
  from jax.experimental import multihost_utils

  def get(z: Any) -> Any:
    if isinstance(z, jax.Array) and not (z.is_fully_addressable or z.is_fully_replicated):
      return np.asarray(multihost_utils.process_allgather(z, tiled=True))
    return np.asarray(z)

  return jax.tree_util.tree_map(get, tree)
