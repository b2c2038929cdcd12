"""PNG figures of the experiments (matplotlib, non-interactive backend)."""

from typing import Any, Dict, Optional, Sequence

import numpy as np

__all__ = [
  "displacement_frames",
  "plot_attention_maps",
  "iterations_bar_chart",
  "plot_digit_interpolation",
  "plot_gap_curves",
  "plot_recolored",
  "plot_sphere_plan",
]


def _figure(**kwargs: Any):
  """A matplotlib ``Figure`` not tied to pyplot: no global backend change, nothing left open."""
  try:
    from matplotlib.figure import Figure
  except ImportError as err:  # pragma: no cover - exercised without the extra
    raise ImportError("figures need matplotlib: pip install 'ottsliced[data]'") from err
  return Figure(**kwargs)


def iterations_bar_chart(methods: Dict[str, Any], thresholds: Sequence[float], path: str, title: str = "") -> None:
  """Grouped bars: mean Sinkhorn iterations (± std) to each threshold, per initializer.

  Args:
    methods: ``evaluate(...)["methods"]``; entries without iterations are skipped.
    thresholds: the marginal-error thresholds evaluated.
    path: output PNG.
    title: figure title.
  """
  methods = {k: v for k, v in methods.items() if "iterations" in v}
  thresholds = [f"{float(t):g}" for t in thresholds]
  width = 0.8 / max(len(methods), 1)
  fig = _figure(figsize=(1.6 + 1.4 * len(thresholds) + 0.3 * len(methods), 3.6))
  ax = fig.subplots()
  pos = np.arange(len(thresholds))
  for k, (name, e) in enumerate(methods.items()):
    mean = [np.mean(e["iterations"][t]) for t in thresholds]
    std = [np.std(e["iterations"][t]) for t in thresholds]
    ax.bar(pos + (k - (len(methods) - 1) / 2) * width, mean, width, yerr=std, capsize=2, label=name)
  ax.set_xticks(pos)
  ax.set_xticklabels([f"error < {t}" for t in thresholds])
  ax.set_ylabel("Sinkhorn iterations (mean ± std)")
  ax.set_title(title or "Iterations to tolerance")
  ax.legend(fontsize=8, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def displacement_frames(
  plan: np.ndarray, x: np.ndarray, y: np.ndarray, size: int, times: Sequence[float], min_mass: float = 1e-7
) -> np.ndarray:
  r"""Images of the displacement interpolation :math:`((1-t)\pi_x+t\pi_y)_\#P` on ``[0, 1]^2``.

  Every plan entry above ``min_mass`` moves its mass along the segment from
  ``x_i`` to ``y_j``; each frame is the mass histogram on a ``size x size``
  grid (row-major, row 0 at the top like the images).

  Args:
    plan: ``[n, m]`` transport plan.
    x: source points ``[n, 2]``; y: target points ``[m, 2]``.
    size: frame side in pixels.
    times: interpolation times in ``[0, 1]``.
    min_mass: entries below are dropped (they are invisible anyway).

  Returns:
    ``[len(times), size, size]`` frames.
  """
  i, j = np.nonzero(plan > min_mass)
  w = plan[i, j]
  edges = np.linspace(-0.5 / (size - 1), 1 + 0.5 / (size - 1), size + 1)
  frames = []
  for t in times:
    p = (1 - t) * x[i] + t * y[j]
    h, _, _ = np.histogram2d(p[:, 1], p[:, 0], bins=[edges, edges], weights=w)
    frames.append(h[::-1])
  return np.stack(frames)


def plot_attention_maps(maps: Dict[str, np.ndarray], path: str) -> None:
  """One attention matrix ``[n, n]`` per variant, side by side, with its column sums (a doubly-stochastic
  matrix scaled to rows summing to 1 has every column sum equal to 1)."""
  fig = _figure(figsize=(2.3 * len(maps), 2.6))
  axes = fig.subplots(1, len(maps), squeeze=False)[0]
  for ax, (name, attn) in zip(axes, maps.items()):
    ax.imshow(attn, cmap="viridis")
    cols = attn.sum(0)
    ax.set_title(f"{name}\ncolumn sums {cols.min():.2f}-{cols.max():.2f}", fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])
  axes[0].set_ylabel("queries (keys across)", fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def plot_digit_interpolation(rows: Dict[str, np.ndarray], path: str, times: Sequence[float]) -> None:
  """One row of frames per method (``rows[name]`` is ``[T, size, size]``)."""
  fig = _figure(figsize=(1.1 * len(times), 1.2 * len(rows)))
  axes = fig.subplots(len(rows), len(times), squeeze=False)
  for r, (name, frames) in enumerate(rows.items()):
    for c, t in enumerate(times):
      ax = axes[r, c]
      ax.imshow(frames[c], cmap="gray_r")
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title(f"t={t:.2g}", fontsize=8)
    axes[r, 0].set_ylabel(name, fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def plot_recolored(columns: Dict[str, np.ndarray], path: str, titles: Optional[Sequence[str]] = None) -> None:
  """Images side by side: ``columns[name]`` is ``[rows, h, w, 3]``, one column per name."""
  names = list(columns)
  num_rows = len(next(iter(columns.values())))
  fig = _figure(figsize=(2.0 * len(names), 2.0 * num_rows))
  axes = fig.subplots(num_rows, len(names), squeeze=False)
  for c, name in enumerate(names):
    for r in range(num_rows):
      ax = axes[r, c]
      ax.imshow(np.clip(columns[name][r], 0, 1))
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title(name if titles is None else titles[c], fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def _lon_lat(xyz: np.ndarray) -> np.ndarray:
  lon = np.degrees(np.arctan2(xyz[:, 1], xyz[:, 0]))
  lat = np.degrees(np.arcsin(np.clip(xyz[:, 2], -1, 1)))
  return np.stack([lon, lat], axis=-1)


def plot_sphere_plan(
  supply_xyz: np.ndarray,
  demand_xyz: np.ndarray,
  plans: Dict[str, np.ndarray],
  a: np.ndarray,
  b: np.ndarray,
  path: str,
  links_per_supply: int = 3,
) -> None:
  """Equirectangular maps (longitude, latitude) of a supply-demand plan per method.

  Demand points are shaded by their weight, supply points sized by theirs,
  and each supply point is linked to the ``links_per_supply`` demand points
  that receive most of its mass (line width ∝ mass).
  """
  s, d = _lon_lat(supply_xyz), _lon_lat(demand_xyz)
  fig = _figure(figsize=(4.2 * len(plans), 2.6))
  axes = fig.subplots(1, len(plans), squeeze=False)
  for ax, (name, plan) in zip(axes[0], plans.items()):
    ax.scatter(d[:, 0], d[:, 1], s=1, c=b, cmap="Blues", alpha=0.6, linewidths=0)
    top = np.argsort(-plan, axis=1)[:, :links_per_supply]
    mass = np.take_along_axis(plan, top, axis=1)
    scale = 3.0 / max(mass.max(), 1e-30)
    for i in np.nonzero(a > 0)[0]:
      for j, w in zip(top[i], mass[i]):
        if abs(s[i, 0] - d[j, 0]) < 180:  # skip links across the date line
          ax.plot([s[i, 0], d[j, 0]], [s[i, 1], d[j, 1]], color="C3", lw=scale * w, alpha=0.7)
    ax.scatter(s[:, 0], s[:, 1], s=4 + 400 * a, c="C3", edgecolors="k", linewidths=0.3, zorder=3)
    ax.set_xlim(-180, 180)
    ax.set_ylim(-90, 90)
    ax.set_title(name, fontsize=9)
    ax.set_xlabel("longitude")
  axes[0, 0].set_ylabel("latitude")
  fig.tight_layout()
  fig.savefig(path, dpi=110)


def plot_gap_curves(series: Dict[str, Dict[str, Any]], path: str, floor: float = 1e-6) -> None:
  """Relative cost gap to exact OT against epsilon (top row) and against wall time (bottom row), one column per case.

  Args:
    series: ``{case: {"curves": {method: (relative epsilons, gaps, seconds)}, "levels": {method: (gap, seconds)}}}``;
      curves are methods with an epsilon (entropic OT, SROT), levels the ones without (a sliced plan: a
      horizontal line on top, a point below).
    path: output PNG.
    floor: gaps are clipped below at this value (log axes).
  """
  fig = _figure(figsize=(3.3 * len(series), 6.2))
  axes = fig.subplots(2, len(series), squeeze=False)
  for c, (case, parts) in enumerate(series.items()):
    top, bottom = axes[0, c], axes[1, c]
    for k, (name, (eps, gaps, secs)) in enumerate(parts["curves"].items()):
      order = np.argsort(eps)
      e, g, t = (np.asarray(v, float)[order] for v in (eps, gaps, secs))
      style = {"color": "k", "lw": 2.0, "marker": "o"} if name == "entropic" else {"color": f"C{k}", "marker": "."}
      top.plot(e, np.maximum(g, floor), label=name, **style)
      bottom.plot(1e3 * t, np.maximum(g, floor), label=name, **style)
    for k, (name, (gap, secs)) in enumerate(parts["levels"].items(), start=len(parts["curves"])):
      top.axhline(max(gap, floor), color=f"C{k}", ls="--", lw=1, alpha=0.7, label=f"{name} (no ε)")
      bottom.plot([1e3 * secs], [max(gap, floor)], marker="x", ls="", color=f"C{k}", label=f"{name} (no ε)")
    for ax in (top, bottom):
      ax.set_xscale("log")
      ax.set_yscale("log")
      ax.grid(True, which="major", alpha=0.3)
    top.set_title(case, fontsize=9)
    top.set_xlabel("ε / mean cost")
    bottom.set_xlabel("wall time (ms)")
  axes[0, 0].set_ylabel("(⟨C,P⟩ − OT) / OT")
  axes[1, 0].set_ylabel("(⟨C,P⟩ − OT) / OT")
  handles, labels = axes[0, 0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=7, frameon=False)
  fig.tight_layout(rect=(0, 0.06, 1, 1))
  fig.savefig(path, dpi=100)
