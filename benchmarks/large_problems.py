"""Large problems in bounded memory: amortized plans with online geometries.

For ``n = m`` in ``--sizes`` and ``d`` in ``--dims``: one RA-OT model per ``d``
is fitted on small dense training pairs (``--train-size`` atoms) and applied,
unchanged, to a test pair of ``n`` atoms from the same distribution, on an
online ``PointCloud(batch_size=--batch-size)`` that never stores the
``[n, m]`` cost matrix. The default block size (``auto``) is the largest power
of two whose block of costs, ``batch_size x n`` float32, fits in 8 MiB (128 rows
at ``n = 10^4``, 16 at ``10^5``): on the 2-core CPU a pass at ``n = 10^5`` ran
about 3.7x faster with 16-row blocks than with 256-row ones (docs/scaling.md).
Each ``(n, d)`` runs in a fresh subprocess so that its peak memory is its own.

Measured on the 2-core CPU: ``docs/scaling.md``, section "Large problems".

Data (unit cube): every measure is a 4-component Gaussian mixture with means
uniform in ``[0.25, 0.75]^d``, standard deviation 0.08 and random positive
weights ``U(0.5, 1.5)`` normalised; source and target are independent draws
(new means per measure). Cost ``|x - y|^2``. ``epsilon = --eps-factor`` times
the mean cost ``sum_ij a_i b_j |x_i - y_j|^2`` of the training pairs (exact,
from first and second moments), two significant digits, one value per ``d``.

Measured (float32, ``block_until_ready``, after compiling ahead of time and,
with ``--repeats`` > 1, one warm-up call; median of ``--repeats`` calls):

- features: the model's prediction ``f = Phi alpha + eps log a`` from the points
  (``L`` projections sorted, the sliced features the model needs, one matmul);
- c-transform: one online ``update_potential`` (one pass over the ``n m`` costs);
- amortized plan: ``ots.amortized_solve`` (features, prediction, ``g = T_b f``,
  ``f = T_a g``, the L1 marginal error and the regularised cost);
- L1 marginal error ``||P1 - a||_1 + ||P^T1 - b||_1`` of that plan (rows are exact)
  and, for ``n`` in ``--baseline-sizes``, in brackets, the same with ``alpha = 0``
  (``f = eps log a``: one Sinkhorn iteration without the sliced prediction);
- memory: on CPU, over the timed amortized calls, the peak RSS of the
  subprocess (``VmHWM``, reset through ``/proc/self/clear_refs`` after
  compiling) minus its RSS just before them; and over the whole run
  (compilation, warm-ups and Sinkhorn included) the peak RSS minus the RSS
  after importing jax and building the inputs. ``ru_maxrss`` is not used: a
  child started by ``subprocess`` inherits its parent's peak in it (it read 0 MB
  above the baseline at ``n = 10^4``, under the parent's fitting peak). On GPU
  ``memory_stats()["peak_bytes_in_use"]`` minus the bytes in use before. Also
  XLA's compiled temporary buffer size of the amortized solve, and the size a
  dense float32 ``n x m`` matrix would take;
- for ``n`` in ``--sinkhorn-sizes``: OTT Sinkhorn iterations (``inner_iterations=1``,
  OTT's criterion: L1 error of the column marginal) to ``--sinkhorn-threshold`` from
  zeros and from the RA-OT warm start, capped at ``--sinkhorn-max-iterations``
  (one run each after compilation; ``>cap`` when not reached).

Run: ``python benchmarks/large_problems.py`` (all sizes and dims), or a quick
``python benchmarks/large_problems.py --sizes 10000 --dims 2``.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

__all__ = ["auto_batch_size", "epsilon_for", "main", "markdown", "mean_cost", "mixture", "pair"]

_CHILD_FLAG = "--_child"
_COMPONENTS, _STD = 4, 0.08


# ------------------------------------------------------------------ data
def mixture(rs: np.random.Generator, n: int, d: int) -> Tuple[np.ndarray, np.ndarray]:
  """One measure: points ``[n, d]`` (float32) of a Gaussian mixture in the unit cube, weights ``[n]`` (sum 1)."""
  means = rs.uniform(0.25, 0.75, size=(_COMPONENTS, d))
  x = means[rs.integers(_COMPONENTS, size=n)] + _STD * rs.normal(size=(n, d))
  w = rs.uniform(0.5, 1.5, size=n)
  return x.astype(np.float32), (w / w.sum()).astype(np.float32)


def pair(seed: int, n: int, d: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """``(x [n, d], y [n, d], a [n], b [n])`` of one seeded pair."""
  rs = np.random.default_rng(seed)
  (x, a), (y, b) = mixture(rs, n, d), mixture(rs, n, d)
  return x, y, a, b


def mean_cost(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
  """``sum_ij a_i b_j |x_i - y_j|^2`` from moments, ``O((n + m) d)``."""
  x, y, a, b = (np.asarray(v, np.float64) for v in (x, y, a, b))
  a, b = a / a.sum(), b / b.sum()
  return float(a @ (x * x).sum(1) + b @ (y * y).sum(1) - 2.0 * (a @ x) @ (b @ y))


def epsilon_for(pairs: Sequence[Tuple[np.ndarray, ...]], factor: float) -> float:
  """``factor`` times the mean cost of ``pairs``, rounded to two significant digits."""
  return float(f"{factor * np.mean([mean_cost(*p) for p in pairs]):.2g}")


def _train_seed(d: int, k: int) -> int:
  return 1_000_000 * d + k


def _test_seed(d: int, n: int) -> int:
  return 7_000_000 + 1000 * d + n % 997


# ------------------------------------------------------------------ child: one (n, d)
def _rss_kb() -> Tuple[int, int]:
  """``(VmRSS, VmHWM)`` of this process in KiB (Linux), ``(0, 0)`` elsewhere."""
  vals = {"VmRSS": 0, "VmHWM": 0}
  try:
    with open("/proc/self/status") as fh:
      for line in fh:
        key = line.split(":")[0]
        if key in vals:
          vals[key] = int(line.split()[1])
  except OSError:
    pass
  return vals["VmRSS"], vals["VmHWM"]


def _reset_peak_rss() -> bool:
  """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); ``False`` if not possible."""
  try:
    with open("/proc/self/clear_refs", "w") as fh:
      fh.write("5")
  except OSError:
    return False
  return True


def auto_batch_size(n: int, block_bytes: int = 8 * 2**20) -> int:
  """Largest power of two ``k`` in ``[8, 1024]`` with ``k * n * 4 <= block_bytes`` (a cache-sized cost block)."""
  k = 8
  while k < 1024 and 2 * k * n * 4 <= block_bytes:
    k *= 2
  return k


def _timed(fn: Callable[[], Any], repeats: int, warmup: bool) -> Tuple[float, Any]:
  import jax

  if warmup:
    jax.block_until_ready(fn())
  times, out = [], None
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return statistics.median(times), out


def _child(cfg: Dict[str, Any]) -> Dict[str, Any]:
  import jax
  import jax.numpy as jnp
  from ott.geometry import pointcloud
  from ott.problems.linear import linear_problem

  import ottsliced as ots

  n, d, eps, block = cfg["n"], cfg["d"], cfg["epsilon"], cfg["batch_size"]
  x, y, a, b = (jnp.asarray(v) for v in pair(_test_seed(d, n), n, d))
  model = ots.SlicedInitializer.load(cfg["model_path"])
  prob = linear_problem.LinearProblem(pointcloud.PointCloud(x, y, epsilon=eps, batch_size=block), a, b)
  jax.block_until_ready((x, y, a, b, model.alpha))
  dev = jax.devices()[0]
  gpu_stats = dev.memory_stats() if dev.platform != "cpu" else None
  base_rss_mb = _rss_kb()[0] / 1024
  peaks_mb = []  # VmHWM of each phase (the peak is reset between phases where possible)
  base_dev = (gpu_stats or {}).get("bytes_in_use", 0)

  # Compile ahead of time: the timed calls below never compile.
  features = jax.jit(lambda x, y, a, b, mdl: mdl.predict(x, y, a, b, eps))  # what the amortized solve computes
  features = features.lower(x, y, a, b, model).compile()
  one_pass = lambda p: p.geom.update_potential(jnp.zeros_like(p.a), jnp.zeros_like(p.b), jnp.log(p.b), axis=0)  # noqa: E731
  c_transform = jax.jit(one_pass).lower(prob).compile()
  amortized = jax.jit(lambda p, mdl: ots.amortized_solve(p, mdl)).lower(prob, model).compile()
  stats = amortized.memory_analysis()
  xla_temp_mb = None if stats is None else stats.temp_size_in_bytes / 2**20

  reps, warm = cfg["repeats"], cfg["repeats"] > 1
  peaks_mb.append(_rss_kb()[1] / 1024)
  reset = _reset_peak_rss()
  pre_timed_rss_mb = _rss_kb()[0] / 1024
  t_feat, _ = _timed(lambda: features(x, y, a, b, model), reps, warm)
  t_ct, _ = _timed(lambda: c_transform(prob), reps, warm)
  t_amo, out = _timed(lambda: amortized(prob, model), reps, warm)
  res: Dict[str, Any] = {
    "n": n,
    "d": d,
    "epsilon": eps,
    "batch_size": block,
    "num_projections": int(model.num_projections),
    "features_s": t_feat,
    "c_transform_s": t_ct,
    "amortized_s": t_amo,
    "l1_marginal_error": float(out.errors[0]),
    "finite": bool(np.isfinite(float(out.reg_ot_cost))),
    "xla_temp_mb": xla_temp_mb,
    "dense_matrix_mb": n * n * 4 / 2**20,
    "baseline_rss_mb": base_rss_mb,
    "timed_peak_rss_delta_mb": (_rss_kb()[1] / 1024 - pre_timed_rss_mb) if reset else None,
    "platform": dev.platform,
  }
  if gpu_stats is not None:
    res["peak_device_mb"] = (dev.memory_stats()["peak_bytes_in_use"] - base_dev) / 2**20
  if n in cfg["baseline_sizes"]:  # same compiled function: alpha is a traced argument
    flat = model.replace(alpha=jnp.zeros_like(model.alpha))
    res["zeros_l1_marginal_error"] = float(jax.block_until_ready(amortized(prob, flat)).errors[0])

  peaks_mb.append(_rss_kb()[1] / 1024)
  if n in cfg["sinkhorn_sizes"]:
    _reset_peak_rss()
    batch = ots.ProblemBatch(x[None], y[None], a[None], b[None], eps, online_batch_size=block)
    kw = {"threshold": cfg["sinkhorn_threshold"], "max_iterations": cfg["sinkhorn_max_iterations"]}
    for name, init in (("zeros", None), ("ra", model)):
      solve = jax.jit(lambda bt, mdl: ots.solve_batch(bt, mdl, inner_iterations=1, **kw)).lower(batch, init).compile()
      t0 = time.perf_counter()
      sol = jax.block_until_ready(solve(batch, init))
      res[f"sinkhorn_{name}_s"] = time.perf_counter() - t0
      res[f"sinkhorn_{name}_iterations"] = int(ots.num_iterations(sol)[0])
      res[f"sinkhorn_{name}_converged"] = bool(sol.converged[0])
    res["sinkhorn_max_iterations"] = cfg["sinkhorn_max_iterations"]
  peaks_mb.append(_rss_kb()[1] / 1024)
  res["peak_rss_delta_mb"] = max(peaks_mb) - base_rss_mb
  return res


# ------------------------------------------------------------------ parent
def _fit_models(args: argparse.Namespace, workdir: str) -> Dict[int, Dict[str, Any]]:
  import ottsliced as ots

  models = {}
  for d in args.dims:
    train = [pair(_train_seed(d, k), args.train_size, d) for k in range(args.train_pairs)]
    eps = epsilon_for(train, args.eps_factor)
    batch = ots.ProblemBatch(*(np.stack(arrays) for arrays in zip(*train)), eps)
    t0 = time.perf_counter()
    model = ots.fit_ra(batch, num_projections=args.num_projections, threshold=1e-4, progress=False)
    path = os.path.join(workdir, f"ra_d{d}.npz")
    model.save(path)
    models[d] = {
      "path": path,
      "epsilon": eps,
      "fit_s": time.perf_counter() - t0,
      "ground_truth_iterations": model.summary["ground_truth_mean_iterations"],
      "non_converged": model.summary["non_converged"],
    }
    print(f"# d={d}: epsilon={eps:g}, RA-OT fit on {args.train_pairs} pairs of n={args.train_size} "
          f"in {models[d]['fit_s']:.1f} s", file=sys.stderr, flush=True)  # fmt: skip
  return models


def _run_child(cfg: Dict[str, Any]) -> Dict[str, Any]:
  t0 = time.perf_counter()
  proc = subprocess.run(
    [sys.executable, os.path.abspath(__file__), _CHILD_FLAG, json.dumps(cfg)], capture_output=True, text=True
  )
  if proc.returncode != 0:
    raise RuntimeError(f"n={cfg['n']}, d={cfg['d']} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
  res = json.loads(proc.stdout.strip().splitlines()[-1])
  res["subprocess_wall_s"] = time.perf_counter() - t0
  return res


def _fmt_mb(v: Optional[float]) -> str:
  if v is None:
    return "–"
  return f"{v / 1024:.1f} GB" if v >= 1024 else f"{v:.0f} MB"


def _sinkhorn_cell(r: Dict[str, Any], name: str) -> str:
  if f"sinkhorn_{name}_iterations" not in r:
    return "–"
  it = r[f"sinkhorn_{name}_iterations"]
  cell = f"{it}" if r[f"sinkhorn_{name}_converged"] else f">{it}"
  return f"{cell} ({r[f'sinkhorn_{name}_s']:.1f} s)"


def markdown(results: List[Dict[str, Any]], threshold: float) -> str:
  """The results as a Markdown table."""
  gpu = any("peak_device_mb" in r for r in results)
  mem = "peak device Δ" if gpu else "peak RSS Δ (timed calls / whole run)"
  head = [
    "n = m",
    "d",
    "ε",
    "block",
    "features + prediction s",
    "one c-transform s",
    "amortized plan s",
    "L1 marginal error (α = 0)",
    mem,
    "XLA temp",
    "dense n×m f32",
    f"Sinkhorn iters to {threshold:g}: zeros",
    "RA-OT warm start",
  ]
  lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
  for r in results:
    if gpu:
      memory = _fmt_mb(r["peak_device_mb"])
    else:
      memory = f"{_fmt_mb(r['timed_peak_rss_delta_mb'])} / {_fmt_mb(r['peak_rss_delta_mb'])}"
    row = [
      f"{r['n']:,}",
      str(r["d"]),
      f"{r['epsilon']:g}",
      str(r["batch_size"]),
      f"{r['features_s']:.2f}",
      f"{r['c_transform_s']:.2f}",
      f"{r['amortized_s']:.2f}",
      f"{r['l1_marginal_error']:.3g}"
      + (f" ({r['zeros_l1_marginal_error']:.3g})" if "zeros_l1_marginal_error" in r else ""),
      memory,
      _fmt_mb(r["xla_temp_mb"]),
      _fmt_mb(r["dense_matrix_mb"]),
      _sinkhorn_cell(r, "zeros"),
      _sinkhorn_cell(r, "ra"),
    ]
    lines.append("| " + " | ".join(row) + " |")
  return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
  fmt = argparse.RawDescriptionHelpFormatter
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=fmt)
  p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="n = m of the test pairs")
  p.add_argument("--dims", type=int, nargs="+", default=[2, 5, 10], help="dimensions d")
  p.add_argument(
    "--batch-size", default="auto", help="online block: rows/columns of costs per block, or auto (8 MiB blocks)"
  )
  p.add_argument("--num-projections", type=int, default=100, help="L, directions of the model")
  p.add_argument("--train-pairs", type=int, default=32, help="training pairs per d (dense)")
  p.add_argument("--train-size", type=int, default=500, help="atoms per training measure")
  p.add_argument("--eps-factor", type=float, default=0.05, help="epsilon = factor * mean cost")
  p.add_argument("--repeats", type=int, default=3, help="timed calls (median) for n < --large")
  p.add_argument("--large", type=int, default=50_000, help="from this n on: one timed call, no warm-up")
  p.add_argument("--sinkhorn-sizes", type=int, nargs="*", default=[10_000], help="n with Sinkhorn iteration counts")
  p.add_argument("--sinkhorn-threshold", type=float, default=1e-2)
  p.add_argument(
    "--baseline-sizes", type=int, nargs="*", default=[10_000], help="n with the plan error of alpha = 0 as well"
  )
  p.add_argument("--sinkhorn-max-iterations", type=int, default=100, help="iteration cap")
  p.add_argument("--json", default=None, help="also write the results to this JSON file")
  return p


def _check_args(args: argparse.Namespace) -> None:
  if args.batch_size != "auto":
    try:
      args.batch_size = int(args.batch_size)
    except ValueError:
      raise SystemExit(f"--batch-size must be an int or auto, got {args.batch_size!r}.") from None
  for name in ("num_projections", "train_pairs", "train_size", "repeats", "sinkhorn_max_iterations"):
    if getattr(args, name) < 1:
      raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}.")
  if any(n < 2 for n in args.sizes) or any(d < 1 for d in args.dims):
    raise SystemExit("--sizes must be >= 2 and --dims >= 1.")
  if args.batch_size != "auto" and args.batch_size < 1:
    raise SystemExit(f"--batch-size must be >= 1, got {args.batch_size}.")
  if not (args.eps_factor > 0 and args.sinkhorn_threshold > 0):
    raise SystemExit("--eps-factor and --sinkhorn-threshold must be > 0.")


def main(argv: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
  """Run the benchmark, print the Markdown table; returns the per-configuration results."""
  args = _parser().parse_args(argv)
  _check_args(args)
  import jax

  t0, load0 = time.perf_counter(), os.getloadavg()
  with tempfile.TemporaryDirectory() as workdir:
    models = _fit_models(args, workdir)
    results = []
    for n in args.sizes:
      for d in args.dims:
        cfg = {
          "n": n,
          "d": d,
          "epsilon": models[d]["epsilon"],
          "batch_size": auto_batch_size(n) if args.batch_size == "auto" else args.batch_size,
          "model_path": models[d]["path"],
          "repeats": 1 if n >= args.large else args.repeats,
          "sinkhorn_sizes": args.sinkhorn_sizes,
          "baseline_sizes": args.baseline_sizes,
          "sinkhorn_threshold": args.sinkhorn_threshold,
          "sinkhorn_max_iterations": args.sinkhorn_max_iterations,
        }
        res = _run_child(cfg)
        res["fit_s"], res["repeats"] = models[d]["fit_s"], cfg["repeats"]
        results.append(res)
        print(f"# n={n}, d={d}: amortized {res['amortized_s']:.2f} s, error {res['l1_marginal_error']:.3g} "
              f"({res['subprocess_wall_s']:.0f} s with compilation)", file=sys.stderr, flush=True)  # fmt: skip
  wall = time.perf_counter() - t0
  dev = jax.devices()[0]
  header = (
    f"Device {dev.platform}:{dev.device_kind} ({platform.machine()}, {os.cpu_count()} CPUs), jax {jax.__version__}; "
    f"online block {args.batch_size}, L = {args.num_projections}, RA-OT fitted on {args.train_pairs} dense pairs of "
    f"n = {args.train_size} per d; epsilon = {args.eps_factor:g} x mean cost; load average "
    f"{load0[0]:.1f} at start, {os.getloadavg()[0]:.1f} at end; wall {wall / 60:.1f} min."
  )
  print(header + "\n")
  print(markdown(results, args.sinkhorn_threshold))
  if args.json:
    meta = {"argv": sys.argv, "args": vars(args), "wall_s": wall, "load_start": load0, "load_end": os.getloadavg()}
    with open(args.json, "w") as fh:
      json.dump({"meta": meta, "fits": models, "results": results}, fh, indent=1, default=str)
  return results


if __name__ == "__main__":
  if len(sys.argv) == 3 and sys.argv[1] == _CHILD_FLAG:
    print(json.dumps(_child(json.loads(sys.argv[2]))))
  else:
    main()
