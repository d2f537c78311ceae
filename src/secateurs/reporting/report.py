"""The experiment report: ``report.md`` and, with ``report: {html: true}``, ``report.html``.

The report is a list of Markdown sections (:func:`report_sections`); to add one, append a string
to that list. The HTML file is the same Markdown rendered by markdown-it-py into one
self-contained page: every figure is embedded as a data URI, so the file can be mailed or moved.
"""

from __future__ import annotations

import base64
import html
from collections import defaultdict
from pathlib import Path

from ..errors import DataError
from ..io import write_text
from .plots import (
    plot_accuracy_panels,
    plot_accuracy_vs_cost,
    plot_diversity_accuracy,
    plot_pareto,
    plot_seed_tables,
)
from .run_time import describe_run_time, read_invocations

BOOTSTRAP_NOTE = (
    "**How to read the differences.** *difference* is the team's test accuracy minus the whole "
    "pool's, in percentage points; in brackets its 95% paired bootstrap interval (2000 resamples "
    "of the test samples, both classifiers on the same resample, seeded by the config's seed). "
    "*McNemar p* is the exact two-sided test on the test samples only one of the two gets right. "
    "An interval that contains 0, or p above 0.05, means this test set cannot tell the team from "
    "the pool: a difference of one or two samples is noise."
)


def _fmt(v, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{100 * v:.2f}" if pct else f"{v:.3f}"
    return str(v)


def format_difference(diff: float | None, low: float | None, high: float | None) -> str:
    """``+0.28 [-0.56, +1.11]``: a difference in points with its interval."""
    if diff is None:
        return "-"
    if low is None or high is None:
        return f"{100 * diff:+.2f}"
    return f"{100 * diff:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]"


def format_p(p: float | None) -> str:
    if p is None:
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def seed_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The seed's results table: team, pruning, cost, accuracy of the whole pool and of the team,
    and the team's difference from the pool with its paired interval and McNemar p."""
    head = [
        "metric",
        "pruned (level / actual)",
        "focal",
        "team",
        "cost (size/M)",
        "MACs / unpruned pool",
        "pool acc %",
        "team acc %",
        "difference (95% CI)",
        "McNemar p",
    ]
    body = []
    for r in rows:
        team = "{" + ",".join(map(str, r["team"])) + "}" if r.get("team") else "-"
        if r.get("team_names"):
            team = f"{team} {', '.join(r['team_names'])}"
        body.append(
            [
                r["metric"],
                f"{r['level']:.0%} / {r['pruned']:.1%}",
                r["focal_metric"].upper(),
                team,
                "-" if r.get("cost") is None else f"{r['cost']:.0%}",
                "-" if r.get("mac_fraction") is None else f"{r['mac_fraction']:.1%}",
                _fmt(r["pool_test_acc"], True),
                _fmt(r.get("team_test_acc"), True),
                format_difference(
                    r.get("difference"), r.get("difference_low"), r.get("difference_high")
                ),
                format_p(r.get("mcnemar_p")),
            ]
        )
    return head, body


def _cell(text: str) -> str:
    """A table cell: pipes escaped so that a name cannot split the row."""
    return str(text).replace("|", "\\|")


def markdown_table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(map(_cell, head)) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(map(_cell, row)) + " |" for row in body]
    return "\n".join(lines)


def _seeds_phrase(config: dict) -> str:
    counts = sorted({len(m["seeds"]) for m in config["pool"]})
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"n = {n} seed{'s' if counts[-1] > 1 else ''} per member"


