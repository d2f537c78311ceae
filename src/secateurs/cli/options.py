"""Options shared by several commands, and output helpers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..errors import ConfigError
from ..training import TrainConfig

console = Console()
err_console = Console(stderr=True)

DataDir = typer.Option(None, "--data-dir", help="Folder holding the dataset's files.")
Seed = typer.Option(0, "--seed", min=0, help="Seed for weights, data order and splits.")
JsonOut = typer.Option(False, "--json", help="Print a machine-readable summary on stdout.")
Device = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto.")


def train_config(
    lr: float,
    epochs: int,
    batch_size: int,
    patience: int,
    optimizer: str,
    momentum: float,
    weight_decay: float,
    restore_best: bool,
    device: str,
) -> TrainConfig:
    return TrainConfig(
        lr=lr,
        max_epochs=epochs,
        batch_size=batch_size,
        patience=patience if patience > 0 else None,
        optimizer=optimizer,
        momentum=momentum,
        weight_decay=weight_decay,
        restore_best=restore_best,
        device=device,
    )


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def print_table(title: str, rows: list[dict]) -> None:
    if not rows:
        return
    table = Table(title=title)
    for key in rows[0]:
        table.add_column(str(key))
    for row in rows:
        table.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()))
    console.print(table)


def out_dir(path: Path) -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} exists and is not a directory")
    return path
