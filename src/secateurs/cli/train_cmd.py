"""``secateurs train``: one training run."""

from __future__ import annotations

from pathlib import Path

import typer

from .main import app
from .options import (
    DataDir,
    Device,
    Imports,
    JsonOut,
    Optimizer,
    Seed,
    announce,
    console,
    out_dir,
    print_json,
    train_config,
)
from .recipe import Augment, Milestones, Schedule, ScheduleUnit, WarmupEpochs, with_recipe


@app.command()
def train(
    model: str = typer.Option(
        ..., "--model", help="Model name, e.g. model-a or model-a:widths=20-20."
    ),
    dataset: str = typer.Option("digits", "--dataset", help="Dataset spec, e.g. digits, mnist."),
    out: Path = typer.Option(Path("runs/train"), "--out", help="Output folder."),
    data_dir: Path = DataDir,
    seed: int = Seed,
    lr: float = typer.Option(0.1, help="Learning rate."),
    epochs: int = typer.Option(100, help="Maximum epochs."),
    batch_size: int = typer.Option(32, help="Mini-batch size."),
    patience: int = typer.Option(
        5, min=0, help="Early-stopping patience on validation loss (0: off)."
    ),
    optimizer: Optimizer = typer.Option("sgd", help="Optimizer."),
    momentum: float = typer.Option(0.0, help="SGD momentum."),
    weight_decay: float = typer.Option(0.0, help="Weight decay."),
    restore_best: bool = typer.Option(False, help="Keep the best epoch's weights, not the last."),
    schedule: str = Schedule,
    schedule_unit: str = ScheduleUnit,
    warmup_epochs: float = WarmupEpochs,
    milestones: str = Milestones,
    augment: bool = Augment,
    device: str = Device,
    imports: list[str] = Imports,
    json_out: bool = JsonOut,
) -> None:
    """Train one model; write its weights and metrics.

    model.safetensors and metrics.json in --out."""
    from ..data import load_dataset
    from ..models import build_model
    from ..training import resolve_device, save_trained, train_model

    config = train_config(
        lr, epochs, batch_size, patience, optimizer, momentum, weight_decay, restore_best, device
    )
    config = with_recipe(config, schedule, schedule_unit, warmup_epochs, milestones, augment)
    data = load_dataset(dataset, data_dir, seed=seed)
    out = out_dir(out)
    build_model(model, data.input_shape, data.num_classes)  # a bad --model fails before the header
    announce(out, {"model": model, "dataset": dataset, "seed": seed, **config.to_dict(),
                   "device": f"{device} ({resolve_device(device)})"})
    run = train_model(model, data, config, seed=seed, progress=True)
    path = save_trained(run, out, {"dataset": dataset, "config": config.to_dict()})
    summary = {**run.summary(), "dataset": dataset, "out": str(path)}
    if json_out:
        print_json(summary)
    else:
        console.print(
            f"{model} on {dataset}: test accuracy {run.metrics['test_acc']:.4f} after "
            f"{run.result.epochs} epochs ({run.seconds:.1f} s); wrote {path}",
            highlight=False, soft_wrap=True,
        )
