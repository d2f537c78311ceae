"""The figure of a sweep over DropNet's pruning fraction p."""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import NullFormatter

from .plots import _draw_curves, _log_axis, curves_by_round, plt, save_figure


def _labelled(rows: list[dict]) -> list[dict]:
    """Rows with ``metric`` set to the line's label (one line per p)."""
    return [{**r, "metric": f"p = {r['fraction']:g}"} for r in sorted(rows, key=lambda r: r["fraction"])]


def plot_sweep(rows: list[dict], path: str | Path, *, title: str = "") -> Path:
    """Three panels, one line per p (mean over seeds, 95% band): test accuracy against the
    fraction remaining; training FLOPs spent to reach each size; test accuracy against FLOPs
    spent."""
    rows = _labelled(rows)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    acc, cost, both = axes
    colors: dict[str, str] = {}
    xs = _draw_curves(acc, rows, "test_acc", colors)
    _draw_curves(cost, rows, "cum_flops", colors)
    for ax in (acc, cost):
        _log_axis(ax, "x", xs, invert=True)
        ax.set_xlabel("units remaining, % (log scale)")
    acc.set_ylabel("test accuracy, %")
    cost.set_yscale("log")
    cost.set_ylabel("training FLOPs spent to reach this size")
    accs = curves_by_round(rows, "test_acc")
    flops = curves_by_round(rows, "cum_flops")
    for label, points in accs.items():
        both.plot([f.mean for f in flops[label]], [100 * p.mean for p in points], marker="o",
                  markersize=3, label=label, color=colors.get(label))
    both.set_xscale("log")
    both.xaxis.set_minor_formatter(NullFormatter())
    both.set_xlabel("training FLOPs spent (log scale)")
    both.set_ylabel("test accuracy, %")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
