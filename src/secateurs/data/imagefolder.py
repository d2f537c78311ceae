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
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
WIDE_GRAY_MODES = {"I", "I;16", "I;16B", "I;16L", "F"}  # more than 8 bits a pixel
CHUNK = 512  # images per pool task: large enough to amortise the task overhead
# Below this many pixels per image, decoding is a small part of the per-image cost (Pillow's header
# parsing runs in Python, holding the GIL) and threads only add contention: decode in one thread.
THREADED_MIN_PIXELS = 64 * 64
ORIENTATION = 0x0112  # the EXIF tag saying how a photo is turned


def _images_under(folder: Path) -> list[Path]:
    """Image files below ``folder``, skipping hidden files and anything under a hidden folder
    (``.ipynb_checkpoints``, ``__MACOSX``'s ``._`` files)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )


def list_class_folder(folder: Path) -> tuple[list[str], list[Path], np.ndarray]:
    """``(class names, image paths, labels)`` of a one-subfolder-per-class tree. Folders without
    an image (``__MACOSX``, an empty class) are not classes: they would add an output no sample
    has."""
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist or is not a folder")
    candidates = sorted(
        p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not candidates:
        raise DataError(
            f"{folder} has no class subfolders; an image folder holds one subfolder per class "
            "(e.g. cat/001.png, dog/002.png), optionally under train/ and test/"
        )
    classes: list[str] = []
    paths: list[Path] = []
    labels: list[int] = []
    for cls in candidates:
        files = _images_under(folder / cls)
        if not files:
            continue
        paths.extend(files)
        labels.extend([len(classes)] * len(files))
        classes.append(cls)
    if not paths:
        raise DataError(
            f"no images in the class subfolders of {folder}; expected files ending in "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}"
        )
    return classes, paths, np.asarray(labels, dtype=np.int64)


def _upright(orientation: int):
    """The transpose that turns pixels stored with this EXIF Orientation upright (None: 1, upright,
    or a value outside the standard's 1-8)."""
    from PIL.Image import Transpose as T

    return {
        2: T.FLIP_LEFT_RIGHT, 3: T.ROTATE_180, 4: T.FLIP_TOP_BOTTOM, 5: T.TRANSPOSE,
        6: T.ROTATE_270, 7: T.TRANSVERSE, 8: T.ROTATE_90,
    }.get(orientation)


def _open(path: Path):
    """The decoded image, turned upright: a phone photo stores its pixels as the sensor saw them
    and an EXIF Orientation tag saying how to turn them, which viewers apply and Pillow does not."""
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
        # JPEG, PNG and WebP keep EXIF in info: only files that carry it pay for parsing it.
        # (Pillow's TIFF decoder handles a TIFF's own orientation tag itself.)
        turn = _upright(im.getexif().get(ORIENTATION, 1)) if "exif" in im.info else None
        im.load()
        return im.transpose(turn) if turn is not None else im
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode image {path}: {e}") from e


def _pixels(im, path: Path) -> np.ndarray:
    """(H, W, 1) gray or (H, W, 3) RGB uint8 pixels. 16-bit and 32-bit gray images are scaled
    from their full range (value / 257), float images from [0, 1]: converting them with Pillow
    would clip them to 0..255."""
    if im.mode in WIDE_GRAY_MODES:
        raw = np.asarray(im, dtype=np.float64)
        top, scale = (1.0, 255.0) if im.mode == "F" else (65535.0, 1 / 257)
        if raw.size and (raw.min() < 0 or raw.max() > top or not np.isfinite(raw).all()):
            raise DataError(
                f"image {path} ({im.mode} mode) has values in [{raw.min():g}, {raw.max():g}]; "
                f"expected {'[0, 1]' if im.mode == 'F' else '0..65535'}"
            )
        return np.rint(raw * scale).astype(np.uint8)[:, :, None]
    if im.mode in GRAY_MODES:
        return np.asarray(im.convert("L") if im.mode != "L" else im, dtype=np.uint8)[:, :, None]
    return np.asarray(im.convert("RGB") if im.mode != "RGB" else im, dtype=np.uint8)


def _decode_into(out: np.ndarray, paths: list[Path], start: int) -> bool:
    """Decode into ``out`` (N, H, W, 3); returns whether any image had colour."""
    h, w = out.shape[1], out.shape[2]
    colour = False
    for i, path in enumerate(paths, start):
        im = _open(path)
        if im.size != (w, h):
            raise DataError(
                f"image {path} is {im.size[0]}x{im.size[1]} but the first image is {w}x{h}; "
                "all images of a dataset must have the same size (resize them first)"
            )
        arr = _pixels(im, path)
        out[i] = arr
        colour |= arr.shape[2] == 3
    return colour


def decode_images(paths: list[Path], workers: int | None = None, *, colour: bool | None = None):
    """Decode images into one (N, C, H, W) uint8 array and whether they had colour. Size comes
    from the first image; the channels from all of them: 1 if every image is grayscale (any
    bit depth), else 3 (RGB, gray images replicated); ``colour=True`` forces 3. ``workers``
    threads decode chunks of images (default: 1 for small images, else up to 4)."""
    w, h = _open(paths[0]).size
    out = np.empty((len(paths), h, w, 3), dtype=np.uint8)
    chunks = [(paths[i : i + CHUNK], i) for i in range(0, len(paths), CHUNK)]
    if workers is None:
        workers = min(4, os.cpu_count() or 1) if h * w >= THREADED_MIN_PIXELS else 1
    if workers <= 1 or len(chunks) == 1:
        seen = [_decode_into(out, chunk, start) for chunk, start in chunks]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            seen = [f.result() for f in [pool.submit(_decode_into, out, c, s) for c, s in chunks]]
    colour = bool(colour) or any(seen)
    out = out if colour else out[:, :, :, :1]
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)), colour


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
        x_train, colour = decode_images(train_paths, workers)
        x_test, test_colour = decode_images(test_paths, workers, colour=colour)
        if test_colour and not colour:  # colour in test only: both in RGB
            x_train, _ = decode_images(train_paths, workers, colour=True)
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
            note=next((f"{root / v}/ is not read: validation data is split off train/"
                       for v in ("val", "valid", "validation") if (root / v).is_dir()), ""),
        )
    for split in ("val", "valid", "validation"):
        if (root / "train").is_dir() and (root / split).is_dir():
            raise DataError(
                f"{root} has train/ and {split}/ but no test/; the split layout is train/ and "
                "test/ (validation data is split off train/): rename it test/ or merge it into "
                "train/"
            )
    # train/ beside other class folders is a class (a folder of trains), not a split; alone, it
    # holds the class folders
    others = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
              and p.name != "train"]
    alone = (root / "train").is_dir() and not any(_images_under(p) for p in others)
    classes, paths, y = list_class_folder(root / "train" if alone else root)
    x, _ = decode_images(paths, workers)
    return Source(name, torch.from_numpy(x), torch.from_numpy(y), classes=classes, path=str(root))
