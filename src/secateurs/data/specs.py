"""Dataset specs: one string names a dataset, the same in Python and on the command line."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import DataError
from .builtin import SYNTHETIC_OPTIONS, load_digits_arrays, parse_options, synthetic_arrays
from .splits import DatasetSplits, make_splits


def load_dataset(
    spec: str,
    data_dir: str | os.PathLike | None = None,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> DatasetSplits:
    """Load a dataset by spec into train / validation / test tensors.

    ``val_fraction`` of the training samples (stratified, seeded) become the validation split; a
    source without its own test set gives ``test_fraction`` of its samples to the test split.
    """
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    common = dict(val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    if kind == "digits":
        x, y = load_digits_arrays()
        return make_splits("digits", x, y, None, None, **common)
    if kind == "synthetic":
        opts = parse_options(arg, SYNTHETIC_OPTIONS, spec)
        x, y = synthetic_arrays(**opts)
        return make_splits("synthetic", x, y, None, None, **common)
    raise DataError(
        f"unknown dataset spec {spec!r}; run `secateurs datasets` to list the known ones"
    )


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    return Path(data_dir).expanduser() if data_dir is not None else None
