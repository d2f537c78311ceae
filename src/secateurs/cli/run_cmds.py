"""``secateurs run CONFIG`` (the experiment pipeline) and ``secateurs demo``."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import typer

from . import state
from .main import app
from .options import (
    Executor,
    Imports,
    JsonOut,
    announce,
    console,
    print_json,
    print_table,
    resumable,
    value,
)


def _override(
    config: dict,
    out: Path | None,
    executor: Any,
    workers: int | None,
    ray_address: str | None,
) -> dict:
    from ..experiments.config import validate

    config = copy.deepcopy(config)
    if out is not None:
        config["output"] = str(out)
    if executor is not None:
        config["executor"]["kind"] = value(executor)
    if workers is not None:
        config["executor"]["workers"] = workers
    if ray_address is not None:
        config["executor"]["kind"] = "ray"
        config["executor"]["ray_address"] = ray_address
    return validate(config)


def _team(value: Any) -> list[int]:
    """A team as a list of pool indices (the pipeline's tables write it as "{0,2}")."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [int(v) for v in value.strip("{}").replace(",", " ").split()]
    return [int(v) for v in value]


def _names(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    return value.split() if isinstance(value, str) else [str(v) for v in value]


def json_summary(results: dict, out: str) -> dict:
    """The ``run``/``demo`` --json shape (docs/cli.md): one row per (DropNet metric, level,
    diversity metric) with the team as indices and names, and the mixed pool's Pareto front."""
    table = []
    for row in results["table"]:
        row = dict(row)
        row["team"] = _team(row.get("team"))
        row["team_names"] = _names(row.get("team_names"))
        table.append(row)
    front = [{**p, "team": _names(p.get("team"))}
             for p in (results.get("mixed") or {}).get("front") or []]
    return {"out": out, "seconds": results.get("seconds"), "table": table, "front": front}


def _show(results: dict, out: str, json_out: bool) -> None:
    if json_out:
        print_json(json_summary(results, out))
        return
    from ..reporting.report import seed_table

    for scope, title in (("global", "Global metrics"), ("layer", "Layer-wise metrics")):
        rows = [r for r in results["table"] if r["scope"] == scope]
        if not rows:
            continue
        head, body = seed_table(rows)
        print_table(f"{title} (teams chosen on validation; test accuracy)", head, body,
                    right=tuple(range(4, len(head))))
    console.print(
        f"done in {results.get('seconds', 0):.0f} s; report: {Path(out) / 'report.md'}",
        highlight=False, soft_wrap=True,
    )


ExecutorOpt = typer.Option(None, "--executor", help="Where tasks run (overrides the config).")
WorkersOpt = typer.Option(
    None, "--workers", help="Parallel worker processes (local) or CPUs (ray)."
)
RayOpt = typer.Option(None, "--ray-address", help="Join this Ray cluster (implies --executor ray).")


@app.command()
def run(
    config: Path = typer.Argument(..., help="Experiment config (YAML); see examples/."),
    out: Path = typer.Option(None, "--out", help="Output folder (overrides the config's)."),
    executor: Executor = ExecutorOpt,
    workers: int = WorkersOpt,
    ray_address: str = RayOpt,
    imports: list[str] = Imports,
    json_out: bool = JsonOut,
) -> None:
    """Run or resume an experiment from a YAML config.

    Pruned pools, HQ teams, tables and a report; rerun to resume."""
    from ..experiments.config import load_config

    cfg = load_config(config)
    cfg["imports"] = [*cfg["imports"], *(s for s in state.imports if s not in cfg["imports"])]
    _run(_override(cfg, out, executor, workers, ray_address), json_out)


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Output folder."),
    executor: Executor = ExecutorOpt,
    workers: int = WorkersOpt,
    json_out: bool = JsonOut,
) -> None:
    """Run the built-in experiment on the embedded digits data.

    About a minute on 2 CPU cores."""
    from ..experiments.config import validate
    from ..experiments.demo import DEMO_CONFIG

    _run(_override(validate(DEMO_CONFIG), out, executor, workers, None), json_out)


def _settings(cfg: dict) -> dict:
    from ..training import resolve_device

    dn, en, ex = cfg["dropnet"], cfg["ensemble"], cfg["executor"]
    device = cfg["training"]["device"]
    return {
        "name": cfg["name"],
        "dataset": cfg["dataset"]["spec"],
        "pool": " ".join(f"{m['name']}[{','.join(map(str, m['seeds']))}]" for m in cfg["pool"]),
        "dropnet_metrics": dn["metrics"],
        "levels": dn["levels"],
        "fraction": dn["fraction"],
        "lockstep": dn["lockstep"],
        "ensemble_metrics": en["metrics"],
        "beta": en["beta"],
        "vote": en["vote"],
        "executor": ex["kind"],
        "workers": ex["workers"],
        "epochs": cfg["training"]["max_epochs"],
        "device": f"{device} ({resolve_device(device)})",
        "seed": cfg["seed"],
    }


def _run(cfg: dict, json_out: bool) -> None:
    from ..experiments.pipeline import check_experiment, run_experiment
    from .options import err_console

    check_experiment(cfg)  # bad settings fail in one line before the header and any work
    announce(cfg["output"], _settings(cfg))
    resumable(cfg["output"])
    results = run_experiment(
        cfg, progress=True, log=lambda m: err_console.print(m, highlight=False, soft_wrap=True)
    )
    _show(results, cfg["output"], json_out)
