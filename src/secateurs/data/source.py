"""What a file format loader returns, and the conversion of raw arrays to the library's layout.

Loaders keep images as uint8 (or float) arrays until the splits are made, so that the stratified
splitting copies bytes, not four-times-larger float32 tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import DataError
from .splits import DatasetSplits, make_splits

CHANNEL_SIZES = (1, 3, 4)


@dataclass
class Source:
    """Samples read from files: ``x_test is None`` when the source holds a single set of samples.

    ``x_*`` are (N, C, H, W) uint8 (0..255) or float32 (0..1) tensors; ``y_*`` are int64.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None
    classes: list[str] = field(default_factory=list)
    note: str = ""
    path: str = ""

    def to_splits(self, *, val_fraction: float, test_fraction: float, seed: int) -> DatasetSplits:
        splits = make_splits(
            self.name,
            self.x_train,
            self.y_train,
            self.x_test,
            self.y_test,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
            classes=self.classes or None,
        )
        splits.x_train = to_float(splits.x_train)
        splits.x_val = to_float(splits.x_val)
        splits.x_test = to_float(splits.x_test)
        splits.note = self.note
        splits.source = self.path
        return splits


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 0..1; float tensors are only cast; int64 (token ids of a
    features archive) stay as they are, for an Embedding."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(255.0)
    if x.dtype == torch.int64:
        return x
    return x.to(torch.float32)


def features_to_tensor(values: np.ndarray, where: str) -> torch.Tensor:
    """Samples that are not images (tabular rows, sequences, token ids), as they are: (N, ...)
    floats of any finite value as float32, integers as int64 (token ids for an Embedding)."""
    a = np.asarray(values)
    if a.ndim < 2:
        raise DataError(f"{where}: features have shape {a.shape}; expected (N, ...) samples")
    if a.dtype == np.bool_ or np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
        if a.size and not np.isfinite(a).all():
            raise DataError(f"{where}: features hold NaN or infinite values")
    elif np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.int64)
    else:
        raise DataError(f"{where}: features have dtype {a.dtype}; expected numbers")
    return torch.from_numpy(np.ascontiguousarray(a))


def images_to_tensor(images: np.ndarray, where: str) -> torch.Tensor:
    """Accept (N, H, W), (N, C, H, W) or (N, H, W, C) images, uint8 0..255 (or any integer type with
    values in 0..255) or float in [0, 1]; return (N, C, H, W) uint8 or float32.

    A 4-D array is read as NHWC when its last axis looks like channels (1, 3 or 4) and its second does
    not; otherwise as NCHW.
    """
    a = np.asarray(images)
    if a.ndim == 2:
        raise DataError(
            f"{where}: images have shape {a.shape}; expected (N, H, W), (N, C, H, W) or "
            "(N, H, W, C) (rows of features are read as such from an .npz archive)"
        )
    if a.ndim == 3:
        a = a[:, None, :, :]
    elif a.ndim == 4:
        if a.shape[-1] in CHANNEL_SIZES and a.shape[1] not in CHANNEL_SIZES:
            a = a.transpose(0, 3, 1, 2)
    else:
        raise DataError(
            f"{where}: images have shape {a.shape}; expected (N, H, W), (N, C, H, W) or (N, H, W, C)"
        )
    if a.dtype == np.uint8:
        out = a
    elif np.issubdtype(a.dtype, np.integer):
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo < 0 or hi > 255:
            raise DataError(f"{where}: integer images must hold values 0..255, found {lo}..{hi}")
        out = a.astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < -1e-6 or hi > 1.0 + 1e-6:
            raise DataError(
                f"{where}: float images must be in [0, 1], found values in [{lo:g}, {hi:g}]; "
                "divide by 255 or save them as uint8 (for samples that are not images, save "
                "layout='features' in the .npz archive)"
            )
        out = np.clip(a, 0.0, 1.0).astype(np.float32)
    else:
        raise DataError(f"{where}: images have dtype {a.dtype}; expected uint8 or float in [0, 1]")
    return torch.from_numpy(np.ascontiguousarray(out))


def labels_to_tensor(labels: np.ndarray, where: str) -> torch.Tensor:
    """Integer class indices 0..K-1 as an int64 tensor (float labels are accepted when integral)."""
    a = np.asarray(labels)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise DataError(
            f"{where}: labels have shape {a.shape}; expected a 1-D array of class indices"
        )
    if np.issubdtype(a.dtype, np.floating) and a.size:
        if np.all(np.mod(a, 1) == 0):
            a = a.astype(np.int64)
        else:
            bad = a[~(np.mod(a, 1) == 0)][0]
            raise DataError(
                f"{where}: labels must be whole numbers (class indices), found {bad:g}"
            )
    if not np.issubdtype(a.dtype, np.integer):
        raise DataError(f"{where}: labels have dtype {a.dtype}; expected integer class indices")
    if a.size and a.min() < 0:
        raise DataError(f"{where}: labels must be class indices >= 0, found {int(a.min())}")
    return torch.from_numpy(a.astype(np.int64))


def check_counts(
    where: str, images: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray
) -> None:
    for what, a in (("images", images), ("labels", labels)):
        if np.ndim(a) == 0:
            raise DataError(f"{where}: the {what} are a single number, not an array of samples")
    if len(images) != len(labels):
        raise DataError(
            f"{where}: {len(images)} images but {len(labels)} labels; the image and label files "
            "must hold the same samples"
        )
    if len(images) == 0:
        raise DataError(f"{where}: holds no samples")
