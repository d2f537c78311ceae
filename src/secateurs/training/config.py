"""Training settings. Defaults are the DropNet paper's."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..errors import ConfigError

OPTIMIZERS = ("sgd", "adam")


@dataclass
class TrainConfig:
    """SGD lr 0.1 without momentum, batch 32, at most 100 epochs, early stopping on validation loss
    with patience 5, keeping the last epoch's weights (the authors' code) unless ``restore_best``."""

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

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("lr", "momentum", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name} must be a number, got {value!r}")
        for name in ("batch_size", "max_epochs", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
        if self.patience is not None and (isinstance(self.patience, bool) or not isinstance(self.patience, int)):
            raise ConfigError(f"patience must be an integer or None, got {self.patience!r}")
        if not isinstance(self.restore_best, bool):
            raise ConfigError(f"restore_best must be true or false, got {self.restore_best!r}")
        if not isinstance(self.device, str) or not isinstance(self.optimizer, str):
            raise ConfigError("device and optimizer must be strings")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        if self.momentum < 0 or self.weight_decay < 0:
            raise ConfigError("momentum and weight_decay must be >= 0")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_epochs < 1:
            raise ConfigError(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(
                f"patience must be >= 1 or None (no early stopping), got {self.patience}"
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
