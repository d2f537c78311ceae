"""Bring your own training loop: the protocol DropNet calls, once per round, instead of ``train``.

A training hook is any callable ``train_fn(network, info) -> dict | TrainResult | None``, or an
object with such a ``fit(network, info)`` method (a small trainer class):

- ``network`` is the round's masked network (an ``nn.Module``; for DropNet a ``MaskedNetwork``).
  Train it in place, with your own data loaders, loss, optimizer and schedule. Its masks are
  multiplications in the forward pass (buffers, not parameters), so no optimizer can revive a
  dropped unit: whatever happens to its weights, it outputs exactly zero. Do not change the
  masks or replace modules; DropNet checks the masks after the hook and refuses a changed one.
- ``info`` (``RoundInfo``) says which round this is and carries what the built-in trainer would
  use: the run's data, training settings, device, and a generator seeded for this round (use it
  for your data order or augmentation and the run stays reproducible from its seed).
- Return ``None``, a ``TrainResult``, or a dict of numbers or strings describing the training
  (``epochs`` is recorded as the round's epochs; every entry goes into the round's
  ``train_info``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from ..data.splits import DatasetSplits
from ..errors import ConfigError
from .config import TrainConfig
from .trainer import TrainResult


@dataclass(frozen=True)
class RoundInfo:
    """What a training hook knows about the round it trains.

    ``seed`` is the round's seed (the built-in trainer's data-order seed: derived from the run's
    seed and the round), ``generator`` a fresh ``torch.Generator`` seeded with it; ``remaining``
    the fraction of prunable units still alive; ``config`` the run's ``TrainConfig`` (to follow or
    to ignore); ``device`` the device it names."""

    round: int
    run_seed: int
    seed: int
    generator: torch.Generator
    data: DatasetSplits
    config: TrainConfig
    device: torch.device
    remaining: float
    metric: str


class TrainFn(Protocol):
    """``train_fn(network, info) -> dict | TrainResult | None``: train ``network`` in place."""

    def __call__(
        self, network: nn.Module, info: RoundInfo
    ) -> Mapping[str, Any] | TrainResult | None: ...


def resolve_train_fn(train_fn: Any) -> TrainFn | None:
    """The callable to call for ``train_fn``: itself, or its ``fit`` method (a trainer object)."""
    if train_fn is None or callable(train_fn):
        return train_fn
    fit = getattr(train_fn, "fit", None)
    if callable(fit):
        return fit
    raise ConfigError(
        f"train_fn must be callable as train_fn(network, info) or have a fit(network, info) "
        f"method, got a {type(train_fn).__name__}"
    )


def _plain(key: str, value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    raise ConfigError(
        f"the training hook returned {key}={value!r}; a returned dict holds numbers or strings"
    )


def as_train_result(output: Any) -> TrainResult:
    """A hook's return value as a ``TrainResult`` (``info`` holds a returned dict's entries)."""
    if output is None:
        return TrainResult()
    if isinstance(output, TrainResult):
        return output
    if isinstance(output, Mapping):
        info = {str(k): _plain(str(k), v) for k, v in output.items()}
        epochs = info.get("epochs", 0)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ConfigError(
                f"the training hook returned epochs={epochs!r}; expected a whole number >= 0"
            )
        return TrainResult(epochs=epochs, info=info)
    raise ConfigError(
        f"the training hook returned a {type(output).__name__}; expected None, a dict or a "
        "TrainResult"
    )
