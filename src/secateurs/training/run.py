"""One seeded training run from names: build the model, train it, measure it, save it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.splits import DatasetSplits
from ..io import save_tensors, write_json
from ..models import build_model
from .config import TrainConfig
from .trainer import TrainResult, evaluate, train


def seeded_model(spec: str, data: DatasetSplits, seed: int) -> nn.Module:
    """Build ``spec`` for ``data`` with initial weights determined by ``seed`` alone."""
    torch.manual_seed(seed)
    return build_model(spec, data.input_shape, data.num_classes)


def split_metrics(
    model: nn.Module, data: DatasetSplits, batch_size: int = 2048
) -> dict[str, float]:
    """Loss and accuracy on each split."""
    out = {}
    for split in ("train", "val", "test"):
        loss, acc = evaluate(model, *data.split(split), batch_size=batch_size)
        out[f"{split}_loss"], out[f"{split}_acc"] = loss, acc
    return out


@dataclass
class TrainedModel:
    model: nn.Module
    result: TrainResult
    metrics: dict[str, float]
    seconds: float
    spec: str
    seed: int

    def summary(self) -> dict:
        return {
            "model": self.spec,
            "seed": self.seed,
            "epochs": self.result.epochs,
            "seconds": round(self.seconds, 3),
            "parameters": sum(p.numel() for p in self.model.parameters()),
            **{k: round(v, 6) for k, v in self.metrics.items()},
        }


def train_model(
    spec: str,
    data: DatasetSplits,
    config: TrainConfig | None = None,
    *,
    seed: int = 0,
    progress: bool = True,
) -> TrainedModel:
    """Build ``spec`` seeded by ``seed``, train it on ``data`` and measure every split."""
    config = config or TrainConfig()
    model = seeded_model(spec, data, seed)
    start = time.perf_counter()
    result = train(model, data, config, seed=seed, progress=progress, description=spec)
    seconds = time.perf_counter() - start
    metrics = split_metrics(model, data, config.eval_batch_size)
    return TrainedModel(model, result, metrics, seconds, spec, seed)


def save_trained(run: TrainedModel, out: str | Path, extra: dict | None = None) -> Path:
    """Write ``model.safetensors`` and ``metrics.json`` (summary, settings, per-epoch history)."""
    out = Path(out)
    save_tensors(out / "model.safetensors", run.model.state_dict(), {"model": run.spec})
    write_json(
        out / "metrics.json",
        {**run.summary(), **(extra or {}), "history": run.result.to_dict()["history"]},
    )
    return out
