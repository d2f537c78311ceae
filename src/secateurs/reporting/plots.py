"""Figures for reports and papers, with matplotlib's non-interactive backend.

Every figure is written twice: PNG (embedded in the HTML report) and PDF beside it (vector, for a
paper). Accuracies are in % as in the tables; log axes get ticks at round values labelled in plain
numbers; panels of one figure share one y range so that they can be compared by eye; bands are
t intervals over seeds with their n stated (none when n = 1).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator  # noqa: E402

from ..io import atomic_path  # noqa: E402
from .stats import mean_interval  # noqa: E402

FORMATS = ("png", "pdf")
matplotlib.rcParams["pdf.fonttype"] = 42  # TrueType text in PDFs: selectable and editable


class CurvePoint(NamedTuple):
    """One round of a metric's curve, over the seeds that reached it."""

    remaining: float  # mean fraction of units remaining
    mean: float
    half_width: float  # t interval half-width before clipping (0 for one seed)
    n: int  # seeds
    low: float  # interval, clipped to [0, 1] for accuracies
    high: float


def curves_by_round(rows: list[dict], y: str = "test_acc") -> dict[str, list[CurvePoint]]:
    """Per metric, per round index: mean remaining and the mean of ``y`` over the seeds with its
    95% t interval (clipped to [0, 1] when ``y`` is an accuracy)."""
    grouped: dict[str, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        grouped[row["metric"]][row["round"]].append(row)
    bounds = (0.0, 1.0) if y.endswith("acc") else None
    out = {}
    for metric, by_round in grouped.items():
        points = []
        for r in sorted(by_round):
            group = by_round[r]
            remaining = sum(g["remaining"] for g in group) / len(group)
            iv = mean_interval([g[y] for g in group], bounds=bounds)
            points.append(CurvePoint(remaining, iv.mean, iv.half_width, iv.n, iv.low, iv.high))
        out[metric] = points
    return out


# -- axes -----------------------------------------------------------------------------------------
_MANTISSAS = ((1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9))


def log_ticks(lo: float, hi: float, max_ticks: int = 8) -> list[float]:
    """Round tick values for a log axis over [lo, hi]: 1-2-5 steps, finer when the range is
    narrow (a range from 50 to 100 gets 50, 60, ..., 100 instead of a single tick)."""
    if not (lo > 0 and hi >= lo):
        raise ValueError(f"log axis needs 0 < lo <= hi, got {lo}, {hi}")
    ticks: list[float] = []
    for mantissas in _MANTISSAS:
        ticks = [
            m * 10.0**e
            for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
            for m in mantissas
            if lo * (1 - 1e-9) <= m * 10.0**e <= hi * (1 + 1e-9)
        ]
        if len(ticks) >= 4:
            break
    if len(ticks) < 2:  # a very narrow range: label its ends
        ticks = sorted({float(f"{lo:.3g}"), float(f"{hi:.3g}")})
    if len(ticks) > max_ticks:
        step = math.ceil(len(ticks) / max_ticks)
        ticks = ticks[::-1][::step][::-1]  # keep the largest value
    return ticks


def _number(v: float) -> str:
    """Tick label: plain numbers, thousands as k and millions as M."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def _log_axis(ax, which: str, values: Sequence[float], *, invert: bool = False) -> None:
    values = [v for v in values if v > 0]
    lo, hi = min(values), max(values)
    pad = (hi / lo) ** 0.04 if hi > lo else 1.1
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)("log")
    axis.set_major_locator(FixedLocator(log_ticks(lo, hi)))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: _number(v)))
    axis.set_minor_locator(NullLocator())
    axis.set_minor_formatter(NullFormatter())
    limits = (lo / pad, hi * pad)
    (ax.set_xlim if which == "x" else ax.set_ylim)(limits[::-1] if invert else limits)


def _pct(v: float | None) -> float | None:
    return None if v is None else 100 * v


def _draw_curves(ax, rows: list[dict], y: str, colors: dict[str, str]) -> list[float]:
    """One line per metric (mean over seeds) with its t interval; returns the x values."""
    scale = 100 if y.endswith("acc") else 1
    xs_all = []
    for metric, points in curves_by_round(rows, y).items():
        xs = [100 * p.remaining for p in points]
        xs_all += xs
        n = sorted({p.n for p in points})
        label = f"{metric} (n = {n[0]})" if len(n) == 1 else f"{metric} (n = {n[0]}-{n[-1]})"
        color = colors.setdefault(metric, f"C{len(colors)}")
        ax.plot(xs, [scale * p.mean for p in points], marker="o", ms=3, color=color, label=label)
        if any(p.n > 1 for p in points):
            ax.fill_between(
                xs,
                [scale * p.low for p in points],
                [scale * p.high for p in points],
                color=color,
                alpha=0.2,
                linewidth=0,
            )
    return xs_all


def _y_label(y: str) -> str:
    words = y.replace("_", " ").replace("acc", "accuracy")
    return f"{words} (%)" if y.endswith("acc") else words


def plot_accuracy_vs_remaining(
    rows: list[dict], path: str | Path, *, title: str = "", y: str = "test_acc"
) -> Path:
    """The DropNet paper's figure: accuracy against units remaining (log scale, from 100% down
    as pruning proceeds), one line per metric, mean over seeds with a 95% t interval."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs = _draw_curves(ax, rows, y, {})
    _log_axis(ax, "x", xs, invert=True)
    ax.set_xlabel("units remaining (%, log scale)")
    ax.set_ylabel(_y_label(y))
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_accuracy_panels(
    panels: dict[str, list[dict]], path: str | Path, *, y: str = "test_acc"
) -> Path:
    """One accuracy-vs-remaining panel per key (a pool member's name), lines per metric; all
    panels share the x and y ranges."""
    n = max(1, len(panels))
    cols = min(3, n)
    rows_ = math.ceil(n / cols)
    fig, axes = plt.subplots(
        rows_, cols, figsize=(4.2 * cols, 3.3 * rows_), squeeze=False, sharex=True, sharey=True
    )
    colors: dict[str, str] = {}
    xs: list[float] = []
    for ax, (title, rows) in zip(axes.flat, panels.items(), strict=False):
        xs += _draw_curves(ax, rows, y, colors)
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    if xs:
        _log_axis(axes.flat[0], "x", xs, invert=True)
    flat = list(axes.flat)
    for i, ax in enumerate(flat[:n]):
        if i + cols >= n:  # lowest panel of its column: its x axis is labelled
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel("units remaining (%, log scale)", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(_y_label(y), fontsize=8)
    for ax in flat[n:]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_seed_tables(rows: list[dict], path: str | Path) -> Path:
    """The seed's tables as a figure, one column per DropNet metric: test accuracy of the whole
    pool, its best single model and the recommended team (one line per focal metric) against the
    pruning level; below, team minus pool with its 95% paired bootstrap interval."""
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    focals = list(dict.fromkeys(r["focal_metric"] for r in rows))
    cols = max(1, len(metrics))
    fig, axes = plt.subplots(
        2,
        cols,
        figsize=(4.4 * cols, 6.0),
        squeeze=False,
        sharex=True,
        sharey="row",
        gridspec_kw={"height_ratios": [3, 2]},
    )
    levels = sorted({100 * r["level"] for r in rows})
    span = (levels[-1] - levels[0]) or 1.0
    for c, metric in enumerate(metrics):
        top, bottom = axes[0, c], axes[1, c]
        mine = [r for r in rows if r["metric"] == metric]
        first = [r for r in mine if r["focal_metric"] == focals[0]]
        xs = [100 * r["level"] for r in first]
        top.plot(xs, [_pct(r["pool_test_acc"]) for r in first], "s-", color="k", label="whole pool")
        top.plot(
            xs,
            [_pct(r["best_single_test_acc"]) for r in first],
            "^--",
            color="0.5",
            label="best single model",
        )
        for k, focal in enumerate(focals):
            sel = [
                r for r in mine if r["focal_metric"] == focal and r.get("team_test_acc") is not None
            ]
            # focal metrics often pick the same team: shift each a little so that all show
            dx = (k - (len(focals) - 1) / 2) * 0.015 * span
            fx = [100 * r["level"] + dx for r in sel]
            color = f"C{k}"
            top.plot(
                fx,
                [_pct(r["team_test_acc"]) for r in sel],
                "o-",
                color=color,
                ms=4,
                label=f"team ({focal.upper()})",
            )
            diff = [_pct(r["difference"]) for r in sel]
            has_ci = [r.get("difference_low") is not None for r in sel]
            err = [
                [
                    d - _pct(r["difference_low"]) if ok else 0
                    for d, r, ok in zip(diff, sel, has_ci, strict=True)
                ],
                [
                    _pct(r["difference_high"]) - d if ok else 0
                    for d, r, ok in zip(diff, sel, has_ci, strict=True)
                ],
            ]
            bottom.errorbar(
                fx,
                diff,
                yerr=err,
                fmt="o",
                color=color,
                ms=4,
                capsize=3,
                label=f"team ({focal.upper()}) - pool",
            )
        bottom.axhline(0, color="k", linewidth=0.8)
        top.set_title(metric, fontsize=10)
        for ax in (top, bottom):
            ax.grid(True, alpha=0.3)
            ax.set_xticks(levels)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        bottom.set_xlabel("pruning level (% of units)", fontsize=8)
    axes[0, 0].set_ylabel("test accuracy (%)", fontsize=8)
    axes[1, 0].set_ylabel("team - pool (points, 95% CI)", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    axes[1, 0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_accuracy_vs_cost(
    singles: list[dict], teams: list[dict], pools: list[dict], path: str | Path
) -> Path:
    """Test accuracy against parameters and against MACs (log scales): every single model
    (``singles``: dicts with label, params, macs, test_acc), the recommended ``teams`` and the
    whole ``pools`` (dicts with params, macs, test_acc)."""
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.2), sharey=True)
    labels = list(dict.fromkeys(s["label"] for s in singles))
    for ax, cost in zip(axes, ("params", "macs"), strict=True):
        for k, label in enumerate(labels):
            mine = [s for s in singles if s["label"] == label]
            ax.scatter(
                [s[cost] for s in mine],
                [_pct(s["test_acc"]) for s in mine],
                s=10,
                alpha=0.6,
                color=f"C{k % 10}",
                label=label,
            )
        ax.scatter(
            [t[cost] for t in teams],
            [_pct(t["test_acc"]) for t in teams],
            marker="*",
            s=90,
            color="C3",
            edgecolor="k",
            linewidth=0.5,
            label="recommended teams",
            zorder=3,
        )
        ax.scatter(
            [p[cost] for p in pools],
            [_pct(p["test_acc"]) for p in pools],
            marker="s",
            s=40,
            color="k",
            label="whole pools",
            zorder=3,
        )
        _log_axis(ax, "x", [x[cost] for x in singles + teams + pools])
        ax.set_xlabel(("parameters" if cost == "params" else "MACs per sample") + " (log scale)")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_diversity_accuracy(levels: list[dict], path: str | Path, *, metric: str) -> Path:
    """Each kept team's (focal) diversity against its ensemble accuracy, coloured by team size."""
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for level in levels:
        if level.get("diversity") is None or not level["teams"]:
            continue
        ax.scatter(
            level["diversity"],
            [100 * a for a in level["accuracy"]],
            s=10,
            alpha=0.7,
            label=f"size {level['size']}",
        )
    ax.set_xlabel(f"focal diversity ({metric.upper()}, normalised)")
    ax.set_ylabel("ensemble accuracy, validation (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_pareto(
    points: list[dict],
    front: list[dict],
    path: str | Path,
    *,
    whole_pool: dict | None = None,
    recommended: dict | None = None,
) -> Path:
    """Test accuracy against MACs relative to the whole unpruned pool (log scale): every candidate
    team, the front chosen on validation accuracy, the whole pool and the recommended team."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.scatter(
        [100 * p["mac_fraction"] for p in points],
        [100 * p["test_acc"] for p in points],
        s=8,
        color="0.7",
        label="teams and single models",
    )
    ax.plot(
        [100 * p["mac_fraction"] for p in front],
        [100 * p["test_acc"] for p in front],
        marker="o",
        color="C0",
        label="front (chosen on validation)",
    )
    xs = [100 * p["mac_fraction"] for p in points + front]
    if whole_pool is not None:
        ax.scatter(
            [100 * whole_pool["mac_fraction"]],
            [100 * whole_pool["test_acc"]],
            marker="s",
            s=60,
            color="k",
            zorder=3,
            label=f"whole pool ({whole_pool['size']} models)",
        )
        xs.append(100 * whole_pool["mac_fraction"])
    if recommended is not None:
        ax.scatter(
            [100 * recommended["mac_fraction"]],
            [100 * recommended["test_acc"]],
            marker="*",
            s=160,
            color="C3",
            edgecolor="k",
            linewidth=0.5,
            zorder=4,
            label=f"recommended team ({recommended['size']} models)",
        )
    _log_axis(ax, "x", xs)
    ax.set_xlabel("MACs, % of the whole unpruned pool (log scale)")
    ax.set_ylabel("ensemble test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig, path: str | Path, formats: Sequence[str] = FORMATS) -> Path:
    """Write ``fig`` as ``path`` with each suffix in ``formats`` (atomically); returns the first."""
    path = Path(path)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        with atomic_path(target) as tmp:
            # no creation date in PDFs: the same results give the same bytes
            meta = {"CreationDate": None} if fmt == "pdf" else None
            fig.savefig(tmp, format=fmt, dpi=130, metadata=meta)
        written.append(target)
    plt.close(fig)
    return written[0]
