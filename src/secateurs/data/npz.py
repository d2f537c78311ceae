"""NumPy ``.npz`` archives: ``x_train, y_train, x_test, y_test`` or a single ``x, y``.

Samples are images unless the archive says ``layout="features"`` (or they are rows, (N, F)):
tabular rows, sequences (N, T, F) and token ids (N, T) are then used as they are.
Read with ``allow_pickle=False``: an archive holding object arrays is refused, never unpickled.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .source import (
    Source,
    check_counts,
    features_to_tensor,
    images_to_tensor,
    labels_to_tensor,
    to_float,
)

LAYOUTS = ("images", "features")


def load_npz(path: Path, name: str | None = None) -> Source:
    path = Path(path)
    name = name or f"npz:{path.name}"
    if not path.is_file():
        raise DataError(f"npz file {path} does not exist")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY":
        raise DataError(
            f"{path} is a single .npy array, not an .npz archive; save the arrays with "
            "np.savez(path, x=..., y=...)"
        )
    if magic[:2] != b"PK":  # numpy would call any other file "pickled data"
        raise DataError(
            f"{path} is not an .npz archive (no zip header); save the arrays with "
            "np.savez(path, x=..., y=...)"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            if {"x_train", "y_train", "x_test", "y_test"} <= keys:
                wanted = ["x_train", "y_train", "x_test", "y_test"]
            elif {"x", "y"} <= keys:
                wanted = ["x", "y"]
            else:
                raise DataError(
                    f"{path} holds arrays {sorted(keys)}; expected x_train, y_train, x_test, y_test "
                    "or x, y"
                )
            arrays = {k: archive[k] for k in wanted}
            layout = archive["layout"] if "layout" in keys else None
    except DataError:
        raise
    except ValueError as e:  # object arrays need pickle, which is not allowed
        raise DataError(f"{path}: {e}; save plain numeric arrays (no object dtype)") from e
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{path} is not a readable .npz archive ({e}); it may be truncated") from e

    if layout is None:
        layout = "features" if np.ndim(arrays[wanted[0]]) == 2 else "images"
    elif np.ndim(layout) != 0 or str(layout) not in LAYOUTS:
        raise DataError(
            f"{path}: layout {layout.tolist()!r}; expected one of {', '.join(LAYOUTS)} "
            "(np.savez(path, ..., layout='features'))"
        )
    samples = features_to_tensor if str(layout) == "features" else images_to_tensor

    def pair(xk: str, yk: str):
        check_counts(f"{path} ({xk} / {yk})", arrays[xk], arrays[yk])
        return (
            samples(arrays[xk], f"{path} ({xk})"),
            labels_to_tensor(arrays[yk], f"{path} ({yk})"),
        )

    if "x" in arrays:
        x, y = pair("x", "y")
        return Source(name, x, y, path=str(path))
    x_tr, y_tr = pair("x_train", "y_train")
    x_te, y_te = pair("x_test", "y_test")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError(
            f"{path}: x_train samples are {tuple(x_tr.shape[1:])} but x_test samples are "
            f"{tuple(x_te.shape[1:])}"
        )
    if x_tr.dtype != x_te.dtype and torch.int64 in (x_tr.dtype, x_te.dtype):
        raise DataError(f"{path}: x_train is {x_tr.dtype} but x_test is {x_te.dtype}; save both "
                        "as integers (token ids) or both as floats")
    if x_tr.dtype != x_te.dtype:  # one uint8, one float: bring both to float in [0, 1]
        x_tr, x_te = to_float(x_tr), to_float(x_te)
    return Source(name, x_tr, y_tr, x_te, y_te, path=str(path))
