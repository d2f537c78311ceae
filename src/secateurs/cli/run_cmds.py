"""``secateurs run CONFIG`` (the experiment pipeline) and ``secateurs demo``."""

from __future__ import annotations

import copy
from pathlib import Path

import typer
from rich.table import Table

from ..experiments.config import load_config, validate
from ..experiments.demo import DEMO_CONFIG
from ..experiments.pipeline import run_experiment
from ..reporting.report import seed_table
from .main import app
from .options import JsonOut, console, err_console, print_json


def _override(
    config: dict,
    out: Path | None,
    executor: str | None,
    workers: int | None,
    ray_address: str | None,
) -> dict:
    config = copy.deepcopy(config)
    if out is not None:
        config["output"] = str(out)
    if executor is not None:
        config["executor"]["kind"] = executor
    if workers is not None:
        config["executor"]["workers"] = workers
    if ray_address is not None:
        config["executor"]["kind"] = "ray"
        config["executor"]["ray_address"] = ray_address
    return validate(config)


def _show(results: dict, out: str, json_out: bool) -> None:
    if json_out:
        print_json(
            {
                "out": out,
                "table": results["table"],
                "front": (results.get("mixed") or {}).get("front"),
                "seconds": results.get("seconds"),
            }
        )
        return
    for scope, title in (("global", "Global metrics"), ("layer", "Layer-wise metrics")):
        rows = [r for r in results["table"] if r["scope"] == scope]
        if not rows:
            continue
        head, body = seed_table(rows)
        table = Table(title=f"{title} (teams chosen on validation; test accuracy)")
        for h in head:
            table.add_column(h)
        for row in body:
            table.add_row(*row)
        console.print(table)
    console.print(f"done in {results.get('seconds', 0):.0f} s; report: {Path(out) / 'report.md'}")


ExecutorOpt = typer.Option(None, "--executor", help="local or ray (overrides the config).")
WorkersOpt = typer.Option(
    None, "--workers", help="Parallel worker processes (local) or CPUs (ray)."
)
RayOpt = typer.Option(None, "--ray-address", help="Join this Ray cluster (implies --executor ray).")


@app.command()
def run(
    config: Path = typer.Argument(..., help="Experiment config (YAML); see examples/."),
    out: Path = typer.Option(None, "--out", help="Output folder (overrides the config's)."),
    executor: str = ExecutorOpt,
    workers: int = WorkersOpt,
    ray_address: str = RayOpt,
    json_out: bool = JsonOut,
) -> None:
    """Run (or resume) an experiment: pruned pools, HQ teams, tables and a report."""
    _run(_override(load_config(config), out, executor, workers, ray_address), json_out)


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Output folder."),
    executor: str = ExecutorOpt,
    workers: int = WorkersOpt,
    json_out: bool = JsonOut,
) -> None:
    """The built-in experiment on the embedded digits data (about a minute on 2 CPU cores)."""
    _run(_override(validate(DEMO_CONFIG), out, executor, workers, None), json_out)


def _run(cfg: dict, json_out: bool) -> None:
    log = (lambda m: None) if json_out else (lambda m: err_console.print(m))
    results = run_experiment(cfg, progress=not json_out, log=log)
    _show(results, cfg["output"], json_out)
