"""Core benchmark: sliced features and amortized plans against Sinkhorn iterations.

``ottsliced bench core`` runs it. All timings are medians over repeats of
jit-compiled, warmed-up functions with ``block_until_ready``, measured side by
side in one process.
"""

from typing import Any, Dict, List

import jax
import numpy as np
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn

from ottsliced import sliced
from ottsliced.data import digit_pairs
from ottsliced.experiments.timing import device_name, median_seconds
from ottsliced.initializer import SlicedInitializer
from ottsliced.problems import ProblemBatch, make_geometry
from ottsliced.regression import fit_ra
from ottsliced.solve import _predict_and_solve, num_iterations

__all__ = ["core_benchmark", "format_core"]


def _run_core(batch: ProblemBatch, model: SlicedInitializer, repeats: int, threshold: float) -> Dict[str, float]:
  theta, eps = model.theta, batch.epsilon

  sort_support = jax.jit(sliced.sort_projections)

  @jax.jit
  def features(px, py, a, b):
    # Shared-support fast path: the grid's projections are sorted once.
    fn = lambda a, b: model.features(px, py, a, b)  # noqa: E731
    return jax.vmap(fn)(a, b)

  def _one_plan(x, y, phi, psi, a, b, model):
    # Exactly what amortized_solve_batch does after the features.
    prob = linear_problem.LinearProblem(make_geometry(x, y, eps), a, b)
    return _predict_and_solve(prob, model, phi, psi, threshold, 0, True, None, 1)[0].potentials

  @jax.jit
  def predict(batch, phi, psi, model):
    return jax.vmap(_one_plan, in_axes=(None, None, 0, 0, 0, 0, None))(
      batch.x, batch.y, phi, psi, batch.a, batch.b, model
    )

  def sinkhorn_fn(initializer, **kw):
    solver = sinkhorn.Sinkhorn(initializer=initializer, **kw)

    @jax.jit
    def run(batch):
      def one(a, b):
        return solver(linear_problem.LinearProblem(make_geometry(batch.x, batch.y, eps), a, b))

      return jax.vmap(one)(batch.a, batch.b)

    return run

  k_fixed = 20
  fixed = sinkhorn_fn(None, min_iterations=k_fixed, max_iterations=k_fixed, inner_iterations=1, threshold=-1.0)
  to_tol = sinkhorn_fn(None, threshold=threshold, inner_iterations=1, max_iterations=10_000)
  warm = sinkhorn_fn(model, threshold=threshold, inner_iterations=1, max_iterations=10_000)

  # Calls whose results are used below also serve as the warm-up of their timing.
  px, py = jax.block_until_ready((sort_support(batch.x, theta), sort_support(batch.y, theta)))
  t_sort = median_seconds(lambda: sort_support(batch.x, theta), repeats, warmup=False)
  phi, psi = jax.block_until_ready(features(px, py, batch.a, batch.b))
  t_feat = median_seconds(lambda: features(px, py, batch.a, batch.b), repeats, warmup=False)
  t_pred = median_seconds(lambda: predict(batch, phi, psi, model), repeats)
  t_iter = median_seconds(lambda: fixed(batch), repeats) / k_fixed
  slow = max(1, repeats // 2)
  out_zero, out_warm = jax.block_until_ready((to_tol(batch), warm(batch)))
  t_zero = median_seconds(lambda: to_tol(batch), slow, warmup=False)
  t_warm = median_seconds(lambda: warm(batch), slow, warmup=False)
  it_zero, it_warm = np.asarray(num_iterations(out_zero)), np.asarray(num_iterations(out_warm))
  return {
    "batch": batch.num_pairs,
    "sort_support_ms": 1e3 * t_sort,
    "features_ms": 1e3 * t_feat,
    "predict_ctransforms_ms": 1e3 * t_pred,
    "sinkhorn_iteration_ms": 1e3 * t_iter,
    "sinkhorn_zeros_ms": 1e3 * t_zero,
    "sinkhorn_ra_ms": 1e3 * t_warm,
    "iters_zeros_mean": float(it_zero.mean()),
    "iters_zeros_max": int(it_zero.max()),
    "iters_ra_mean": float(it_warm.mean()),
    "iters_ra_max": int(it_warm.max()),
    "amortized_in_iterations": (t_feat + t_pred) / t_iter,
    "amortized_vs_sinkhorn_zeros": (t_feat + t_pred) / t_zero,
  }


def core_benchmark(
  batch_sizes: List[int], *, size: int = 28, repeats: int = 5, threshold: float = 1e-2, train_pairs: int = 50
) -> Dict[str, Any]:
  """Time features, prediction + c-transforms and Sinkhorn on digit-grid pairs.

  Pairs are scikit-learn digits resampled to ``size x size`` (784 atoms at
  28), epsilon 1e-2, an RA-OT model with L = 100 fitted on ``train_pairs``.
  """
  train = digit_pairs(train_pairs, size=size, seed=0)
  model = fit_ra(train, progress=False)
  rows = []
  for bs in batch_sizes:
    batch = digit_pairs(bs, size=size, seed=1)
    rows.append(_run_core(batch, model, repeats, threshold))
  return {
    "device": device_name(),
    "jax": jax.__version__,
    "atoms": size * size,
    "epsilon": 1e-2,
    "threshold": threshold,
    "num_projections": model.num_projections,
    "rows": rows,
  }


def format_core(result: Dict[str, Any]) -> str:
  """Markdown table of :func:`core_benchmark`'s result."""
  lines = [
    f"device: {result['device']}, jax {result['jax']}, n = m = {result['atoms']}, eps = {result['epsilon']:g}, "
    f"L = {result['num_projections']}, Sinkhorn to marginal error {result['threshold']:g} (inner_iterations=1)",
    "",
    "Support sorted once per grid (one-off, not per pair): {:.2f} ms.".format(result["rows"][0]["sort_support_ms"]),
    "",
    "| batch | features ms | predict + 2 c-transforms ms | 1 Sinkhorn iteration ms | features + predict "
    "in iterations | Sinkhorn from zeros ms (iters mean/max) | Sinkhorn from RA-OT ms (iters mean/max) "
    "| amortized / Sinkhorn zeros |",
    "|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in result["rows"]:
    lines.append(
      f"| {r['batch']} | {r['features_ms']:.3f} | {r['predict_ctransforms_ms']:.3f} | "
      f"{r['sinkhorn_iteration_ms']:.3f} | {r['amortized_in_iterations']:.2f} | "
      f"{r['sinkhorn_zeros_ms']:.2f} ({r['iters_zeros_mean']:.1f}/{r['iters_zeros_max']}) | "
      f"{r['sinkhorn_ra_ms']:.2f} ({r['iters_ra_mean']:.1f}/{r['iters_ra_max']}) | "
      f"{r['amortized_vs_sinkhorn_zeros']:.3f} |"
    )
  return "\n".join(lines)
