"""The official CIFAR-10 folders: ``cifar-10-batches-py`` (pickles) and ``cifar-10-batches-bin``.

The Python version is a set of pickles. Unpickling can run arbitrary code, so they are read with an
unpickler that admits only what those files hold: numpy arrays (their reconstruction functions,
``ndarray`` and ``dtype``), lists, dicts, ints and byte/text strings. Anything else is refused.
"""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .source import Source

CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
PY_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
PY_TEST = "test_batch"
BIN_TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]
BIN_TEST = "test_batch.bin"
IMAGE_BYTES = 3 * 32 * 32
RECORD_BYTES = 1 + IMAGE_BYTES  # binary version: one label byte, then the image (channel-major)


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle asks for a function or class outside the allowed set."""


def _numpy_attr(module: str, name: str):
    import importlib

    for mod in (module.replace("numpy.core", "numpy._core", 1), module):  # numpy 2 names, then 1
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise RefusedGlobal(f"numpy has no {module}.{name}")


def _latin1_encode(obj, encoding="latin1"):
    """Python 3 pickles (protocol < 3) store bytes as ``_codecs.encode(text, "latin1")``."""
    if not isinstance(obj, str) or codecs.lookup(encoding).name != "iso8859-1":
        raise RefusedGlobal(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return obj.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers only; every other global is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            if module == "numpy":
                return getattr(np, name)
            return _numpy_attr(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise RefusedGlobal(
            f"global {module}.{name} is not allowed (a CIFAR-10 batch holds only numpy arrays, "
            "lists, dicts and strings)"
        )


def restricted_load(path: Path) -> object:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; refusals and damage become DataError."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        return RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except RefusedGlobal as e:
        raise DataError(
            f"refused to load {path}: {e}; it is not an official CIFAR-10 batch file"
        ) from e
    except Exception as e:  # truncated or garbled pickle stream
        raise DataError(
            f"{path} is not a readable CIFAR-10 batch ({type(e).__name__}: {e}); the file is "
            "corrupt or truncated, download it again"
        ) from e


def _get(d: dict, key: str):
    if key.encode() in d:
        return d[key.encode()]
    return d.get(key)


def read_py_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch: ``(images (N, 3, 32, 32) uint8, labels (N,) int64)``."""
    obj = restricted_load(path)
    if not isinstance(obj, dict):
        raise DataError(
            f"{path}: expected a dict with 'data' and 'labels', got {type(obj).__name__}"
        )
    data, labels = _get(obj, "data"), _get(obj, "labels")
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != IMAGE_BYTES
    ):
        shape = getattr(data, "shape", None)
        raise DataError(
            f"{path}: 'data' must be a uint8 array of shape (N, {IMAGE_BYTES}), got "
            f"{type(data).__name__} {shape}"
        )
    if not isinstance(labels, list | np.ndarray):
        raise DataError(f"{path}: 'labels' must be a list of class indices")
    y = np.asarray(labels)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: 'labels' must be a list of integer class indices")
    if len(y) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{path}: labels must be 0..9, found {int(y.min())}..{int(y.max())}")
    return data.reshape(-1, 3, 32, 32), y.astype(np.int64)


def read_bin_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch: records of 1 label byte + 3,072 image bytes."""
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise DataError(
            f"{path}: size {raw.size} bytes is not a whole number of {RECORD_BYTES}-byte records; "
            "the file is truncated or corrupt, download it again"
        )
    records = raw.reshape(-1, RECORD_BYTES)
    y = records[:, 0].astype(np.int64)
    if y.max() > 9:
        raise DataError(f"{path}: label byte {int(y.max())} is not a CIFAR-10 class (0..9)")
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), y


def cifar_format(folder: Path) -> str | None:
    """``"py"`` or ``"bin"`` when ``folder`` holds a complete official CIFAR-10 folder."""
    if all((folder / f).is_file() for f in [*PY_TRAIN, PY_TEST]):
        return "py"
    if all((folder / f).is_file() for f in [*BIN_TRAIN, BIN_TEST]):
        return "bin"
    return None


def partial_cifar_files(folder: Path) -> list[str]:
    """The CIFAR-10 batch files present in a folder that lacks some of them (else [])."""
    for names in ([*PY_TRAIN, PY_TEST], [*BIN_TRAIN, BIN_TEST]):
        present = [f for f in names if (folder / f).is_file()]
        if present and len(present) < len(names):
            return present
    return []


def _class_names(folder: Path, fmt: str) -> list[str]:
    if fmt == "py" and (folder / "batches.meta").is_file():
        meta = restricted_load(folder / "batches.meta")
        names = _get(meta, "label_names") if isinstance(meta, dict) else None
        if isinstance(names, list) and len(names) == 10:
            return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    if fmt == "bin" and (folder / "batches.meta.txt").is_file():
        names = [n.strip() for n in (folder / "batches.meta.txt").read_text(errors="replace").splitlines()]
        names = [n for n in names if n]
        if len(names) == 10:
            return names
    return list(CIFAR10_CLASSES)


def load_cifar_dir(folder: Path, name: str = "cifar10") -> Source:
    """Load a complete ``cifar-10-batches-py`` or ``cifar-10-batches-bin`` folder."""
    fmt = cifar_format(folder)
    if fmt is None:
        raise DataError(
            f"{folder} is not a complete CIFAR-10 folder; expected {', '.join(PY_TRAIN)}, {PY_TEST} "
            f"(cifar-10-batches-py) or the same with .bin (cifar-10-batches-bin)"
        )
    if fmt == "py":
        parts = [read_py_batch(folder / f) for f in PY_TRAIN]
        x_te, y_te = read_py_batch(folder / PY_TEST)
    else:
        parts = [read_bin_batch(folder / f) for f in BIN_TRAIN]
        x_te, y_te = read_bin_batch(folder / BIN_TEST)
    x_tr = np.concatenate([p[0] for p in parts])
    y_tr = np.concatenate([p[1] for p in parts])
    return Source(
        name,
        torch.from_numpy(np.ascontiguousarray(x_tr)),
        torch.from_numpy(y_tr),
        torch.from_numpy(np.ascontiguousarray(x_te)),
        torch.from_numpy(y_te),
        classes=_class_names(folder, fmt),
        path=str(folder),
    )
