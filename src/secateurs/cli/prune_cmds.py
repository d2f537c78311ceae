"""``secateurs prune`` (a DropNet study) and ``secateurs export`` (a round as a smaller network)."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ConfigError
from .main import app
from .options import (
    METRICS,
    Coupling,
    DataDir,
    Device,
    Imports,
    JsonOut,
    Optimizer,
    Reset,
    announce,
    console,
    err_console,
    out_dir,
    print_json,
    print_table,
    resumable,
    train_config,
    value,
)
from .recipe import Augment, Milestones, Schedule, ScheduleUnit, WarmupEpochs, with_recipe


@app.command()
def prune(
    model: str = typer.Option(..., "--model", help="Model name, e.g. model-a:widths=20-20."),
    dataset: str = typer.Option("digits", "--dataset", help="Dataset spec."),
    metric: list[str] = typer.Option(
        ["minimum"],
        "--metric",
        help=f"DropNet metric; repeat for several: {', '.join(METRICS)}.",
    ),
    fraction: float = typer.Option(
        0.2, "--fraction", help="Fraction p of remaining units dropped per round."
    ),
    until: float = typer.Option(
        None, "--until", help="Stop at this remaining fraction (default 0.1 unless --kappa)."
    ),
    kappa: float = typer.Option(None, "--kappa", help="Stop once val accuracy < kappa x unpruned."),
    max_rounds: int = typer.Option(
        None, "--max-rounds", help="Stop after this many pruning rounds."
    ),
    reset: Reset = typer.Option(
        "initial", "--reset", help="Survivors' weights after a round: initial, fresh random, kept."
    ),
    seeds: int = typer.Option(1, "--seeds", help="Number of seeds (seed, seed+1, ...)."),
    seed: int = typer.Option(
        0, "--seed", min=0, max=2**31 - 1, help="First seed (also splits the data)."
    ),
    one_per_round: bool = typer.Option(
        False, "--one-per-round", help="Drop exactly one unit per round."
    ),
    coupled: Coupling = typer.Option(
        "separate",
        "--coupled",
        help="Residual-coupled channels: 'separate' (each conv on its own, as the paper) or "
        "'group' (scored and dropped together, so export removes them all).",
    ),
    score_samples: int = typer.Option(
        None, "--score-samples", help="Score on the first N training samples."
    ),
    out: Path = typer.Option(Path("runs/prune"), "--out", help="Output folder (reruns resume)."),
    data_dir: Path = DataDir,
    lr: float = typer.Option(0.1, help="Learning rate."),
    epochs: int = typer.Option(100, help="Maximum epochs per round."),
    batch_size: int = typer.Option(32, help="Mini-batch size."),
    patience: int = typer.Option(5, min=0, help="Early-stopping patience (0: off)."),
    optimizer: Optimizer = typer.Option("sgd", help="Optimizer."),
    momentum: float = typer.Option(0.0, help="SGD momentum."),
    weight_decay: float = typer.Option(0.0, help="Weight decay."),
    restore_best: bool = typer.Option(False, help="Keep each round's best epoch, not the last."),
    schedule: str = Schedule,
    schedule_unit: str = ScheduleUnit,
    warmup_epochs: float = WarmupEpochs,
    milestones: str = Milestones,
    augment: bool = Augment,
    lockstep: bool = typer.Option(
        True,
        "--lockstep/--no-lockstep",
        help="Train the runs together as one batched model (same results up to float rounding).",
    ),
    device: str = Device,
    imports: list[str] = Imports,
    json_out: bool = JsonOut,
) -> None:
    """Run a DropNet study: every metric x seed, each round recorded.

    Writes per-round CSV/JSON, weights and accuracy.png to --out; rerun to resume."""
    import torch

    from ..data import load_dataset
    from ..experiments.prune_study import check_study_folder, run_prune_study
    from ..io import check_writable_dir
    from ..models import build_model
    from ..pruning import DropNetConfig
    from ..pruning.metrics import get_metric
    from ..training import resolve_device

    if until is None and kappa is None:
        until = 0.1
    if "oracle" in metric:
        one_per_round = one_per_round or len(metric) > 1  # compare like with like
    train_cfg = with_recipe(
        train_config(
            lr, epochs, batch_size, patience, optimizer, momentum, weight_decay, restore_best,
            device,
        ),
        schedule, schedule_unit, warmup_epochs, milestones, augment,
    )
    config = DropNetConfig(
        fraction=fraction,
        until=until,
        kappa=kappa,
        max_rounds=max_rounds,
        reset=value(reset),
        one_per_round=one_per_round,
        score_samples=score_samples,
        coupled=value(coupled),
        train=train_cfg,
    )
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    metrics = list(dict.fromkeys(metric))
    for m in metrics:
        get_metric(m)  # a typo fails before the header
    check_writable_dir(out_dir(out), "--out")
    data = load_dataset(dataset, data_dir, seed=seed)
    out = out_dir(out)
    with torch.random.fork_rng(devices=[]):  # a bad --model fails before the header
        build_model(model, data.input_shape, data.num_classes)
    check_study_folder(out, model, data, metrics, list(range(seed, seed + seeds)), config,
                       dataset_spec=dataset, split_seed=seed)
    train = config.train
    announce(out, {
        "model": model, "dataset": dataset, "metrics": metrics,
        "seeds": list(range(seed, seed + seeds)), "fraction": fraction, "until": until,
        "kappa": kappa, "max_rounds": max_rounds, "reset": config.reset,
        "one_per_round": one_per_round, "coupled": config.coupled, "lockstep": lockstep,
        **{k: v for k, v in train.to_dict().items() if k != "device"},
        "device": f"{device} ({resolve_device(device)})",
    })
    resumable(out)
    study = run_prune_study(
        model,
        data,
        metrics,
        list(range(seed, seed + seeds)),
        config,
        out=out,
        dataset_spec=dataset,
        split_seed=seed,
        progress=True,
        lockstep=lockstep,
        log=err_console.print,
    )
    if json_out:
        print_json({"out": str(out), "summary": study.summary()})
        return
    print_table(
        f"DropNet: {model} on {dataset}, mean test accuracy over seeds at the remaining "
        "fraction shown",
        ["metric", "seeds", "rounds", "unpruned", "near 50% left", "near 25% left", "final"],
        [
            [r["metric"], r["seeds"], r["rounds"], f"{r['unpruned']['test_acc']:.4f}",
             *(f"{r[k]['test_acc']:.4f} at {r[k]['remaining']:.2f}"
               for k in ("near_50", "near_25", "final"))]
            for r in study.summary()
        ],
        right=(1, 2, 3),
    )
    console.print(f"wrote {out}/rounds.csv, {out}/accuracy.png", highlight=False, soft_wrap=True)


@app.command()
def export(
    run: Path = typer.Argument(..., help="Folder written by `secateurs prune`."),
    metric: str = typer.Option(None, "--metric", help="Which metric's run (if several)."),
    seed: int = typer.Option(None, "--seed", help="Which seed's run (if several)."),
    round_: int = typer.Option(None, "--round", help="Round to export (0 = unpruned)."),
    remaining: float = typer.Option(
        None, "--remaining", help="Export the round nearest this remaining fraction."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="A .safetensors file (the architecture in its metadata), or a folder for "
        "model.safetensors + architecture.json.",
    ),
    imports: list[str] = Imports,
    json_out: bool = JsonOut,
) -> None:
    """Export one recorded round as a physically smaller network.

    Weights in safetensors, the architecture in JSON (no pickle)."""
    import torch

    from ..experiments.prune_study import rebuild_round
    from ..io import check_writable_dir
    from ..pruning import export_pruned, save_exported
    from ..pruning.surgery import is_single_file

    if (round_ is None) == (remaining is None):
        raise ConfigError("give exactly one of --round K or --remaining F")
    if remaining is not None and not 0.0 <= remaining <= 1.0:
        raise ConfigError(f"--remaining {remaining:g}: expected a fraction in [0, 1]")
    if round_ is not None and round_ < 0:
        raise ConfigError(f"--round {round_}: expected a round number >= 0")
    if is_single_file(out):
        if out.is_dir():
            raise ConfigError(f"--out {out} is a directory; a .safetensors file was expected")
        check_writable_dir(out.parent, "--out")
    else:
        out = out_dir(out)
        check_writable_dir(out, "--out")
    masked, result, r = rebuild_round(run, metric, seed, round_, remaining)
    example = torch.zeros(1, *masked.input_shape, dtype=masked.input_dtype)
    exported = export_pruned(masked, example)
    save_exported(out, exported)
    summary = {
        "metric": result.metric,
        "seed": result.seed,
        "round": r,
        "remaining": result.rounds[r]["remaining"],
        "test_acc": result.rounds[r]["test_acc"],
        "params": exported.params,
        "params_before": exported.params_before,
        "macs": exported.macs,
        "macs_before": exported.macs_before,
        "out": str(out),
        "note": exported.summary(),
    }
    if json_out:
        print_json(summary)
    else:
        console.print(exported.summary(), highlight=False, soft_wrap=True)
        files = [out] if is_single_file(out) else [out / "model.safetensors", out / "architecture.json"]
        console.print(f"wrote {' and '.join(map(str, files))}", highlight=False, soft_wrap=True)
