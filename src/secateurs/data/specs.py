"""Dataset specs: one string names a dataset, the same in Python and on the command line.

=======================  ==============================================================
``digits``               scikit-learn's 8x8 digits (embedded: no file, no network)
``synthetic:k=v,...``    seeded synthetic data (``n, classes, shape, seed, noise``)
``mnist``                MNIST IDX files (downloaded when missing)
``fashion-mnist``        Fashion-MNIST IDX files (downloaded when missing)
``cifar10``              official ``cifar-10-batches-py`` / ``cifar-10-batches-bin`` folder
``idx:DIR``              a folder of IDX files (train-* and/or t10k-*)
``imagefolder:DIR``      one subfolder per class, optionally under ``train/`` and ``test/``
``npz:FILE``             ``x_train, y_train, x_test, y_test`` or ``x, y``
=======================  ==============================================================
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from ..errors import DataError, DataWarning
from .builtin import SYNTHETIC_OPTIONS, load_digits_arrays, parse_options, synthetic_arrays
from .idx import load_idx_dir
from .imagefolder import load_image_folder
from .named import data_roots, load_named, named_dataset
from .npz import load_npz
from .splits import DatasetSplits, make_splits

PATH_KINDS = ("idx", "imagefolder", "npz")


def load_dataset(
    spec: str,
    data_dir: str | os.PathLike | None = None,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    download: bool | None = None,
    mirror: str | None = None,
) -> DatasetSplits:
    """Load a dataset by spec into train / validation / test tensors.

    ``val_fraction`` of the training samples (stratified, seeded) become the validation split; a
    source without its own test set gives ``test_fraction`` of its samples to the test split.
    Named datasets whose files are missing are downloaded unless ``download`` is False (None: unless
    ``$SECATEURS_OFFLINE`` is set); ``mirror`` (or ``$SECATEURS_MIRROR``) replaces the public mirrors.
    """
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    common = dict(val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    if kind in ("digits", "synthetic") and data_dir is not None:
        warnings.warn(
            f"{kind} is built in: the data folder {data_dir} is not used"
            + ("" if Path(data_dir).expanduser().is_dir() else " (nor does it exist)"),
            DataWarning,
            stacklevel=2,
        )
    if kind == "digits":
        parse_options(arg, {}, spec)
        x, y = load_digits_arrays()
        return make_splits("digits", x, y, None, None, **common)
    if kind == "synthetic":
        opts = parse_options(arg, SYNTHETIC_OPTIONS, spec)
        x, y = synthetic_arrays(**opts)
        return make_splits("synthetic", x, y, None, None, **common)
    ds = named_dataset(kind)
    if ds is not None:
        parse_options(arg, {}, spec)
        source = load_named(ds, data_dir, download=download, mirror=mirror)
        return source.to_splits(**common)
    if kind in PATH_KINDS:
        if not arg.strip():
            raise DataError(f"dataset spec {spec!r} needs a path: {kind}:PATH")
        path = resolve_spec_path(arg.strip(), data_dir, kind)
        if kind == "idx":
            source = load_idx_dir(path, f"idx:{path.name}")
        elif kind == "imagefolder":
            source = load_image_folder(path)
        else:
            source = load_npz(path)
        return source.to_splits(**common)
    raise DataError(
        f"unknown dataset spec {spec!r}; run `secateurs datasets` to list the known ones"
    )


def resolve_spec_path(text: str, data_dir: str | os.PathLike | None, kind: str) -> Path:
    """A path in a spec: as given (relative to the working folder), else relative to ``--data-dir``
    or ``$SECATEURS_DATA``."""
    path = Path(text).expanduser()
    if path.exists():
        return path
    tried = [path.resolve()]
    if not path.is_absolute():
        for root, _ in data_roots(data_dir):
            if (root / path).exists():
                return root / path
            tried.append(root / path)
    want = "file" if kind == "npz" else "folder"
    raise DataError(
        f"{kind}: {want} {text!r} not found (looked at {', '.join(map(str, tried))}); give an "
        "existing path, absolute or relative to the working folder or --data-dir"
    )


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    return Path(data_dir).expanduser() if data_dir is not None else None
