"""Named datasets with standard files (MNIST, Fashion-MNIST, CIFAR-10): where their files are looked
up, and their download from the public mirrors when they are missing.

Lookup order, first folder with usable files wins:

1. ``--data-dir DIR`` (the ``data_dir`` argument): ``DIR/<subfolder>`` for the dataset's usual
   subfolder names (e.g. ``mnist``, ``MNIST/raw``), then ``DIR`` itself;
2. ``$SECATEURS_DATA/<subfolder>`` (a root shared by all datasets, so not the folder itself);
3. the download cache ``~/.cache/secateurs/<name>`` (``$XDG_CACHE_HOME`` is honoured);
4. system folders, e.g. ``/usr/share/datasets/fashion-mnist`` (Debian ``dataset-fashion-mnist``).

Missing files are downloaded into the first of ``DIR/<name>``, ``$SECATEURS_DATA/<name>``, the cache.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .cifar import CIFAR10_CLASSES, cifar_format, load_cifar_dir, partial_cifar_files
from .download import RemoteFile, extract_tar, fetch, mirror_urls, offline
from .idx import load_idx_dir, scan_idx_dir
from .source import Source

DATA_ENV = "SECATEURS_DATA"

MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


@dataclass(frozen=True)
class NamedDataset:
    name: str
    description: str
    kind: str  # "idx" or "cifar"
    files: tuple[RemoteFile, ...]
    mirrors: tuple[str, ...]
    subfolders: tuple[str, ...] = ()
    system_dirs: tuple[str, ...] = ()
    archive_top: str = ""  # the files are a tar archive holding this folder
    classes: tuple[str, ...] = ()
    extra_help: str = ""


NAMED: dict[str, NamedDataset] = {
    "mnist": NamedDataset(
        name="mnist",
        description="MNIST handwritten digits, 28x28 grayscale, 10 classes (60,000 train + 10,000 test)",
        kind="idx",
        files=tuple(
            RemoteFile(f, md5)
            for f, md5 in zip(
                MNIST_FILES,
                (
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                    "9fb629c4189551a2d022fa330f9573f3",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
                strict=True,
            )
        ),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        subfolders=("mnist", "MNIST/raw", "MNIST", "mnist-test"),
        classes=tuple(str(i) for i in range(10)),
    ),
    "fashion-mnist": NamedDataset(
        name="fashion-mnist",
        description="Fashion-MNIST clothing images, 28x28 grayscale, 10 classes "
        "(60,000 train + 10,000 test)",
        kind="idx",
        files=tuple(
            RemoteFile(f, md5)
            for f, md5 in zip(
                MNIST_FILES,
                (
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "bef4ecab320f06d8554ea6380940ec79",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
                strict=True,
            )
        ),
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        subfolders=("fashion-mnist", "FashionMNIST/raw", "FashionMNIST", "fashion_mnist"),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        extra_help="on Debian/Ubuntu `apt-get install dataset-fashion-mnist` installs them in "
        "/usr/share/datasets/fashion-mnist",
    ),
    "cifar10": NamedDataset(
        name="cifar10",
        description="CIFAR-10 photos, 32x32 RGB, 10 classes (50,000 train + 10,000 test); the "
        "official cifar-10-batches-py or cifar-10-batches-bin folder",
        kind="cifar",
        files=(RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),),
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        subfolders=(
            "cifar-10-batches-py",
            "cifar-10-batches-bin",
            "cifar10/cifar-10-batches-py",
            "cifar10/cifar-10-batches-bin",
            "cifar10",
        ),
        archive_top="cifar-10-batches-py",
        classes=tuple(CIFAR10_CLASSES),
        extra_help="for a folder of CIFAR-10 images (e.g. a JPEG copy) use the spec "
        "imagefolder:DIR",
    ),
}
ALIASES = {"fashionmnist": "fashion-mnist", "fashion_mnist": "fashion-mnist", "cifar-10": "cifar10"}


def named_dataset(name: str) -> NamedDataset | None:
    key = name.strip().lower()
    return NAMED.get(ALIASES.get(key, key))


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/secateurs``, by default ``~/.cache/secateurs``: where downloads go."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "secateurs"


def data_roots(data_dir: str | os.PathLike | None) -> list[tuple[Path, str]]:
    """The user's data folders in lookup order, with how each was given."""
    roots = []
    if data_dir is not None:
        roots.append((Path(data_dir).expanduser(), "--data-dir"))
    env = os.environ.get(DATA_ENV)
    if env:
        roots.append((Path(env).expanduser(), f"${DATA_ENV}"))
    return roots


def candidate_dirs(ds: NamedDataset, data_dir: str | os.PathLike | None) -> list[Path]:
    out: list[Path] = []
    for root, how in data_roots(data_dir):
        out.extend(root / sub for sub in ds.subfolders)
        if how == "--data-dir":  # the folder the user pointed at may hold the files themselves
            out.append(root)
    cache = cache_dir() / ds.name
    out.extend([cache / ds.archive_top, cache] if ds.archive_top else [cache])
    out.extend(Path(d) for d in ds.system_dirs)
    seen: set[Path] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def where_looked(ds: NamedDataset, data_dir: str | os.PathLike | None) -> str:
    subs = "/, ".join(ds.subfolders) + "/"
    parts = [
        f"{root} ({how}, and its subfolders {subs})"
        if how == "--data-dir"
        else f"the subfolders {subs} of {root} ({how})"
        for root, how in data_roots(data_dir)
    ]
    parts.append(str(cache_dir() / ds.name))
    parts.extend(ds.system_dirs)
    return "; ".join(parts)


