"""Image folders: one subfolder per class (sorted names give the label indices), optionally under
``train/`` and ``test/``. Images are decoded with Pillow by a small thread pool (Pillow releases the
GIL while decoding), so 60,000 small JPEGs load in seconds.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .source import Source

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
CHUNK = 512  # images per pool task: large enough to amortise the task overhead
# Below this many pixels per image, decoding is a small part of the per-image cost (Pillow's header
# parsing runs in Python, holding the GIL) and threads only add contention: decode in one thread.
THREADED_MIN_PIXELS = 64 * 64


def list_class_folder(folder: Path) -> tuple[list[str], list[Path], np.ndarray]:
    """``(class names, image paths, labels)`` of a one-subfolder-per-class tree."""
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist or is not a folder")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(
            f"{folder} has no class subfolders; an image folder holds one subfolder per class "
            "(e.g. cat/001.png, dog/002.png), optionally under train/ and test/"
        )
    paths: list[Path] = []
    labels: list[int] = []
    for index, cls in enumerate(classes):
        files = sorted(
            p
            for p in (folder / cls).rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith(".")
        )
        paths.extend(files)
        labels.extend([index] * len(files))
    if not paths:
        raise DataError(
            f"no images in the class subfolders of {folder}; expected files ending in "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}"
        )
    return classes, paths, np.asarray(labels, dtype=np.int64)


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
        im.load()
        return im
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode image {path}: {e}") from e


def _decode_into(out: np.ndarray, paths: list[Path], start: int, mode: str) -> None:
    h, w = out.shape[1], out.shape[2]
    for i, path in enumerate(paths, start):
        im = _open(path)
        if im.size != (w, h):
            raise DataError(
                f"image {path} is {im.size[0]}x{im.size[1]} but the first image is {w}x{h}; "
                "all images of a dataset must have the same size (resize them first)"
            )
        if im.mode != mode:
            im = im.convert(mode)
        arr = np.asarray(im, dtype=np.uint8)
        out[i] = arr if arr.ndim == 3 else arr[:, :, None]


def decode_images(paths: list[Path], workers: int | None = None) -> np.ndarray:
    """Decode images into one (N, C, H, W) uint8 array; size and mode come from the first image
    (grayscale modes give 1 channel, everything else is converted to RGB). ``workers`` threads
    decode chunks of images (default: 1 for small images, else up to 4)."""
    first = _open(paths[0])
    mode = "L" if first.mode in GRAY_MODES else "RGB"
    w, h = first.size
    channels = 1 if mode == "L" else 3
    out = np.empty((len(paths), h, w, channels), dtype=np.uint8)
    chunks = [(paths[i : i + CHUNK], i) for i in range(0, len(paths), CHUNK)]
    if workers is None:
        workers = min(4, os.cpu_count() or 1) if h * w >= THREADED_MIN_PIXELS else 1
    if workers <= 1 or len(chunks) == 1:
        for chunk, start in chunks:
            _decode_into(out, chunk, start, mode)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for future in [pool.submit(_decode_into, out, c, s, mode) for c, s in chunks]:
                future.result()
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def load_image_folder(root: Path, name: str | None = None, workers: int | None = None) -> Source:
    """Load ``root/<class>/*`` (a single source) or ``root/train/<class>/*`` + ``root/test/<class>/*``."""
    root = Path(root)
    name = name or f"imagefolder:{root.name}"
    if (root / "train").is_dir() and (root / "test").is_dir():
        classes, train_paths, y_train = list_class_folder(root / "train")
        test_classes, test_paths, y_test = list_class_folder(root / "test")
        unknown = sorted(set(test_classes) - set(classes))
        if unknown:
            raise DataError(
                f"{root / 'test'} has class folders {unknown} that {root / 'train'} lacks; the test "
                "classes must be among the training classes"
            )
        y_test = np.asarray([classes.index(test_classes[i]) for i in y_test], dtype=np.int64)
        x_train = decode_images(train_paths, workers)
        x_test = decode_images(test_paths, workers)
        if x_train.shape[1:] != x_test.shape[1:]:
            raise DataError(
                f"{root}: train images are {x_train.shape[1:]} (C, H, W) but test images are "
                f"{x_test.shape[1:]}"
            )
        return Source(
            name,
            torch.from_numpy(x_train),
            torch.from_numpy(y_train),
            torch.from_numpy(x_test),
            torch.from_numpy(y_test),
            classes=classes,
            path=str(root),
        )
    folder = root / "train" if (root / "train").is_dir() else root
    classes, paths, y = list_class_folder(folder)
    x = decode_images(paths, workers)
    return Source(name, torch.from_numpy(x), torch.from_numpy(y), classes=classes, path=str(root))
