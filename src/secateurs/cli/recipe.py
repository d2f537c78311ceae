"""The training-recipe options (learning-rate schedule, augmentation) of ``train`` and ``prune``.

Kept apart from ``options.py`` so that the two commands share one definition; torch is imported
only when a command runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..training import TrainConfig

Schedule = typer.Option(
    "constant", "--schedule", help="Learning-rate schedule: constant, step or cosine."
)
ScheduleUnit = typer.Option(
    "epoch", "--schedule-unit", help="Update the learning rate every 'epoch' or every 'step'."
)
WarmupEpochs = typer.Option(
    0.0, "--warmup-epochs", help="Linear warm-up to --lr over this many epochs (0: none)."
)
Milestones = typer.Option(
    None, "--milestones", help="For --schedule step: epochs where the rate is multiplied by "
    "0.1, comma-separated (e.g. 50,75).",
)
Augment = typer.Option(
    False, "--augment/--no-augment",
    help="Random crop (4-pixel zero padding) and horizontal flip of each training batch (images).",
)


def parse_milestones(text: str | None) -> list[int]:
    if text is None or not text.strip():
        return []
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ConfigError(
            f"--milestones must be comma-separated whole epochs such as 50,75, got {text!r}"
        ) from None


def with_recipe(
    config: TrainConfig,
    schedule: str,
    schedule_unit: str,
    warmup_epochs: float,
    milestones: str | None,
    augment: bool,
) -> TrainConfig:
    """``config`` with the recipe options set (validated as a whole)."""
    warmup = int(warmup_epochs) if float(warmup_epochs).is_integer() else warmup_epochs
    return type(config).from_dict({
        **config.to_dict(),
        "schedule": schedule,
        "schedule_unit": schedule_unit,
        "warmup_epochs": warmup,
        "milestones": parse_milestones(milestones),
        "augment": augment,
    })