def download_target(ds: NamedDataset, data_dir: str | os.PathLike | None) -> Path:
    roots = data_roots(data_dir)
    return (roots[0][0] if roots else cache_dir()) / ds.name


@dataclass
class Found:
    """A folder holding a dataset's files: ``complete`` False when only part of them is there."""

    path: Path
    complete: bool
    detail: str = ""


def probe(ds: NamedDataset, folder: Path) -> Found | None:
    if not folder.is_dir():
        return None
    if ds.kind == "idx":
        pairs = scan_idx_dir(folder)
        if not pairs:
            return None
        if len(pairs) == 2:
            return Found(folder, True)
        only = next(iter(pairs))
        return Found(
            folder, False, f"only the {'t10k (test)' if only == 'test' else 'train'} files"
        )
    fmt = cifar_format(folder)
    if fmt:
        return Found(folder, True, f"cifar-10-batches-{fmt}")
    present = partial_cifar_files(folder)
    if present:
        return Found(folder, False, f"incomplete: only {', '.join(present)}")
    return None


def locate(ds: NamedDataset, data_dir: str | os.PathLike | None = None) -> Found | None:
    """The first folder in lookup order holding (some of) the dataset's files."""
    for folder in candidate_dirs(ds, data_dir):
        found = probe(ds, folder)
        if found:
            return found
    return None


def how_to_get(ds: NamedDataset, data_dir: str | os.PathLike | None = None) -> str:
    names = ", ".join(f.filename for f in ds.files)
    target = download_target(ds, data_dir)
    what = (
        f"download {names} from {ds.mirrors[0]} and extract it into {target}"
        if ds.archive_top
        else f"download {names} from {ds.mirrors[0]} into {target}"
    )
    text = (
        f"{what} (or a folder given by --data-dir or ${DATA_ENV}), or let secateurs download "
        f"them when the network is reachable (mirror override: $SECATEURS_MIRROR)"
    )
    return f"{text}; {ds.extra_help}" if ds.extra_help else text


def download_dataset(
    name: str, data_dir: str | os.PathLike | None = None, mirror: str | None = None
) -> Path:
    """Download a named dataset's files (checksum-verified) and return the folder holding them."""
    ds = named_dataset(name)
    if ds is None:
        raise DataError(f"no download known for dataset {name!r}; known: {', '.join(NAMED)}")
    target = download_target(ds, data_dir)
    created = [p for p in (target, *target.parents) if not p.exists()]
    before = {f.filename for f in ds.files if (target / f.filename).exists()}
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _remove_created(created)
        raise DataError(f"cannot create download folder {target}: {e.strerror or e}") from e
    try:
        paths = fetch(ds.name, list(ds.files), target, list(ds.mirrors), mirror)
        if ds.archive_top:
            folder = extract_tar(paths[0], ds.archive_top, target)
            paths[0].unlink()  # the extracted folder is what is kept
            return folder
    except BaseException:
        # A failed download leaves nothing behind: not the files it fetched, not its folders.
        for f in ds.files:
            if f.filename not in before:
                (target / f.filename).unlink(missing_ok=True)
        _remove_created(created)
        raise
    return target


def _remove_created(created: list[Path]) -> None:
    """Remove the folders a download made (deepest first), if they are still empty."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:
            break


def load_named(
    ds: NamedDataset,
    data_dir: str | os.PathLike | None = None,
    *,
    download: bool | None = None,
    mirror: str | None = None,
) -> Source:
    """Load a named dataset from the first folder holding it, downloading it when it is missing."""
    found = locate(ds, data_dir)
    if found is None:
        if download is False or (download is None and offline()):
            raise DataError(
                f"{ds.name}: files not found; looked in {where_looked(ds, data_dir)}; downloads are "
                f"off (download=False or $SECATEURS_OFFLINE). To get them: {how_to_get(ds, data_dir)}"
            )
        try:
            folder = download_dataset(ds.name, data_dir, mirror)
        except DataError as e:
            urls = ", ".join(mirror_urls(ds.name, list(ds.mirrors), mirror))
            raise DataError(
                f"{ds.name}: files not found; looked in {where_looked(ds, data_dir)}; download from "
                f"{urls} failed: {e}. To get them: {how_to_get(ds, data_dir)}"
            ) from e
        found = probe(ds, folder)
        if found is None or not found.complete:
            raise DataError(f"{ds.name}: downloaded into {folder} but its files are not usable")
    if ds.kind == "cifar":
        if not found.complete:
            raise DataError(
                f"{ds.name}: {found.path} is an incomplete CIFAR-10 folder ({found.detail}); it "
                f"needs data_batch_1..5 and test_batch (or the .bin versions). {how_to_get(ds)}"
            )
        return load_cifar_dir(found.path, ds.name)
    source = load_idx_dir(found.path, ds.name, classes=list(ds.classes))
    if source.x_test is None:  # only one pair of files: say so in the name and the note
        only_test = scan_idx_dir(found.path).keys() == {"test"}
        source.name = f"{ds.name}-t10k" if only_test else f"{ds.name}-train-only"
        source.note = f"{ds.name}: {source.note}"
    return source
