"""The experiment report: ``report.md`` (and optionally ``report.html``) with tables and figures."""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path

from ..io import write_text
from .plots import plot_accuracy_panels, plot_diversity_accuracy, plot_pareto


def _fmt(v, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{100 * v:.2f}" if pct else f"{v:.3f}"
    return str(v)


def seed_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The seed's results table: team, pruning, cost, accuracy of the whole pool and of the team."""
    head = [
        "metric",
        "pruned (level / actual)",
        "focal",
        "team",
        "cost (size/M)",
        "MACs / unpruned pool",
        "pool acc %",
        "team acc %",
        "difference",
    ]
    body = []
    for r in rows:
        diff = r.get("difference")
        body.append(
            [
                r["metric"],
                f"{r['level']:.0%} / {r['pruned']:.1%}",
                r["focal_metric"].upper(),
                f"{r['team']} {r['team_names']}" if r.get("team_names") else r.get("team") or "-",
                "-" if r.get("cost") is None else f"{r['cost']:.0%}",
                "-" if r.get("mac_fraction") is None else f"{r['mac_fraction']:.1%}",
                _fmt(r["pool_test_acc"], True),
                _fmt(r.get("team_test_acc"), True),
                "-" if diff is None else f"{100 * diff:+.2f}",
            ]
        )
    return head, body


def markdown_table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def write_report(config: dict, results: dict, out: str | Path) -> Path:
    out = Path(out)
    panels: dict[str, list[dict]] = defaultdict(list)
    names = results["pool"]
    for row in results["rounds"]:
        panels[config["pool"][row["member"]]["model"]].append(row)
    figures = [
        (
            "Test accuracy against fraction of units remaining (mean over seeds, 95% band)",
            plot_accuracy_panels(dict(panels), out / "accuracy_vs_remaining.png"),
        )
    ]
    mixed = results.get("mixed")
    if mixed:
        metric = config["ensemble"]["metrics"][0]
        levels = mixed["selections"][metric]["levels"]
        figures.append(
            (
                f"Mixed pool: focal diversity ({metric.upper()}) against ensemble accuracy",
                plot_diversity_accuracy(levels, out / "diversity_vs_accuracy.png", metric=metric),
            )
        )
        figures.append(
            (
                "Mixed pool: cost-accuracy Pareto front",
                plot_pareto(mixed["points"], mixed["front"], out / "pareto.png"),
            )
        )

    parts = [f"# {config['name']}: pruned pools and small teams", ""]
    parts.append(
        f"Dataset `{config['dataset']['spec']}`; pool of {len(names)} models ({', '.join(names)}); "
        f"DropNet metrics {', '.join(config['dropnet']['metrics'])} with p = "
        f"{config['dropnet']['fraction']}, levels {', '.join(f'{v:.0%}' for v in config['dropnet']['levels'])}; "
        f"{config['ensemble']['method'].upper()} with beta = {config['ensemble']['beta']}, focal "
        f"{', '.join(m.upper() for m in config['ensemble']['metrics'])}, {config['ensemble']['vote']} "
        f"voting. Teams are chosen on the validation split; accuracies below are on the test split. "
        f"Run time {results.get('seconds', 0):.0f} s."
    )
    rule = next(iter(next(iter(results["selections"].values())).values()))["rule"]
    parts += ["", f"Recommended team rule: {rule}", ""]
    for scope, title in (("global", "Global metrics"), ("layer", "Layer-wise metrics")):
        rows = [r for r in results["table"] if r["scope"] == scope]
        if rows:
            parts += [f"## {title}", "", markdown_table(*seed_table(rows)), ""]
    if mixed:
        parts += [
            "## Mixed pool of every snapshot",
            "",
            f"{len(mixed['models'])} models. Recommended teams:",
            "",
        ]
        head = ["focal", "team", "size", "val acc %", "test acc %", "pool test acc %"]
        body = []
        for metric, sel in mixed["selections"].items():
            rec = sel["recommended"]
            body.append(
                [
                    metric.upper(),
                    " ".join(rec["names"]) if rec else "-",
                    str(rec["size"]) if rec else "-",
                    _fmt(rec and rec["selection_accuracy"], True),
                    _fmt(rec and rec["test_accuracy"], True),
                    _fmt(sel["pool"]["test_accuracy"], True),
                ]
            )
        parts += [markdown_table(head, body), "", "Pareto front (chosen on validation):", ""]
        head = ["team", "MACs / unpruned pool", "val acc %", "test acc %"]
        body = [
            [
                " ".join(p["team"]),
                f"{p['mac_fraction']:.1%}",
                _fmt(p["val_acc"], True),
                _fmt(p["test_acc"], True),
            ]
            for p in mixed["front"]
        ]
        parts += [markdown_table(head, body), ""]
    from ..experiments.comparison import comparison_markdown

    parts += [comparison_markdown(results), ""]
    parts += ["## Figures", ""]
    for caption, path in figures:
        parts += [f"![{caption}]({path.name})", "", f"*{caption}*", ""]
    text = "\n".join(parts)
    report = write_text(out / "report.md", text)
    if config.get("report", {}).get("html"):
        write_text(out / "report.html", markdown_to_html(text, config["name"]))
    return report


def markdown_to_html(text: str, title: str) -> str:
    """Just enough Markdown (headings, tables, images, paragraphs) for the report."""
    body, table = [], []

    def flush() -> None:
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= {"-"}]
            cells = [
                [html.escape(c.strip()) for c in r.strip().strip("|").split("|")] for r in rows
            ]
            out = ["<table>", "<tr>" + "".join(f"<th>{c}</th>" for c in cells[0]) + "</tr>"]
            out += ["<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells[1:]]
            body.append("\n".join(out + ["</table>"]))
            table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            body.append(f'<img src="{html.escape(src.rstrip(")"))}" alt="{html.escape(alt)}">')
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    flush()
    style = "body{font-family:sans-serif;max-width:70em;margin:auto}td,th{border:1px solid #ccc;padding:2px 6px}table{border-collapse:collapse}img{max-width:100%}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
