"""Run a saved team file, or any single export, on a dataset split and measure its accuracy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigError, DataError
from .team import TEAM_FORMAT, TeamEnsemble, load_team, read_metadata

SPLITS = ("train", "val", "test")


@dataclass
class Deployed:
    """A loaded model file: the module, what it expects, and (for teams) how it votes."""

    module: nn.Module
    kind: str  # "team" or "model"
    input_shape: tuple[int, ...]
    num_classes: int
    names: list[str] = field(default_factory=list)
    vote: str | None = None
    source: dict | None = None


def load_deployed(path: str | Path) -> Deployed:
    """A team file, a one-file export (``.safetensors``) or an export folder, told apart by the
    format recorded in the file."""
    from ..pruning.surgery import FORMAT, _read_architecture, load_exported

    path = Path(path)
    if path.is_dir():
        arch, _, _ = _read_architecture(path)
        return _single(load_exported(path), arch, path)
    if path.suffix != ".safetensors":
        raise DataError(f"{path}: expected a .safetensors file or an export folder")
    meta = read_metadata(path)
    if meta.get("format") == TEAM_FORMAT:
        team = load_team(path)
        return Deployed(
            team,
            "team",
            tuple(team.input_shape),
            int(team.num_classes),
            list(team.names),
            team.vote,
            getattr(team, "source", None),
        )
    if meta.get("format") == FORMAT:
        arch, _, _ = _read_architecture(path)
        return _single(load_exported(path), arch, path)
    if meta.get("format") is None and path.name.startswith("round-"):
        raise DataError(
            f"{path} holds a pipeline task's masked weights, not a deployable network; make one "
            "with `secateurs export-team RUN --members NAME` (or `secateurs export` for a prune "
            "run)"
        )
    what = "no format" if meta.get("format") is None else f"format {meta.get('format')!r}"
    raise DataError(
        f"{path} is neither a secateurs team file nor an export ({what} in its metadata; "
        "expected one written by `secateurs export` or `secateurs export-team`)"
    )


def _single(module: nn.Module, arch: dict, path: Path) -> Deployed:
    return Deployed(
        module, "model", tuple(arch["input_shape"]), int(arch["num_classes"]), [path.stem]
    )


def predict_labels(deployed: Deployed, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """[N] predicted labels (-1 where a majority vote finds no majority)."""
    module = deployed.module.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size]
            if isinstance(module, TeamEnsemble):
                out.append(module.predict(xb))
            else:
                out.append(module(xb).argmax(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def evaluate_on(
    deployed: Deployed,
    dataset: str,
    *,
    data_dir: str | Path | None = None,
    split: str = "test",
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    batch_size: int = 2048,
) -> dict[str, Any]:
    """Accuracy on one split of a dataset (split exactly as ``load_dataset`` and the pipeline do
    with the same seed and fractions); for a team, each member's accuracy too."""
    from ..data import load_dataset

    if split not in SPLITS:
        raise ConfigError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    data = load_dataset(
        dataset, data_dir, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    if tuple(data.input_shape) != tuple(deployed.input_shape):
        raise DataError(
            f"the model takes inputs of shape {tuple(deployed.input_shape)} but dataset "
            f"{dataset!r} gives {tuple(data.input_shape)}"
        )
    if int(data.num_classes) != deployed.num_classes:
        raise DataError(
            f"the model predicts {deployed.num_classes} classes but dataset {dataset!r} has "
            f"{data.num_classes}"
        )
    x, y = {"train": (data.x_train, data.y_train), "val": (data.x_val, data.y_val),
            "test": (data.x_test, data.y_test)}[split]
    try:
        labels = predict_labels(deployed, x, batch_size)
    except (RuntimeError, IndexError, TypeError) as exc:  # token ids into a float model, ...
        text = " ".join(str(exc).split())
        raise DataError(
            f"the model fails on the inputs of dataset {dataset!r} ("
            f"{str(x.dtype).removeprefix('torch.')}"
            f", shape {tuple(x.shape[1:])}): {type(exc).__name__}: {text[:300]}; it was made "
            "for other data"
        ) from exc
    result: dict[str, Any] = {
        "kind": deployed.kind,
        "dataset": dataset,
        "split": split,
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "samples": int(len(y)),
        "accuracy": float((labels == y).double().mean()) if len(y) else 0.0,
        "members": deployed.names,
        "vote": deployed.vote,
    }
    if isinstance(deployed.module, TeamEnsemble):
        member_acc = {}
        with torch.no_grad():
            for name, m in zip(deployed.names, deployed.module.members, strict=True):
                pred = torch.cat(
                    [m(x[i : i + batch_size]).argmax(dim=1) for i in range(0, len(x), batch_size)]
                )
                member_acc[name] = float((pred == y).double().mean())
        result["member_accuracy"] = member_acc
    result["recorded"] = _recorded(deployed.source, result)
    return result


def _recorded(source: dict | None, result: dict) -> dict | None:
    """What the pipeline reported for this team on this split, when the file says so and the
    split is the same one (same dataset, seed and fractions)."""
    if not isinstance(source, dict) or not isinstance(source.get("dataset"), dict):
        return None
    ds = source["dataset"]
    same = (
        ds.get("spec") == result["dataset"]
        and source.get("split_seed") == result["seed"]
        and ds.get("val_fraction") == result["val_fraction"]
        and ds.get("test_fraction") == result["test_fraction"]
    )
    key = {"test": "test_acc", "val": "val_acc"}.get(result["split"])
    if not same or key is None or source.get(key) is None:
        return None
    return {"accuracy": source[key], "run": source.get("run"), "row": source.get("row")}