def write_figures(config: dict, results: dict, out: Path) -> list[tuple[str, Path]]:
    """Every figure of the report, as (caption, PNG path); a PDF is written beside each PNG."""
    names = [m["name"] for m in config["pool"]]
    panels: dict[str, list[dict]] = defaultdict(list)
    for row in results["rounds"]:
        panels[names[row["member"]]].append(row)
    figures = [
        (
            "Test accuracy against units remaining, per pool member (mean over seeds with a 95% t "
            f"interval, clipped to [0, 100]; {_seeds_phrase(config)}; no band when n = 1)",
            plot_accuracy_panels(dict(panels), out / "accuracy_vs_remaining.png"),
        )
    ]
    table = results["table"]
    if table:
        figures.append(
            (
                "The seed's tables: test accuracy of the whole pool, its best single model and the "
                "recommended team against the pruning level; below, team minus pool with its 95% "
                "paired bootstrap interval",
                plot_seed_tables(table, out / "team_vs_pool.png"),
            )
        )
        singles = [
            {
                "label": names[r["member"]],
                "params": r["params"],
                "macs": r["macs"],
                "test_acc": r["test_acc"],
            }
            for r in results["rounds"]
        ]
        teams = [
            {"params": r["params"], "macs": r["macs"], "test_acc": r["team_test_acc"]}
            for r in table
            if r.get("params") is not None
        ]
        pools = list(
            {
                (r["metric"], r["level"]): {
                    "params": r["pool_params"],
                    "macs": r["pool_macs"],
                    "test_acc": r["pool_test_acc"],
                }
                for r in table
                if r.get("pool_params") is not None
            }.values()
        )
        figures.append(
            (
                "Test accuracy against parameters and MACs: every recorded DropNet round of every "
                "model, the recommended teams and the whole pools",
                plot_accuracy_vs_cost(singles, teams, pools, out / "accuracy_vs_cost.png"),
            )
        )
    mixed = results.get("mixed")
    if mixed:
        metric = config["ensemble"]["metrics"][0]
        levels = mixed["selections"][metric]["levels"]
        figures.append(
            (
                f"Mixed pool: focal diversity ({metric.upper()}) against ensemble accuracy of "
                "every team HQ kept",
                plot_diversity_accuracy(levels, out / "diversity_vs_accuracy.png", metric=metric),
            )
        )
        figures.append(
            (
                "Mixed pool: test accuracy against MACs of every candidate team, the front chosen "
                f"on validation, the whole pool and the team recommended with {metric.upper()}",
                plot_pareto(
                    mixed["points"],
                    mixed["front"],
                    out / "pareto.png",
                    whole_pool=mixed.get("whole_pool"),
                    recommended=mixed.get("recommended"),
                ),
            )
        )
    return figures


def header_section(config: dict, results: dict, out: Path) -> str:
    names = results["pool"]
    dn, en = config["dropnet"], config["ensemble"]
    invocations = read_invocations(out)
    run_time = (
        describe_run_time(invocations)
        if invocations
        else f"Run time {results.get('seconds', 0):.0f} s."
    )
    rule = next(iter(next(iter(results["selections"].values())).values()))["rule"]
    return "\n".join(
        [
            f"# {config['name']}: pruned pools and small teams",
            "",
            f"Dataset `{config['dataset']['spec']}`; pool of {len(names)} models "
            f"({', '.join(names)}); DropNet metrics {', '.join(dn['metrics'])} with p = "
            f"{dn['fraction']}, levels {', '.join(f'{v:.0%}' for v in dn['levels'])}; "
            f"{en['method'].upper()} with beta = {en['beta']}, focal "
            f"{', '.join(m.upper() for m in en['metrics'])}, {en['vote']} voting. Teams are chosen "
            f"on the validation split; accuracies below are on the test split. {run_time}",
            "",
            f"Recommended team rule: {rule}",
        ]
    )


def seed_table_sections(results: dict) -> list[str]:
    sections = []
    for scope, title in (("global", "Global metrics"), ("layer", "Layer-wise metrics")):
        rows = [r for r in results["table"] if r["scope"] == scope]
        if rows:
            n = rows[0].get("test_samples")
            note = f"Test accuracies on {n} test samples. " if n else ""
            sections.append(
                f"## {title}\n\n{note}Team indices are into the pool, in config order.\n\n"
                + markdown_table(*seed_table(rows))
            )
    if sections:
        sections.append(BOOTSTRAP_NOTE)
    return sections


