"""A DropNet run on disk: ``run.json`` (records and every dropped unit) plus safetensors weights.

``run.json`` is written last, so its presence marks a complete run; no pickle anywhere.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..io import load_tensors, read_json, save_tensors, write_json
from .dropnet import DropNetResult


def save_run(result: DropNetResult, folder: str | Path) -> Path:
    folder = Path(folder)
    (folder / "run.json").unlink(missing_ok=True)  # the old record is invalid from here on
    for old in folder.glob("round-*.safetensors"):
        old.unlink()
    save_tensors(folder / "initial.safetensors", result.initial)
    for r, state in result.weights.items():
        save_tensors(folder / f"round-{r:03d}.safetensors", state)
    meta = {k: v for k, v in vars(result).items() if k not in ("initial", "weights")}
    meta["weight_rounds"] = sorted(result.weights)
    write_json(folder / "run.json", meta)
    return folder


def load_run(folder: str | Path, *, weights: bool = True) -> DropNetResult:
    folder = Path(folder)
    path = folder / "run.json"
    if not path.is_file():
        raise DataError(f"no DropNet run at {folder} (missing run.json)")
    meta = read_json(path)
    rounds = meta.pop("weight_rounds", [])
    try:
        result = DropNetResult(**meta)
    except TypeError as e:
        raise DataError(f"{path} is not a DropNet run record this version can read: {e}") from None
    if weights:
        result.initial = load_tensors(folder / "initial.safetensors")
        result.weights = {r: load_tensors(folder / f"round-{r:03d}.safetensors") for r in rounds}
    return result
