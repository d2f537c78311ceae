"""Training settings. Defaults are the DropNet paper's; the learning-rate schedule and the
augmentation are off unless asked for (the CIFAR examples turn them on)."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields

from ..errors import ConfigError

DEVICE_PATTERN = r"auto|cpu|cuda(:\d+)?|mps|xpu(:\d+)?"
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "step", "cosine")
SCHEDULE_UNITS = ("epoch", "step")


def _is_number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float))


@dataclass
class TrainConfig:
    """SGD lr 0.1 without momentum, batch 32, at most 100 epochs, early stopping on validation loss
    with patience 5, keeping the last epoch's weights (the authors' code) unless ``restore_best``.

    Learning rate (``training.schedules.learning_rate``): ``schedule`` constant, ``step``
    (times ``gamma`` at each epoch of ``milestones``) or ``cosine`` (from ``lr`` down towards
    ``min_lr`` over ``max_epochs``), after ``warmup_epochs`` of linear warm-up; updated every
    ``schedule_unit`` (epoch or step). Augmentation (``augment``, image data only): each training
    batch is randomly cropped from a ``crop_padding``-pixel zero padding and, with ``flip``,
    flipped horizontally with probability 0.5, with the run's seeded generator.
    """

    lr: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 32
    max_epochs: int = 100
    patience: int | None = 5
    restore_best: bool = False
    eval_batch_size: int = 2048
    device: str = "auto"  # cuda when available, else cpu
    schedule: str = "constant"
    schedule_unit: str = "epoch"
    warmup_epochs: float = 0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    min_lr: float = 0.0
    augment: bool = False
    crop_padding: int = 4
    flip: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("lr", "momentum", "weight_decay", "warmup_epochs", "gamma", "min_lr"):
            value = getattr(self, name)
            if not _is_number(value):
                raise ConfigError(f"{name} must be a number, got {value!r}")
        for name in ("batch_size", "max_epochs", "eval_batch_size", "crop_padding"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
        if self.patience is not None and (isinstance(self.patience, bool) or not isinstance(self.patience, int)):
            raise ConfigError(f"patience must be an integer or None, got {self.patience!r}")
        for name in ("restore_best", "augment", "flip"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("device", "optimizer", "schedule", "schedule_unit"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(f"{name} must be a string, got {getattr(self, name)!r}")
        if not re.fullmatch(DEVICE_PATTERN, self.device):
            raise ConfigError(
                f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_epochs < 1:
            raise ConfigError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(
                f"patience must be >= 1 or None (no early stopping), got {self.patience}"
            )
        self._validate_schedule()
        if self.crop_padding < 0:
            raise ConfigError(f"crop_padding must be >= 0, got {self.crop_padding}")

    def _validate_schedule(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.schedule_unit not in SCHEDULE_UNITS:
            raise ConfigError(
                f"schedule_unit must be one of {SCHEDULE_UNITS}, got {self.schedule_unit!r}"
            )
        if not (math.isfinite(self.warmup_epochs) and 0 <= self.warmup_epochs < self.max_epochs):
            raise ConfigError(
                f"warmup_epochs must be >= 0 and below max_epochs ({self.max_epochs}), "
                f"got {self.warmup_epochs}"
            )
        if self.schedule_unit == "epoch" and self.warmup_epochs != int(self.warmup_epochs):
            raise ConfigError(
                f"warmup_epochs must be a whole number with schedule_unit 'epoch', got "
                f"{self.warmup_epochs}; use schedule_unit 'step' for a fractional warm-up"
            )
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"gamma must be in (0, 1], got {self.gamma}")
        if not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"min_lr must be in [0, lr={self.lr}], got {self.min_lr}")
        if isinstance(self.milestones, (str, bytes)) or not hasattr(self.milestones, "__iter__"):
            raise ConfigError(f"milestones must be a list of epochs, got {self.milestones!r}")
        self.milestones = list(self.milestones)
        for m in self.milestones:
            if isinstance(m, bool) or not isinstance(m, int) or m < 1:
                raise ConfigError(
                    f"milestones must be epochs >= 1 (whole numbers), got {self.milestones!r}"
                )
        if self.milestones != sorted(set(self.milestones)):
            raise ConfigError(f"milestones must increase, got {self.milestones!r}")
        if self.schedule == "step" and not self.milestones:
            raise ConfigError(
                "schedule 'step' needs milestones: the epochs after which the learning rate is "
                "multiplied by gamma, e.g. milestones=[50, 75]"
            )
        if self.schedule != "step" and self.milestones:
            raise ConfigError(
                f"milestones {self.milestones} are only used by schedule 'step', not "
                f"{self.schedule!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(
                f"unknown training setting(s) {sorted(unknown)}; allowed: {sorted(known)}"
            )
        return cls(**values)