def mixed_section(results: dict) -> str:
    mixed = results.get("mixed")
    if not mixed:
        return ""
    head = [
        "focal",
        "team",
        "size",
        "val acc %",
        "test acc %",
        "pool test acc %",
        "difference (95% CI)",
        "McNemar p",
    ]
    body = []
    for metric, sel in mixed["selections"].items():
        rec = sel["recommended"]
        cmp_ = (mixed.get("comparisons") or {}).get(metric) or {}
        body.append(
            [
                metric.upper(),
                " ".join(rec["names"]) if rec else "-",
                str(rec["size"]) if rec else "-",
                _fmt(rec and rec["selection_accuracy"], True),
                _fmt(rec and rec["test_accuracy"], True),
                _fmt(sel["pool"]["test_accuracy"], True),
                format_difference(
                    cmp_.get("difference"), cmp_.get("difference_low"), cmp_.get("difference_high")
                ),
                format_p(cmp_.get("mcnemar_p")),
            ]
        )
    front_head = ["team", "MACs / unpruned pool", "val acc %", "test acc %"]
    front_body = [
        [
            " ".join(p["team"]),
            f"{p['mac_fraction']:.1%}",
            _fmt(p["val_acc"], True),
            _fmt(p["test_acc"], True),
        ]
        for p in mixed["front"]
    ]
    return "\n".join(
        [
            "## Mixed pool of every snapshot",
            "",
            f"{len(mixed['models'])} models. Recommended teams (difference: team minus the whole "
            "mixed pool):",
            "",
            markdown_table(head, body),
            "",
            "Pareto front (chosen on validation):",
            "",
            markdown_table(front_head, front_body),
        ]
    )


def comparison_section(results: dict) -> str:
    """HQ's teams against the baselines at equal team size (empty when not compared)."""
    from ..experiments.comparison import comparison_markdown

    return comparison_markdown(results)


def figures_section(figures: list[tuple[str, Path]]) -> str:
    parts = [
        "## Figures",
        "",
        "Each figure is also written as PDF (vector) beside its PNG, e.g. "
        f"`{figures[0][1].with_suffix('.pdf').name}`."
        if figures
        else "",
    ]
    for caption, path in figures:
        parts += ["", f"![{caption}]({path.name})", "", f"*{caption}*"]
    return "\n".join(parts)


def report_sections(config: dict, results: dict, out: Path) -> list[str]:
    """The report's Markdown sections, in order (empty strings are dropped)."""
    figures = write_figures(config, results, out)
    return [
        header_section(config, results, out),
        *seed_table_sections(results),
        mixed_section(results),
        comparison_section(results),
        figures_section(figures),
    ]


def write_report(config: dict, results: dict, out: str | Path) -> Path:
    """``report.md`` (and ``report.html`` when the config asks) with tables and figures."""
    out = Path(out)
    text = "\n\n".join(s for s in report_sections(config, results, out) if s) + "\n"
    report = write_text(out / "report.md", text)
    if config.get("report", {}).get("html"):
        write_text(out / "report.html", render_html(text, config["name"], base_dir=out))
    return report


_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:78em;margin:1em auto;padding:0 1em;"
    "line-height:1.45;color:#222}"
    # wide tables scroll sideways instead of wrapping numbers such as "+0.28 [-0.56, +1.11]"
    "table{border-collapse:collapse;margin:0.5em 0;font-size:0.9em;display:block;overflow-x:auto}"
    "td,th{border:1px solid #bbb;padding:2px 6px;text-align:left}td{white-space:nowrap}"
    "th{background:#f0f0f0}"
    "tr:nth-child(even) td{background:#fafafa}"
    "code{background:#f3f3f3;padding:0 3px;border-radius:3px}"
    "img{max-width:100%;display:block;margin:0.5em 0}"
)


def render_html(text: str, title: str, *, base_dir: str | Path) -> str:
    """Markdown to one self-contained HTML page: CommonMark with tables (markdown-it-py, which
    comes with rich), raw HTML in the Markdown escaped, and every image read from ``base_dir`` and
    embedded as a data URI."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(text)
    base = Path(base_dir)
    for token in tokens:
        for child in token.children or []:
            if child.type == "image":
                child.attrSet("src", _data_uri(base, str(child.attrGet("src"))))
    body = md.renderer.render(tokens, md.options, {})
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        f"{body}</body></html>\n"
    )


def _data_uri(base: Path, src: str) -> str:
    if src.startswith("data:"):
        return src
    path = base / src
    mime = _MIME.get(path.suffix.lower())
    if mime is None:
        raise DataError(f"report image {src!r}: expected one of {sorted(_MIME)}")
    if not path.is_file():
        raise DataError(f"report image {src!r} not found in {base}")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
