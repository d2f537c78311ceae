"""What datasets secateurs knows, and for each where its files were found or how to get them."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .download import offline
from .idx import scan_idx_dir
from .named import NAMED, how_to_get, locate


@dataclass(frozen=True)
class DatasetInfo:
    name: str  # the spec, e.g. "mnist" or "idx:DIR"
    description: str
    status: str  # "embedded", "generated", "found", "partial", "missing" or "path in spec"
    path: str  # where the files were found ("" when not found or not applicable)
    how_to_get: str  # what to do when missing, or how to use it
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def list_datasets(data_dir: str | os.PathLike | None = None) -> list[DatasetInfo]:
    """Every known dataset spec; named ones are looked up (cheaply: no file is read)."""
    infos = [
        DatasetInfo(
            "digits",
            "scikit-learn's 8x8 handwritten digits, 1,797 images, 10 classes",
            "embedded",
            "",
            "no file needed: shipped with scikit-learn",
        ),
        DatasetInfo(
            "synthetic",
            "seeded synthetic images, any shape and class count "
            "(synthetic:n=600,classes=4,shape=1x8x8,seed=0,noise=0.3)",
            "generated",
            "",
            "no file needed",
        ),
    ]
    downloads = "downloads are off ($SECATEURS_OFFLINE); " if offline() else ""
    for ds in NAMED.values():
        found = locate(ds, data_dir)
        if found is None:
            infos.append(
                DatasetInfo(
                    ds.name,
                    ds.description,
                    "missing",
                    "",
                    f"{downloads}{how_to_get(ds, data_dir)}",
                )
            )
        else:
            notes = [found.detail] if found.detail else []
            if not found.complete:
                notes = [
                    f"{found.detail}: they are split into train / validation / test by "
                    f"stratified fractions (loads as {ds.name}-"
                    f"{'t10k' if scan_idx_dir(found.path).keys() == {'test'} else 'train-only'})"
                    if ds.kind == "idx"
                    else f"{found.detail}: cannot be loaded"
                ]
            if data_dir is not None and found.path == Path(data_dir).expanduser():
                notes.append(
                    "the files lie directly in --data-dir, so they are used for whichever "
                    "dataset of this format is asked for"
                )
            status = "found" if found.complete else "partial"
            help_text = "" if found.complete else f"for the full set: {how_to_get(ds, data_dir)}"
            infos.append(
                DatasetInfo(
                    ds.name, ds.description, status, str(found.path), help_text, "; ".join(notes)
                )
            )
    infos += [
        DatasetInfo(
            "idx:DIR",
            "a folder of IDX files: train-images-idx3-ubyte[.gz] + "
            "train-labels-idx1-ubyte[.gz] and/or the t10k-* pair",
            "path in spec",
            "",
            "give the folder, e.g. idx:~/data/mnist",
        ),
        DatasetInfo(
            "imagefolder:DIR",
            "one subfolder per class (sorted names give the labels), "
            "optionally under train/ and test/; PNG, JPEG, ... read with Pillow",
            "path in spec",
            "",
            "give the folder, e.g. imagefolder:~/data/cifar10-jpeg",
        ),
        DatasetInfo(
            "npz:FILE",
            "a NumPy .npz with x_train, y_train, x_test, y_test (or x, y); "
            "NHWC, NCHW or NxHxW; uint8 0..255 or float in [0, 1]",
            "path in spec",
            "",
            "give the file, e.g. npz:data.npz",
        ),
    ]
    return infos
