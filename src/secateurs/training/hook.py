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
- To have the units scored on inputs of your own rather than ``data.x_train`` (a reinforcement
  learning agent has no training set: score it on the states it visited), return them as
  ``score_inputs`` (a tensor of samples shaped like ``data.x_train``'s) in the dict or the
  ``TrainResult``; the round's ``train_info`` keeps only their count.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
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
    if isinstance(value, np.generic) or isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()  # np.float32, np.int64, a one-element tensor: a plain number
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    shown = repr(value)
    if len(shown) > 60 or "\n" in shown:  # a module's repr runs to pages
        shown = f"<a {type(value).__name__}>"
    raise ConfigError(
        f"the training hook returned {key}={shown}; a returned dict (or TrainResult.info) holds "
        "numbers or strings"
    )


def as_train_result(output: Any) -> TrainResult:
    """A hook's return value as a ``TrainResult`` (``info`` holds a returned dict's entries;
    ``score_inputs`` become the result's, with only their count in ``info``)."""
    if output is None:
        return TrainResult()
    if isinstance(output, TrainResult):
        if not isinstance(output.info, Mapping):
            raise ConfigError(
                f"the training hook returned TrainResult(info={output.info!r}); info is a dict "
                "of numbers or strings"
            )  # the same rule as a returned dict: info goes into the JSON records
        result = replace(output, info={str(k): _plain(str(k), v) for k, v in output.info.items()})
    elif isinstance(output, Mapping):
        values = dict(output)
        inputs = values.pop("score_inputs", None)
        info = {str(k): _plain(str(k), v) for k, v in values.items()}
        epochs = info.get("epochs", 0)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
            raise ConfigError(
                f"the training hook returned epochs={epochs!r}; expected a whole number >= 0"
            )
        result = TrainResult(epochs=epochs, info=info, score_inputs=inputs)
    else:
        raise ConfigError(
            f"the training hook returned a {type(output).__name__}; expected None, a dict or a "
            "TrainResult"
        )
    if result.score_inputs is None:
        return result
    if not isinstance(result.score_inputs, torch.Tensor):
        raise ConfigError(
            f"the training hook returned score_inputs as a {type(result.score_inputs).__name__}; "
            "expected a torch.Tensor"
        )
    return replace(result, info={**result.info, "score_inputs": len(result.score_inputs)})


def check_score_inputs(
    inputs: torch.Tensor | None, input_shape: tuple[int, ...], dtype: torch.dtype = torch.float32
) -> torch.Tensor | None:
    """``inputs`` if they can be scored in place of the training split: (N >= 1, *input_shape),
    of the training data's kind (floating point, or integer token ids), in its ``dtype``."""
    if inputs is None:
        return None
    expected = "(N, " + ", ".join(str(d) for d in input_shape) + ")"
    if inputs.dim() != len(input_shape) + 1 or tuple(inputs.shape[1:]) != tuple(input_shape) or (
        len(inputs) == 0
    ):
        raise ConfigError(
            f"the training hook returned score_inputs of shape {tuple(inputs.shape)}; expected "
            f"{expected} with N >= 1, samples shaped like data.x_train's"
        )
    floating = dtype.is_floating_point
    if inputs.is_floating_point() != floating or inputs.dtype == torch.bool:
        raise ConfigError(
            f"the training hook returned score_inputs of dtype {inputs.dtype}; expected "
            + ("floating point, like data.x_train" if floating else
               f"integers, like data.x_train ({dtype})")
        )
    # scored by the network as data.x_train would be: float64 or bfloat16 inputs in its dtype
    return inputs.detach().to(dtype)
