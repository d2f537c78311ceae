"""``secateurs sweep`` (DropNet at several pruning fractions p) and ``secateurs interpret`` (a page
of figures about what a DropNet study pruned). Heavy imports happen inside the commands."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ConfigError
from .main import app
from .options import DataDir, Device, Imports, JsonOut, console, out_dir, print_json, train_config


@app.command()
def sweep(
    model: str = typer.Option(..., "--model", help="Model name, e.g. model-a:widths=20-20."),
    dataset: str = typer.Option("digits", "--dataset", help="Dataset spec."),
    fraction: list[float] = typer.Option(
        [0.1, 0.2, 0.3, 0.5], "--fraction", help="A pruning fraction p; repeat for several."
    ),
    metric: str = typer.Option("minimum", "--metric", help="The DropNet metric (not oracle)."),
    until: float = typer.Option(
        None, "--until", help="Stop at this remaining fraction (default 0.1 unless --kappa)."
    ),
    kappa: float = typer.Option(None, "--kappa", help="Stop once val accuracy < kappa x unpruned."),
    max_rounds: int = typer.Option(None, "--max-rounds", help="Stop after this many rounds."),
    reset: str = typer.Option("initial", "--reset", help="initial, random or continue."),
    seeds: int = typer.Option(1, "--seeds", help="Number of seeds (seed, seed+1, ...)."),
    seed: int = typer.Option(
        0, "--seed", min=0, max=2**31 - 1, help="First seed (also splits the data)."
    ),
    score_samples: int = typer.Option(
        None, "--score-samples", help="Score on the first N training samples."
    ),
    at: list[float] = typer.Option(
        [0.5, 0.3, 0.2, 0.1], "--at", help="A size (fraction remaining) for the table; repeat."
    ),
    out: Path = typer.Option(Path("runs/sweep"), "--out", help="Output folder (reruns resume)."),
    data_dir: Path = DataDir,
    lr: float = typer.Option(0.1, help="Learning rate."),
    epochs: int = typer.Option(100, help="Maximum epochs per round."),
    batch_size: int = typer.Option(32, help="Mini-batch size."),
    patience: int = typer.Option(5, min=0, help="Early-stopping patience (0: off)."),
    optimizer: str = typer.Option("sgd", help="sgd or adam."),
    momentum: float = typer.Option(0.0, help="SGD momentum."),
    weight_decay: float = typer.Option(0.0, help="Weight decay."),
    restore_best: bool = typer.Option(False, help="Keep each round's best epoch, not the last."),
    lockstep: bool = typer.Option(
        True, "--lockstep/--no-lockstep", help="Train every p's runs together as one batch."
    ),
    device: str = Device,
    imports: list[str] = Imports,
    json_out: bool = JsonOut,
) -> None:
    """DropNet at several fractions p: accuracy and training FLOPs spent per size (sweep.md)."""
    from ..data import load_dataset
    from ..experiments.sweep import run_sweep
    from ..pruning import DropNetConfig

    if until is None and kappa is None:
        until = 0.1
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    config = DropNetConfig(
        metric=metric,
        until=until,
        kappa=kappa,
        max_rounds=max_rounds,
        reset=reset,
        score_samples=score_samples,
        train=train_config(
            lr, epochs, batch_size, patience, optimizer, momentum, weight_decay, restore_best,
            device,
        ),
    )
    data = load_dataset(dataset, data_dir, seed=seed)
    result = run_sweep(
        model,
        data,
        fraction,
        list(range(seed, seed + seeds)),
        config,
        metric=metric,
        out=out_dir(out),
        dataset_spec=dataset,
        split_seed=seed,
        targets=at,
        progress=not json_out,
        lockstep=lockstep,
    )
    table = result.table(at)
    if json_out:
        print_json({"out": str(out), "table": table})
        return
    from ..experiments.sweep import sweep_markdown

    typer.echo(sweep_markdown(result, table))
    console.print(f"wrote {out}/sweep.md, {out}/sweep.png, {out}/sweep_table.csv")


@app.command()
def interpret(
    run: Path = typer.Argument(
        ..., help="A study folder written by `secateurs prune` (or a sweep's p-P folder)."
    ),
    metric: str = typer.Option(
        None, "--metric", help="Whose first layer and input paths to draw (default minimum)."
    ),
    seed: int = typer.Option(None, "--seed", help="Which seed's run (default the first)."),
    round_: int = typer.Option(None, "--round", help="Which round (default the run's last)."),
    out: Path = typer.Option(None, "--out", help="Output folder (default RUN/interpret)."),
    imports: list[str] = Imports,
    json_out: bool = JsonOut,
) -> None:
    """Figures on what a DropNet study pruned: widths, scores, first-layer units, live inputs."""
    from ..reporting.interpret import interpret_study

    if out is not None:
        out = out_dir(out)
    result = interpret_study(run, out, metric=metric, seed=seed, round_=round_)
    summary = {"out": str(result.out), "metric": result.metric, "seed": result.seed,
               "round": result.round, "figures": result.figures, **result.summary}
    if json_out:
        print_json(summary)
        return
    console.print(f"wrote {result.out / 'interpret.md'} ({', '.join(result.figures)})")
