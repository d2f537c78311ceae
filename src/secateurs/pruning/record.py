"""A DropNet run on disk: ``run.json`` (records and every dropped unit) plus safetensors weights
and, per pruning round, ``scores-NNN.json`` (the unit scores that round's selection ranked by).

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
    for old in [*folder.glob("round-*.safetensors"), *folder.glob("scores-*.json")]:
        old.unlink()
    save_tensors(folder / "initial.safetensors", result.initial)
    for r, state in result.weights.items():
        save_tensors(folder / f"round-{r:03d}.safetensors", state)
    for r, scores in result.scores.items():
        write_json(folder / f"scores-{r:03d}.json", {"round": r, "metric": result.metric,
                                                     "seed": result.seed, "scores": scores})
    meta = {k: v for k, v in vars(result).items() if k not in ("initial", "weights", "scores")}
    meta["weight_rounds"] = sorted(result.weights)
    meta["score_rounds"] = sorted(result.scores)
    write_json(folder / "run.json", meta)
    return folder


def load_run(folder: str | Path, *, weights: bool = True) -> DropNetResult:
    folder = Path(folder)
    path = folder / "run.json"
    if not path.is_file():
        raise DataError(f"no DropNet run at {folder} (missing run.json)")
    meta = read_json(path)
    rounds = meta.pop("weight_rounds", [])
    score_rounds = meta.pop("score_rounds", [])  # absent in runs recorded before scores were
    try:
        result = DropNetResult(**meta)
    except TypeError as e:
        raise DataError(f"{path} is not a DropNet run record this version can read: {e}") from None
    result.scores = {r: _read_scores(folder / f"scores-{r:03d}.json") for r in score_rounds}
    if weights:
        result.initial = load_tensors(folder / "initial.safetensors")
        result.weights = {r: load_tensors(folder / f"round-{r:03d}.safetensors") for r in rounds}
    return result


def _read_scores(path: Path) -> dict[str, list[float]]:
    try:
        return read_json(path)["scores"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"cannot read the unit scores {path}: {e}") from None
