"""In-memory train / validation / test splits, and stratified splitting."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from ..errors import ConfigError, DataError


@dataclass
class DatasetSplits:
    """A dataset loaded into memory: images as float32 in [0, 1], shape (N, C, H, W); int64 labels."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    classes: list[str] = field(default_factory=list)
    # What a reader of the results should know, e.g. "only the MNIST test files were found: ...".
    note: str = ""
    # Where the samples were read from ("" for embedded or generated data).
    source: str = ""

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x, y)`` of ``train``, ``val`` or ``test``."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; expected 'train', 'val' or 'test'")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def summary(self) -> dict:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "train": len(self.y_train),
            "val": len(self.y_val),
            "test": len(self.y_test),
            "note": self.note,
            "source": self.source,
        }


def check_labels(name: str, y: torch.Tensor, classes: list[str] | None = None) -> None:
    """Labels must be class indices 0..C-1 of at least two classes: refuse IDs (one stray label
    of 10**9 would size every per-class array by it) and single-class data up front."""
    if len(y) == 0:
        return
    values = torch.unique(y)
    top = int(values.max())
    if top + 1 > 10 * len(values) + 1000:
        raise DataError(
            f"{name}: labels go up to {top} but only {len(values)} distinct values appear; labels "
            "must be class indices 0..C-1 (map IDs to indices first)"
        )
    if len(values) < 2 and len(classes or []) < 2:
        raise DataError(
            f"{name}: every sample has label {int(values[0])}; a classifier needs at least 2 "
            "classes"
        )


def stratified_split(
    x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split off a stratified, seeded ``fraction`` of the samples: returns (x_rest, y_rest, x_part, y_part)."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"split fraction must be in (0, 1), got {fraction}")
    labels = y.numpy()
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    idx = np.arange(len(labels))
    # A class of one sample cannot be stratified: it stays in the first part, and the others are
    # stratified as usual (rather than the whole split falling back to a plain random one).
    single = counts[inverse] < 2
    pool = idx[~single] if single.any() and (~single).sum() >= 2 else idx
    stratify = labels[pool] if pool is not idx or not single.any() else None
    try:
        rest, part = train_test_split(pool, test_size=fraction, random_state=seed, stratify=stratify)
    except ValueError:  # too few samples per class for a stratified split of that size
        rest, part = train_test_split(pool, test_size=fraction, random_state=seed, stratify=None)
    if pool is not idx:
        rest = np.concatenate([rest, idx[single]])
    rest, part = np.sort(rest), np.sort(part)
    rest_t, part_t = torch.from_numpy(rest), torch.from_numpy(part)
    return x[rest_t], y[rest_t], x[part_t], y[part_t]


def make_splits(
    name: str,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor | None,
    y_test: torch.Tensor | None,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    classes: list[str] | None = None,
) -> DatasetSplits:
    """Build splits from a source: when it has no test set, a stratified ``test_fraction`` becomes one;
    the validation split is always a stratified ``val_fraction`` of the training samples."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed {seed!r}: expected an integer in [0, 2^32)")
    if len(x_train) != len(y_train):
        raise DataError(f"{name}: {len(x_train)} images but {len(y_train)} labels")
    check_labels(name, y_train if y_test is None else torch.cat([y_train, y_test]), classes)
    if x_test is None or y_test is None:
        x_train, y_train, x_test, y_test = stratified_split(x_train, y_train, test_fraction, seed)
    elif len(x_test) != len(y_test):
        raise DataError(f"{name}: {len(x_test)} test images but {len(y_test)} test labels")
    x_tr, y_tr, x_val, y_val = stratified_split(x_train, y_train, val_fraction, seed)
    num_classes = int(max(y_train.max().item(), y_test.max().item())) + 1
    if classes and len(classes) > num_classes:
        num_classes = len(classes)
    return DatasetSplits(
        name=name,
        x_train=x_tr.contiguous(),
        y_train=y_tr.long(),
        x_val=x_val.contiguous(),
        y_val=y_val.long(),
        x_test=x_test.contiguous(),
        y_test=y_test.long(),
        num_classes=num_classes,
        classes=list(classes or [str(i) for i in range(num_classes)]),
    )
