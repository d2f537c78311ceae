"""The figure of a sweep over DropNet's pruning fraction p."""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import FixedLocator, FormatStrFormatter, NullFormatter

from .plots import _draw_curves, _save, curves_by_round, plt


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
    _draw_curves(acc, rows, "test_acc")
    _draw_curves(cost, rows, "cum_flops")
    for ax in (acc, cost):
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("fraction of units remaining (log scale)")
        ax.xaxis.set_major_locator(FixedLocator([1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01]))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    acc.set_ylabel("test accuracy")
    cost.set_yscale("log")
    cost.set_ylabel("training FLOPs spent to reach this size")
    accs = curves_by_round(rows, "test_acc")
    flops = curves_by_round(rows, "cum_flops")
    for label, points in accs.items():
        both.plot([f[1] for f in flops[label]], [p[1] for p in points], marker="o", markersize=3,
                  label=label)
    both.set_xscale("log")
    both.xaxis.set_minor_formatter(NullFormatter())
    both.set_xlabel("training FLOPs spent (log scale)")
    both.set_ylabel("test accuracy")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)
