"""Figures, written as PNG with matplotlib's non-interactive backend."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..io import atomic_path  # noqa: E402


def mean_band(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of a 95% band, 1.96 x std / sqrt(n) (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, 1.96 * std / math.sqrt(n)


def curves_by_round(rows: list[dict], y: str = "test_acc") -> dict[str, list[tuple]]:
    """Per metric, per round index: (mean remaining, mean y, band, seeds) over the seeds."""
    grouped: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        grouped[row["metric"]][row["round"]].append(row)
    out = {}
    for metric, by_round in grouped.items():
        points = []
        for r in sorted(by_round):
            group = by_round[r]
            remaining = sum(g["remaining"] for g in group) / len(group)
            mean, band = mean_band([g[y] for g in group])
            points.append((remaining, mean, band, len(group)))
        out[metric] = points
    return out


def _draw_curves(ax, rows: list[dict], y: str) -> None:
    """One line per metric (mean over seeds) with its 95% band."""
    for metric, points in curves_by_round(rows, y).items():
        xs = [p[0] for p in points]
        lo = [p[1] - p[2] for p in points]
        hi = [p[1] + p[2] for p in points]
        line = ax.plot(xs, [p[1] for p in points], marker="o", markersize=3, label=metric)[0]
        ax.fill_between(xs, lo, hi, color=line.get_color(), alpha=0.2)


def plot_accuracy_vs_remaining(
    rows: list[dict], path: str | Path, *, title: str = "", y: str = "test_acc"
) -> Path:
    """The DropNet paper's figure: accuracy against fraction of units remaining, one line per
    metric, mean over seeds with a 95% band; the x axis runs from 1.0 down, as pruning proceeds."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    _draw_curves(ax, rows, y)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("fraction of units remaining (log scale)")
    ax.set_ylabel(y.replace("_", " "))
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_accuracy_panels(
    panels: dict[str, list[dict]], path: str | Path, *, y: str = "test_acc"
) -> Path:
    """One accuracy-vs-remaining panel per key (e.g. per pool member), lines per metric."""
    n = max(1, len(panels))
    cols = min(3, n)
    rows_ = math.ceil(n / cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(4.2 * cols, 3.3 * rows_), squeeze=False)
    for ax, (title, rows) in zip(axes.flat, panels.items(), strict=False):
        _draw_curves(ax, rows, y)
        ax.invert_xaxis()
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("fraction remaining", fontsize=8)
        ax.set_ylabel(y.replace("_", " "), fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def plot_diversity_accuracy(levels: list[dict], path: str | Path, *, metric: str) -> Path:
    """Each kept team's (focal) diversity against its ensemble accuracy, coloured by team size."""
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for level in levels:
        if level.get("diversity") is None or not level["teams"]:
            continue
        ax.scatter(
            level["diversity"], level["accuracy"], s=10, alpha=0.7, label=f"size {level['size']}"
        )
    ax.set_xlabel(f"focal diversity ({metric}, normalised)")
    ax.set_ylabel("ensemble accuracy (validation)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def plot_pareto(points: list[dict], front: list[dict], path: str | Path) -> Path:
    """Test accuracy against MACs relative to the whole unpruned pool: every candidate team, and
    the front chosen on validation accuracy."""
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    ax.scatter(
        [p["mac_fraction"] for p in points],
        [p["test_acc"] for p in points],
        s=8,
        color="0.7",
        label="teams and single models",
    )
    ax.plot(
        [p["mac_fraction"] for p in front],
        [p["test_acc"] for p in front],
        marker="o",
        color="C3",
        label="front (chosen on validation)",
    )
    ax.set_xlabel("MACs / whole unpruned pool")
    ax.set_ylabel("ensemble test accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
