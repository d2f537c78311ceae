"""Reference writers of every supported file format, written from the formats' descriptions and
independent of the readers under test."""

from __future__ import annotations

import gzip
import io
import pickle
import socket
import struct
import tarfile
from pathlib import Path

import numpy as np

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}


def idx_bytes(arr: np.ndarray) -> bytes:
    """The IDX encoding of ``arr``, written from the format's description."""
    code = IDX_CODES[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr: np.ndarray, gz: bool | None = None) -> Path:
    data = idx_bytes(arr)
    if gz if gz is not None else path.suffix == ".gz":
        data = gzip.compress(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_mnist_like(folder: Path, x_train, y_train, x_test, y_test, gz: bool = True) -> Path:
    ext = ".gz" if gz else ""
    if x_train is not None:
        write_idx(folder / f"train-images-idx3-ubyte{ext}", x_train)
        write_idx(folder / f"train-labels-idx1-ubyte{ext}", y_train)
    if x_test is not None:
        write_idx(folder / f"t10k-images-idx3-ubyte{ext}", x_test)
        write_idx(folder / f"t10k-labels-idx1-ubyte{ext}", y_test)
    return folder


def random_images(rng, n: int, shape=(28, 28), classes: int = 10):
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    y = (np.arange(n) % classes).astype(np.uint8)
    rng.shuffle(y)
    return x, y


def make_tar(path: Path, members: dict[str, bytes]) -> Path:
    """A .tar.gz of in-memory files."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


# ---- CIFAR-10 ------------------------------------------------------------------------------------


class Py2StylePickler(pickle._Pickler):
    """Writes ``bytes`` and ``str`` as Python 2 strings (``U``/``T`` opcodes), as the official
    CIFAR-10 pickles (made by Python 2's cPickle) hold them."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str
    dispatch[str] = save_py2_str


def cifar_pickle(obj, style: str) -> bytes:
    """``style``: "py2" (like the official files), "protocol2" or "protocol5" (Python 3)."""
    if style == "py2":
        buf = io.BytesIO()
        Py2StylePickler(buf, protocol=2).dump(obj)
        data = buf.getvalue()
        # numpy 2 names its module numpy._core; the official files say numpy.core
        return data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
    return pickle.dumps(obj, protocol=2 if style == "protocol2" else 5)


def cifar_batch(rng, n: int, label_offset: int = 0):
    """Random CIFAR-like images (N, 3, 32, 32) uint8 and labels 0..9."""
    x = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    y = ((np.arange(n) + label_offset) % 10).astype(np.int64)
    return x, y


def write_cifar_py(folder: Path, batches, test, style: str = "py2", meta=None) -> Path:
    """``batches``: five (x, y) pairs; ``test``: one. Laid out as cifar-10-batches-py."""
    folder.mkdir(parents=True, exist_ok=True)
    named = [(f"data_batch_{i + 1}", b) for i, b in enumerate(batches)] + [("test_batch", test)]
    for name, (x, y) in named:
        obj = {
            b"batch_label": f"{name} of 5".encode(),
            b"labels": [int(v) for v in y],
            b"data": np.ascontiguousarray(x.reshape(len(x), -1)),
            b"filenames": [f"img_{i}.png".encode() for i in range(len(x))],
        }
        (folder / name).write_bytes(cifar_pickle(obj, style))
    if meta is not None:
        obj = {
            b"num_cases_per_batch": 10000,
            b"label_names": [m.encode() for m in meta],
            b"num_vis": 3072,
        }
        (folder / "batches.meta").write_bytes(cifar_pickle(obj, style))
    return folder


def write_cifar_bin(folder: Path, batches, test, meta=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    named = [(f"data_batch_{i + 1}.bin", b) for i, b in enumerate(batches)]
    for name, (x, y) in [*named, ("test_batch.bin", test)]:
        records = np.concatenate([y.astype(np.uint8)[:, None], x.reshape(len(x), -1)], axis=1)
        (folder / name).write_bytes(records.tobytes())
    if meta is not None:
        (folder / "batches.meta.txt").write_text("\n".join(meta) + "\n\n")
    return folder


# ---- image folders -------------------------------------------------------------------------------


def write_image_tree(root: Path, images: dict[str, list[np.ndarray]], ext: str = ".png") -> Path:
    """``images``: class name -> list of (H, W) or (H, W, 3) uint8 arrays, saved with Pillow."""
    from PIL import Image

    for cls, arrays in images.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i, arr in enumerate(arrays):
            Image.fromarray(arr).save(root / cls / f"{i:04d}{ext}")
    return root


def closed_port() -> int:
    """A local port with nothing listening on it (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
