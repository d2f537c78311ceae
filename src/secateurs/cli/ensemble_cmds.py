"""``secateurs select`` and ``secateurs diversity``: ensemble pruning from saved predictions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..ensembles import (
    ALL_METHODS,
    BASELINES,
    DEFAULT_MAX_TEAMS,
    DEFAULT_WIDTH,
    HQ_VARIANTS,
    METRIC_NAMES,
    METRICS,
    VOTES,
    WEIGHTINGS,
    ConsensusResult,
    PredictionPool,
    SelectionResult,
    TeamReport,
    compare_selections,
    load_predictions,
    select_consensus,
    select_team,
    team_diversity,
    team_focal_diversity,
    to_score,
)
from ..errors import ConfigError
from ..progress import on_terminal
from .main import app

PREDICTIONS_HELP = (
    "Folder with labels.npy and one <model-name>.npy (N x C probabilities) per model; optional "
    "test/ subfolder, costs.json and pool.json (model order; see docs/ensembles.md)."
)


def _console() -> Console:
    from .options import console

    return console


def _table(console: Console, table: Table) -> None:
    """A rich table printed so that nothing is cut or folded mid-word: wrapped at spaces on a
    terminal, one block per row when too wide, plain aligned text in a pipe (options.print_table)."""
    from .options import print_table

    head = [str(c.header) for c in table.columns]
    rows = list(zip(*[[str(v) for v in c._cells] for c in table.columns], strict=True))
    right = [i for i, c in enumerate(table.columns) if c.justify == "right"]
    print_table(str(table.title or ""), head, rows, right=right, out=console)


def _load(predictions: Path, logits: bool) -> PredictionPool:
    return load_predictions(predictions, logits=logits)


def _split_list(values: list[str] | None, default: list[str], option: str) -> list[str]:
    out = [v.strip().lower() for item in (values or default) for v in item.split(",") if v.strip()]
    if not out:  # "--metric ," names nothing: not the default in disguise
        raise ConfigError(f"{option} {','.join(values or [])!r} names nothing; give e.g. {option} "
                          f"{default[0]}")
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _team_text(indices, names) -> str:
    """Names beside indices (pool order), shortened for very large teams."""
    pairs = [f"{i} {n}" for i, n in zip(indices, names, strict=True)]
    if len(pairs) > 12:
        pairs = pairs[:10] + [f"... {len(pairs) - 10} more"]
    return ", ".join(pairs)


def _cost_text(size_fraction: float, macs: float | None = None, params: float | None = None) -> str:
    cost = f"{100 * size_fraction:.1f}% of models"
    for kind, v in (("params", params), ("macs", macs)):
        if v is not None:
            cost += f", {100 * v:.1f}% of {kind}"
    return cost


def _team_row(label: str, rep: TeamReport) -> list[str]:
    cost = _cost_text(rep.cost["size_fraction"], rep.cost.get("macs_fraction"),
                      rep.cost.get("params_fraction"))
    return [label, _team_text(rep.indices, rep.names), str(rep.size), _pct(rep.selection_accuracy),
            _pct(rep.test_accuracy), cost]


def _print_result(console: Console, r: SelectionResult) -> None:
    if r.criterion is not None:
        title = f"{r.method} ({r.criterion}), size {r.max_size}, {r.vote} voting"
    else:
        what = f"{'focal ' if r.focal else ''}{r.metric.upper()}" if r.metric else "accuracy"
        beta = f", beta={r.beta:g}" if r.beta is not None else ""
        variant = f", {r.variant} HQ" + (f" (W={r.width})" if r.width else "") if r.variant else ""
        title = f"{r.method} by {what}{beta}{variant}, max size {r.max_size}, {r.vote} voting"
    table = Table(title=title, title_justify="left")
    for col in ("", "team", "size", "selection acc %", "test acc %", "cost"):
        table.add_column(col, overflow="fold")
    if r.recommended is not None:
        table.add_row(*_team_row("recommended", r.recommended))
    table.add_row(*_team_row("whole pool", r.pool))
    table.add_row(*_team_row("best single", r.best_single))
    _table(console, table)
    console.print(f"Rule: {r.rule}", highlight=False)
    if not r.levels:
        for note in r.notes:
            console.print(f"note: {note}", highlight=False)
        console.print(f"chosen in {r.seconds:.2f} s\n", highlight=False)
        return
    levels = Table(title="Teams per size (selection split)", title_justify="left")
    bounded = r.variant == "bounded"
    cols = ["size", "candidates", "pruned", *(["dropped"] if bounded else []), "kept", "min%",
            "max%", "mean%", "std%", ">best member", ">=best single", ">=pool"]
    for col in cols:
        levels.add_column(col, justify="right", no_wrap=True)
    for lv in r.levels:
        s = lv.stats
        extra = [str(lv.dropped)] if bounded else []
        levels.add_row(str(lv.size), str(lv.candidates), str(lv.pruned), *extra, str(lv.kept),
                       _pct(s.min),
                       _pct(s.max), _pct(s.mean), _pct(s.std), str(s.beat_best_member),
                       str(s.reach_best_single), str(s.reach_pool))
    _table(console, levels)
    for note in r.notes:
        console.print(f"note: {note}", highlight=False)
    console.print(f"{r.teams_evaluated} teams evaluated in {r.seconds:.2f} s\n", highlight=False)


def _print_consensus(console: Console, c: ConsensusResult) -> None:
    title = (f"Consensus of focal {', '.join(m.upper() for m in c.metrics)}: teams kept by at "
             f"least q={c.quorum} of {len(c.metrics)} HQ runs")
    table = Table(title=title, title_justify="left")
    for col in ("", "team", "size", "selection acc %", "test acc %", "cost"):
        table.add_column(col, overflow="fold")
    if c.recommended is not None:
        table.add_row(*_team_row("recommended", c.recommended))
    table.add_row(*_team_row("whole pool", c.pool))
    _table(console, table)
    console.print(f"Rule: {c.rule}", highlight=False)
    sizes = Table(title="Consensus teams per size", title_justify="left")
    for col in ("size", "teams", "max acc%", "reach pool"):
        sizes.add_column(col, justify="right")
    pool_acc = c.pool.selection_accuracy
    for lv in c.levels:
        sizes.add_row(str(lv.size), str(len(lv.teams)), _pct(float(lv.accuracy.max())),
                      str(int((lv.accuracy >= pool_acc).sum())))
    _table(console, sizes)
    for note in c.notes:
        console.print(f"note: {note}", highlight=False)
    console.print()


def _print_comparison(console: Console, cmp: dict) -> None:
    title = (f"Comparison at team size {cmp['size']} of {cmp['num_models']} models "
             f"({cmp['vote']} voting; selection split chooses"
             + (", test split reports)" if cmp["has_test"] else "; no test split)"))
    table = Table(title=title, title_justify="left")
    for col in ("method", "team", "selection acc %", "test acc %", "cost"):
        table.add_column(col, overflow="fold")
    for row in [*cmp["rows"], cmp["pool"]]:
        table.add_row(row["label"], _team_text(row["indices"], row["names"]),
                      _pct(row["selection_accuracy"]), _pct(row["test_accuracy"]),
                      _cost_text(row["size_fraction"], row["macs_fraction"], row["params_fraction"]))
    _table(console, table)


def _write_json(obj, indent: int | None = 2) -> None:
    sys.stdout.write(json.dumps(obj, indent=indent) + "\n")


@app.command("select")
def select(
    predictions: Path = typer.Option(..., "--predictions", help=PREDICTIONS_HELP),
    metric: list[str] = typer.Option(
        None, "--metric", help=f"Diversity metric(s), repeat or comma-separate: {', '.join(METRICS)} "
        "(default gd).",
    ),
    beta: float = typer.Option(0.1, "--beta", help="HQ: fraction of candidates pruned per size."),
    max_size: int = typer.Option(
        None, "--max-size", help="Largest team size (default M - 1, at least 2; bounded HQ: min(M - 1, 16))."
    ),
    method: str = typer.Option("hq", "--method", help=f"One of {', '.join(ALL_METHODS)}."),
    criterion: str = typer.Option(
        None, "--criterion", help="Baselines: " + "; ".join(
            f"{m}: {', '.join(c)}" for m, c in BASELINES.items()) + " (first is the default)."
    ),
    size: int = typer.Option(None, "--size", help="Baselines: team size K."),
    hq_variant: str = typer.Option(
        "auto", "--hq-variant", help=f"HQ search: {', '.join(HQ_VARIANTS)} (auto: exact where it "
        "fits --max-teams and 1 GiB, else bounded)."
    ),
    width: int = typer.Option(
        DEFAULT_WIDTH, "--width", help="Bounded HQ: most teams kept per size (W)."
    ),
    consensus: bool = typer.Option(
        False, "--consensus", help="Combine the HQ runs of all --metric metrics by metric voting."
    ),
    quorum: int = typer.Option(
        None, "--quorum", help="Consensus: votes a team needs (default: majority of metrics)."
    ),
    compare: bool = typer.Option(
        False, "--compare", help="Also run every baseline at the recommended team's size."
    ),
    vote: str = typer.Option("soft", "--vote", help=f"One of {', '.join(VOTES)}."),
    focal: bool = typer.Option(True, "--focal/--no-focal", help="Focal (default) or plain diversity."),
    weighting: str = typer.Option(
        "rank", "--weighting", help="Focal average over members: rank (by accuracy) or mean."
    ),
    resample: bool = typer.Option(
        False, "--resample", help="Focal metrics on 3 draws of 100 negatives (the reference's shortcut)."
    ),
    logits: bool = typer.Option(False, "--logits", help="Files hold logits: apply a softmax."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1,
                             help="Seed for --resample, k-means and random teams."),
    max_teams: int = typer.Option(
        DEFAULT_MAX_TEAMS, "--max-teams", min=1, help="Most teams held at once (per size for HQ)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print machine-readable JSON on stdout."),
) -> None:
    """Choose a small team of models whose ensemble matches the whole pool (selection split)."""
    metrics = _split_list(metric, ["gd"], "--metric")
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"--weighting must be one of {list(WEIGHTINGS)}, got {weighting!r}")
    if consensus and str(method).lower() != "hq":
        raise ConfigError(f"--consensus combines HQ runs; it cannot be used with --method {method}")
    if quorum is not None and not consensus:
        raise ConfigError("--quorum is only used with --consensus")
    pool = _load(predictions, logits)
    hq_kw = dict(beta=beta, max_size=max_size, vote=vote, focal=focal, seed=seed,
                 weighting=weighting, resample=resample, max_teams=max_teams,
                 variant=hq_variant, width=width,
                 # a transient bar on a terminal only: a selection takes seconds, and scripts
                 # read its stdout and exit code
                 progress=on_terminal())
    agreed = None
    if consensus:
        agreed = select_consensus(pool, metrics, quorum, **hq_kw)
        results = list(agreed.per_metric.values())
    elif str(method).lower() in BASELINES:
        results = [select_team(pool, method, criterion=criterion, size=size, seed=seed, vote=vote)]
    else:
        results = list(select_team(pool, method=method, metric=metrics, criterion=criterion,
                                   size=size, **hq_kw).values())
    comparison = None
    if compare:
        comparison = compare_selections(pool, agreed if agreed is not None else results[0],
                                        seed=seed, vote=vote)
    if json_out:
        # compact: the kept teams of every size can be long lists
        _write_json({
            "predictions": str(predictions),
            "models": list(pool.names),
            "results": [r.to_dict() for r in results],
            "consensus": None if agreed is None else agreed.to_dict(include_per_metric=False),
            "comparison": comparison,
        }, indent=None)
        return
    console = _console()
    console.print(
        f"{pool.num_models} models, {pool.selection.num_samples} selection samples"
        + (f", {pool.test.num_samples} test samples" if pool.test is not None else ", no test split")
        + f", {pool.num_classes} classes\n", highlight=False,
    )
    for r in results:
        _print_result(console, r)
    if agreed is not None:
        _print_consensus(console, agreed)
    if comparison is not None:
        _print_comparison(console, comparison)


@app.command("diversity")
def diversity(
    predictions: Path = typer.Option(..., "--predictions", help=PREDICTIONS_HELP),
    team: str = typer.Option(..., "--team", help="Comma-separated model names, e.g. a,b,c."),
    focal: bool = typer.Option(
        False, "--focal", help="Also each member's raw metrics on its negatives (not normalised)."
    ),
    logits: bool = typer.Option(False, "--logits", help="Files hold logits: apply a softmax."),
    json_out: bool = typer.Option(False, "--json", help="Print machine-readable JSON on stdout."),
) -> None:
    """Every diversity metric's raw value for one team on the selection split."""
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
    _table(console, table)
    if per_member is not None:
        ft = Table(title="Raw metrics on each focal member's negatives (before normalisation)",
                   title_justify="left")
        ft.add_column("focal model")
        ft.add_column("negatives", justify="right")
        for m in METRICS:
            ft.add_column(m.upper(), justify="right")
        for name, row in per_member.items():
            ft.add_row(name, str(row["negatives"]), *[f"{row[m]:.4f}" for m in METRICS])
        _table(console, ft)
