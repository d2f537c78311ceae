"""A DropNet run on disk: ``run.json`` (records and every dropped unit) plus safetensors weights
and, per pruning round, ``scores-NNN.json`` (the unit scores that round's selection ranked by).

``run.json`` is written last, with each weight file's size and SHA-256, so its presence marks a
complete run and a truncated or missing file is found (``check_run``) before anything reads it;
no pickle anywhere.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..io import file_sha256, load_tensors, read_json, save_tensors, write_json
from .dropnet import DropNetResult


def save_run(result: DropNetResult, folder: str | Path) -> Path:
    folder = Path(folder)
    (folder / "run.json").unlink(missing_ok=True)  # the old record is invalid from here on
    for old in [*folder.glob("round-*.safetensors"), *folder.glob("scores-*.json")]:
        old.unlink()
    names = ["initial.safetensors"]
    save_tensors(folder / "initial.safetensors", result.initial)
    for r, state in result.weights.items():
        save_tensors(folder / f"round-{r:03d}.safetensors", state)
        names.append(f"round-{r:03d}.safetensors")
    for r, scores in result.scores.items():
        write_json(folder / f"scores-{r:03d}.json", {"round": r, "metric": result.metric,
                                                     "seed": result.seed, "scores": scores})
        names.append(f"scores-{r:03d}.json")
    meta = {k: v for k, v in vars(result).items() if k not in ("initial", "weights", "scores")}
    meta["weight_rounds"] = sorted(result.weights)
    meta["score_rounds"] = sorted(result.scores)
    meta["files"] = {
        n: {"bytes": (folder / n).stat().st_size, "sha256": file_sha256(folder / n)} for n in names
    }
    write_json(folder / "run.json", meta)
    return folder


def check_run(folder: str | Path) -> str | None:
    """None when ``folder`` holds a complete, intact run; else what is wrong ("not run" when it
    has no ``run.json``)."""
    folder = Path(folder)
    path = folder / "run.json"
    if not path.exists():
        return "not run"
    try:
        meta = read_json(path)
    except (OSError, ValueError) as e:
        return f"run.json is unreadable ({type(e).__name__})"
    if not isinstance(meta, dict) or not isinstance(meta.get("rounds"), list):
        return "run.json is not a DropNet run record"
    files = meta.get("files")
    if not isinstance(files, dict):  # written before checksums: check the files exist
        rounds = meta.get("weight_rounds") or []
        files = {f"round-{int(r):03d}.safetensors": None for r in rounds}
        files["initial.safetensors"] = None
    for name, info in sorted(files.items()):
        p = folder / name
        if not p.is_file():
            return f"{name} is missing"
        if info is not None and (
            p.stat().st_size != info.get("bytes") or file_sha256(p) != info.get("sha256")
        ):
            return f"{name} is truncated or altered (size or checksum differs)"
    return None


def load_run(folder: str | Path, *, weights: bool = True) -> DropNetResult:
    folder = Path(folder)
    path = folder / "run.json"
    if not path.is_file():
        raise DataError(f"no DropNet run at {folder} (missing run.json)")
    problem = check_run(folder)
    if problem is not None:
        raise DataError(f"the DropNet run at {folder} is damaged: {problem}; run it again")
    meta = read_json(path)
    rounds = meta.pop("weight_rounds", [])
    meta.pop("files", None)
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
