"""The prediction interchange format: a folder of plain ``.npy`` files any framework can write.

    DIR/labels.npy          N integers (selection split)
    DIR/<model-name>.npy    N x C probabilities (or logits, with --logits), one file per model
    DIR/costs.json          optional: {"<model-name>": {"params": 123, "macs": 456}, ...}
    DIR/pool.json           optional manifest: {"models": ["<name>", ...]}, the pool's model order
    DIR/test/labels.npy     optional test split, same model file names
    DIR/test/<model-name>.npy

Files are read with ``allow_pickle=False``; hidden files (leading dot) are ignored. Team indices
refer to the pool's model order: the manifest's order when ``pool.json`` is present (it must list
exactly the model files), sorted file names otherwise. ``save_predictions`` writes the manifest.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, DataWarning
from ..io import atomic_path, write_json
from .pool import PredictionPool, check_model_name

LABELS = "labels.npy"
COSTS = "costs.json"
MANIFEST = "pool.json"
TEST_DIR = "test"


def _load_npy(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as e:
        raise DataError(f"{path}: cannot read as .npy ({e})") from e
    if magic != b"\x93NUMPY":  # numpy would call any other file "pickled data"
        raise DataError(
            f"{path}: not a .npy file (it does not start with the NumPy header; write it with "
            "np.save)"
        )
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:  # object arrays need pickle: refused
        raise DataError(f"{path}: not a plain numeric .npy array ({e})") from e
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read as .npy ({e})") from e


# Files that look like one model's predictions in another format: said, not silently skipped.
_OTHER_FORMATS = (".npz", ".pt", ".pth", ".pkl", ".pickle", ".csv", ".txt", ".npy.gz")


def _model_files(folder: Path, *, reading: bool = False) -> dict[str, Path]:
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    broken = [p.name for p in entries if p.name.lower().endswith(".npy") and not p.exists()]
    if broken and reading:
        raise DataError(f"{folder}: {', '.join(broken[:3])} is a link to a file that does not "
                        "exist; fix or remove it")
    files = [p for p in entries if p.is_file()]
    other = [p.name for p in files if p.name.lower().endswith(_OTHER_FORMATS)
             or (p.name.lower().endswith(".npy") and not p.name.endswith(".npy"))]
    if other and reading:
        warnings.warn(
            f"{folder}: {', '.join(other[:3])}{' ...' if len(other) > 3 else ''} ignored; each "
            "model is one file ending in lower-case .npy (np.save(path, probs))",
            DataWarning,
            stacklevel=3,
        )
    out = {
        p.name[: -len(".npy")]: p for p in files if p.name.endswith(".npy") and p.name != LABELS
    }
    return out


def _read_manifest(folder: Path) -> list[str] | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not valid JSON: {e}") from e
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list) or not all(isinstance(n, str) for n in models):
        raise DataError(f'{path} must be {{"models": ["<model-name>", ...]}} (the pool\'s model '
                        f"order), got {data!r:.200}")
    if len(set(models)) != len(models):
        dup = sorted({n for n in models if models.count(n) > 1})
        raise DataError(f"{path} lists a model twice: {dup}")
    return models


def _read_split(folder: Path, where: str, order: list[str] | None = None
                ) -> tuple[list[str], list[np.ndarray], np.ndarray]:
    labels_path = folder / LABELS
    if not labels_path.is_file():
        raise DataError(f"{where}: {labels_path} is missing (N integer labels)")
    files = _model_files(folder, reading=True)
    names = sorted(files)
    if order is not None:
        missing = [n for n in order if n not in files]
        extra = sorted(set(files) - set(order))
        if missing or extra:
            raise DataError(
                f"{where}: the manifest {MANIFEST} lists models {order} but the folder holds "
                f"{names}" + (f"; missing files: {[f'{n}.npy' for n in missing]}" if missing else "")
                + (f"; files not in the manifest: {[f'{n}.npy' for n in extra]}" if extra else ""))
        names = list(order)
    return names, [_load_npy(files[n]) for n in names], _load_npy(labels_path)


def load_predictions(path: str | os.PathLike, logits: bool = False) -> PredictionPool:
    """Read and validate a predictions folder; models are in the manifest's order (pool.json),
    else ordered by name."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"predictions folder {folder} does not exist or is not a folder")
    order = _read_manifest(folder)
    names, probs, labels = _read_split(folder, f"predictions folder {folder}", order)
    if len(names) < 2:
        raise DataError(
            f"predictions folder {folder} holds {len(names)} model file(s) {names}; "
            "need at least 2 <model-name>.npy files beside labels.npy"
        )
    test_probs = test_labels = None
    test_folder = folder / TEST_DIR
    if test_folder.is_dir():
        t_names, test_probs, test_labels = _read_split(test_folder, f"test split {test_folder}")
        if sorted(t_names) != sorted(names):
            raise DataError(
                f"test split {test_folder} has models {t_names} but the selection split has "
                f"{names}: the test folder must hold the same <model-name>.npy files"
            )
        by_name = dict(zip(t_names, test_probs, strict=True))
        test_probs = [by_name[n] for n in names]  # the selection split's (manifest) order
    costs = None
    costs_path = folder / COSTS
    if costs_path.is_file():
        try:
            costs = json.loads(costs_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{costs_path} is not valid JSON: {e}") from e
    return PredictionPool.from_arrays(
        names, probs, labels, test_probs, test_labels, costs=costs, logits=logits
    )


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(array), allow_pickle=False)


def _refuse_stale(folder: Path, names: Sequence[str], extra: Sequence[str]) -> None:
    """Refuse to leave model files that are not part of this pool (they would be read back)."""
    if not folder.is_dir():
        return
    stale = sorted(set(_model_files(folder)) - set(names))
    stale_extra = [e for e in extra if (folder / e).exists()]
    if stale or stale_extra:
        raise DataError(
            f"{folder} already holds files of another pool ({stale + stale_extra}); "
            "write to an empty folder or remove them"
        )


def save_predictions(
    path: str | os.PathLike,
    names: Sequence[str],
    probs: Any,
    labels: Any,
    test_probs: Any = None,
    test_labels: Any = None,
    costs: Mapping[str, Mapping[str, float]] | None = None,
) -> Path:
    """Validate, then write a pool in the interchange format (each file written atomically).

    ``probs`` is [M, N, C] probabilities (or a list of M arrays N x C). The manifest pool.json
    records ``names`` in this order, so indices read back refer to the same models. Re-writing
    the same pool over itself is allowed; a folder holding other models' files is refused.
    """
    pool = PredictionPool.from_arrays(names, probs, labels, test_probs, test_labels, costs=costs)
    folder = Path(path)
    for n in pool.names:
        check_model_name(n)
    _refuse_stale(folder, pool.names, [] if costs is not None else [COSTS])
    if pool.test is None:
        _refuse_stale(folder / TEST_DIR, [], [LABELS])
    else:
        _refuse_stale(folder / TEST_DIR, pool.names, [])
    folder.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(pool.names):
        _save_npy(folder / f"{n}.npy", pool.selection.probs[i])
    _save_npy(folder / LABELS, pool.selection.labels)
    if pool.test is not None:
        for i, n in enumerate(pool.names):
            _save_npy(folder / TEST_DIR / f"{n}.npy", pool.test.probs[i])
        _save_npy(folder / TEST_DIR / LABELS, pool.test.labels)
    if costs is not None:
        write_json(folder / COSTS, pool.costs_by_model())
    write_json(folder / MANIFEST, {"models": list(pool.names)})
    return folder
