"""IDX files (the MNIST format), gzipped or not: strict reading with errors that say what is wrong.

Format: two zero bytes, a type code, the number of dimensions D, D big-endian uint32 sizes, then
the values big-endian, exactly prod(sizes) of them.
"""

from __future__ import annotations

import gzip
import math
import re
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .source import Source, check_counts, images_to_tensor, labels_to_tensor

IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# train-images-idx3-ubyte(.gz), t10k-labels.idx1-ubyte, test-images-idx3-ubyte ... (the dot form is
# how some copies of MNIST name them).
IDX_NAME = re.compile(r"^(train|t10k|test)-(images|labels)[-.]idx([13])-ubyte(\.gz)?$")


def read_bytes(path: Path) -> bytes:
    """The file's content, decompressed when it is gzip (detected by its magic bytes, not its name)."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(
            f"{path} is a corrupt or truncated gzip file ({e}); download it again"
        ) from e


def parse_idx(data: bytes, where: str) -> np.ndarray:
    """Decode an IDX byte string into an array of native byte order."""
    if len(data) < 4:
        raise DataError(f"{where}: {len(data)} bytes is too short for an IDX header (4 bytes)")
    if data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise DataError(
            f"{where}: bad IDX magic number {data[:4].hex()}; expected 0000 followed by a type code "
            f"({', '.join(f'{t:02x}' for t in IDX_TYPES)}) and the number of dimensions; "
            "is this an IDX file?"
        )
    dtype, ndim = IDX_TYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DataError(f"{where}: truncated IDX header ({len(data)} bytes, {ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    # Python integers: a product of sizes up to 2**32 - 1 each must not wrap around.
    expected = header + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(
            f"{where}: IDX file is {what}: header says shape {shape} ({expected} bytes), "
            f"file holds {len(data)} bytes; download it again"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))  # a writable copy in native byte order


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzipped or not)."""
    path = Path(path)
    return parse_idx(read_bytes(path), str(path))


def scan_idx_dir(folder: Path) -> dict[str, tuple[Path, Path]]:
    """Find the image/label file pairs in ``folder``: ``{"train": (images, labels), "test": ...}``.

    Uncompressed files are preferred over gzipped ones when both are present.
    """
    found: dict[tuple[str, str], Path] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return {}
    for p in entries:
        m = IDX_NAME.match(p.name)
        if not m or not p.is_file():
            continue
        split = "train" if m.group(1) == "train" else "test"
        key = (split, m.group(2))
        if key not in found or found[key].suffix == ".gz":
            found[key] = p
    return {
        split: (found[(split, "images")], found[(split, "labels")])
        for split in ("train", "test")
        if (split, "images") in found and (split, "labels") in found
    }


def load_idx_pair(images: Path, labels: Path) -> tuple[torch.Tensor, torch.Tensor]:
    x = read_idx(images)
    y = read_idx(labels)
    if x.ndim not in (3, 4):
        raise DataError(
            f"{images}: IDX images have shape {x.shape}; expected (N, H, W) or (N, H, W, C)"
        )
    if y.ndim != 1:
        raise DataError(f"{labels}: IDX labels have shape {y.shape}; expected (N,)")
    check_counts(f"{images.name} / {labels.name} in {images.parent}", x, y)
    return images_to_tensor(x, str(images)), labels_to_tensor(y, str(labels))


def load_idx_dir(folder: Path, name: str, classes: list[str] | None = None) -> Source:
    """Load the IDX pairs of a folder; with one pair only, it becomes a single source of samples."""
    pairs = scan_idx_dir(folder)
    if not pairs:
        raise DataError(
            f"no IDX image/label pair in {folder}; expected files named like "
            "train-images-idx3-ubyte[.gz] + train-labels-idx1-ubyte[.gz] and/or "
            "t10k-images-idx3-ubyte[.gz] + t10k-labels-idx1-ubyte[.gz]"
        )
    loaded = {split: load_idx_pair(*pair) for split, pair in pairs.items()}
    if "train" in loaded and "test" in loaded:
        (x_tr, y_tr), (x_te, y_te) = loaded["train"], loaded["test"]
        if x_tr.shape[1:] != x_te.shape[1:]:
            raise DataError(
                f"{folder}: train images are {tuple(x_tr.shape[1:])} but test images are "
                f"{tuple(x_te.shape[1:])}"
            )
        return Source(name, x_tr, y_tr, x_te, y_te, classes=classes or [], path=str(folder))
    ((split, (x, y)),) = loaded.items()
    missing = "train" if split == "test" else "t10k"
    note = (
        f"only the {split} files were found in {folder} (no {missing}-* files): its {len(y):,} "
        "images are split into train / validation / test by stratified fractions"
    )
    return Source(name, x, y, classes=classes or [], note=note, path=str(folder))
