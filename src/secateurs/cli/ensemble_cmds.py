"""``secateurs select`` and ``secateurs diversity``: ensemble pruning from saved predictions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..ensembles import (
    DEFAULT_MAX_TEAMS,
    METHODS,
    METRIC_NAMES,
    METRICS,
    VOTES,
    WEIGHTINGS,
    PredictionPool,
    SelectionResult,
    TeamReport,
    load_predictions,
    select_team,
    team_diversity,
    team_focal_diversity,
    to_score,
)
from ..errors import ConfigError
from .main import app

PREDICTIONS_HELP = (
    "Folder with labels.npy and one <model-name>.npy (N x C probabilities) per model; optional "
    "test/ subfolder and costs.json (see docs/ensembles.md)."
)


def _console() -> Console:
    return Console(file=sys.stdout, width=max(120, Console(file=sys.stdout).width))


def _load(predictions: Path | None, logits: bool) -> PredictionPool:
    if predictions is None:
        raise ConfigError("--predictions DIR is required (a folder of .npy predictions)")
    return load_predictions(predictions, logits=logits)


def _split_list(values: list[str] | None, default: list[str]) -> list[str]:
    out = [v.strip().lower() for item in (values or default) for v in item.split(",") if v.strip()]
    return out or default


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _team_row(label: str, rep: TeamReport) -> list[str]:
    cost = f"{100 * rep.cost['size_fraction']:.0f}% of models"
    for kind in ("params", "macs"):
        if f"{kind}_fraction" in rep.cost:
            cost += f", {100 * rep.cost[f'{kind}_fraction']:.0f}% of {kind}"
    return [label, ", ".join(rep.names), str(rep.size), _pct(rep.selection_accuracy),
            _pct(rep.test_accuracy), cost]


def _print_result(console: Console, r: SelectionResult) -> None:
    what = f"{'focal ' if r.focal else ''}{r.metric.upper()}" if r.metric else "accuracy"
    beta = f", beta={r.beta:g}" if r.beta is not None else ""
    title = f"{r.method} by {what}{beta}, max size {r.max_size}, {r.vote} voting"
    table = Table(title=title, title_justify="left")
    for col in ("", "team", "size", "selection acc %", "test acc %", "cost"):
        table.add_column(col, overflow="fold")
    if r.recommended is not None:
        table.add_row(*_team_row("recommended", r.recommended))
    table.add_row(*_team_row("whole pool", r.pool))
    table.add_row(*_team_row("best single", r.best_single))
    console.print(table)
    console.print(f"Rule: {r.rule}", highlight=False)
    levels = Table(title="Teams per size (selection split)", title_justify="left")
    for col in ("size", "candidates", "pruned", "kept", "min%", "max%", "mean%", "std%",
                ">best member", ">=best single", ">=pool"):
        levels.add_column(col, justify="right", no_wrap=True)
    for lv in r.levels:
        s = lv.stats
        levels.add_row(str(lv.size), str(lv.candidates), str(lv.pruned), str(lv.kept), _pct(s.min),
                       _pct(s.max), _pct(s.mean), _pct(s.std), str(s.beat_best_member),
                       str(s.reach_best_single), str(s.reach_pool))
    console.print(levels)
    for note in r.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(f"{r.teams_evaluated} teams evaluated in {r.seconds:.2f} s\n", highlight=False)


def _write_json(obj, indent: int | None = 2) -> None:
    sys.stdout.write(json.dumps(obj, indent=indent) + "\n")


@app.command("select")
def select(
    predictions: Path = typer.Option(None, "--predictions", help=PREDICTIONS_HELP),
    metric: list[str] = typer.Option(
        None, "--metric", help=f"Diversity metric(s), repeat or comma-separate: {', '.join(METRICS)} "
        "(default gd).",
    ),
    beta: float = typer.Option(0.1, "--beta", help="HQ: fraction of candidates pruned per size."),
    max_size: int = typer.Option(None, "--max-size", help="Largest team size (default M - 1)."),
    method: str = typer.Option("hq", "--method", help=f"One of {', '.join(METHODS)}."),
    vote: str = typer.Option("soft", "--vote", help=f"One of {', '.join(VOTES)}."),
    focal: bool = typer.Option(True, "--focal/--no-focal", help="Focal (default) or plain diversity."),
    weighting: str = typer.Option(
        "rank", "--weighting", help="Focal average over members: rank (by accuracy) or mean."
    ),
    resample: bool = typer.Option(
        False, "--resample", help="Focal metrics on 3 draws of 100 negatives (the reference's shortcut)."
    ),
    logits: bool = typer.Option(False, "--logits", help="Files hold logits: apply a softmax."),
    seed: int = typer.Option(0, "--seed", help="Seed for --resample and k-means."),
    max_teams: int = typer.Option(
        DEFAULT_MAX_TEAMS, "--max-teams", help="Most teams held at once (per size for HQ)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print machine-readable JSON on stdout."),
) -> None:
    """Choose a small team of models whose ensemble matches the whole pool (selection split)."""
    metrics = _split_list(metric, ["gd"])
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"--weighting must be one of {list(WEIGHTINGS)}, got {weighting!r}")
    pool = _load(predictions, logits)
    results = select_team(
        pool, method=method, metric=metrics, beta=beta, max_size=max_size, vote=vote, focal=focal,
        seed=seed, weighting=weighting, resample=resample, max_teams=max_teams,
    )
    if json_out:
        # compact: the kept teams of every size can be long lists
        _write_json({"predictions": str(predictions),
                     "results": [r.to_dict() for r in results.values()]}, indent=None)
        return
    console = _console()
    console.print(
        f"{pool.num_models} models, {pool.selection.num_samples} selection samples"
        + (f", {pool.test.num_samples} test samples" if pool.test is not None else ", no test split")
        + f", {pool.num_classes} classes\n", highlight=False,
    )
    for r in results.values():
        _print_result(console, r)


@app.command("diversity")
def diversity(
    predictions: Path = typer.Option(None, "--predictions", help=PREDICTIONS_HELP),
    team: str = typer.Option(None, "--team", help="Comma-separated model names, e.g. a,b,c."),
    focal: bool = typer.Option(
        False, "--focal", help="Also each member's raw metrics on its negatives (not normalised)."
    ),
    logits: bool = typer.Option(False, "--logits", help="Files hold logits: apply a softmax."),
    json_out: bool = typer.Option(False, "--json", help="Print machine-readable JSON on stdout."),
) -> None:
    """Every diversity metric's raw value for one team on the selection split."""
    if not team:
        raise ConfigError("--team NAME,NAME,... is required")
    pool = _load(predictions, logits)
    names = [t.strip() for t in team.split(",") if t.strip()]
    raw = team_diversity(pool, names)
    per_member = team_focal_diversity(pool, names) if focal else None
    if json_out:
        out = {
            "team": names,
            "raw": raw,
            "score": {m: float(to_score(m, v)) for m, v in raw.items()},
        }
        if per_member is not None:
            out["focal_raw"] = per_member
        _write_json(out)
        return
    console = _console()
    table = Table(title=f"Diversity of {', '.join(names)} ({pool.selection.num_samples} samples)",
                  title_justify="left")
    for col in ("metric", "name", "raw", "diversity score (higher = more diverse)"):
        table.add_column(col)
    for m, v in raw.items():
        table.add_row(m.upper(), METRIC_NAMES[m], f"{v:.6f}", f"{to_score(m, v):.6f}")
    console.print(table)
    if per_member is not None:
        ft = Table(title="Raw metrics on each focal member's negatives (before normalisation)",
                   title_justify="left")
        ft.add_column("focal model")
        ft.add_column("negatives", justify="right")
        for m in METRICS:
            ft.add_column(m.upper(), justify="right")
        for name, row in per_member.items():
            ft.add_row(name, str(row["negatives"]), *[f"{row[m]:.4f}" for m in METRICS])
        console.print(ft)
