"""CIFAR-10 folders: pickled (read by a restricted unpickler) and binary versions."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from datafiles import cifar_batch, cifar_pickle, write_cifar_bin, write_cifar_py

from secateurs.data import load_dataset
from secateurs.data.cifar import CIFAR10_CLASSES, read_py_batch, restricted_load
from secateurs.errors import DataError

META = [f"class{i}" for i in range(10)]


def batches(seed: int = 0, n: int = 20):
    rng = np.random.default_rng(seed)
    return [cifar_batch(rng, n, i) for i in range(5)], cifar_batch(rng, n, 7)


def expected_float(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).float() / 255


@pytest.mark.parametrize("style", ["py2", "protocol2", "protocol5"])
def test_cifar_py_folder(tmp_path, style):
    train, test = batches()
    folder = write_cifar_py(tmp_path / "cifar-10-batches-py", train, test, style, meta=META)
    d = load_dataset("cifar10", tmp_path, val_fraction=0.1, download=False)
    assert d.name == "cifar10" and d.source == str(folder)
    assert d.classes == META and d.num_classes == 10
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (90, 10, 20)
    torch.testing.assert_close(d.x_test, expected_float(test[0]))
    assert d.y_test.tolist() == test[1].tolist()
    # every training image comes back with its label (compared as multisets of (pixels, label))
    x_all = (torch.cat([d.x_train, d.x_val]) * 255).round().to(torch.uint8).numpy()
    y_all = torch.cat([d.y_train, d.y_val]).tolist()
    got = sorted(zip([r.tobytes() for r in x_all], y_all, strict=True))
    want = sorted((xi.tobytes(), int(yi)) for x, y in train for xi, yi in zip(x, y, strict=True))
    assert got == want


def test_cifar_bin_folder_equals_py_folder(tmp_path):
    train, test = batches(seed=4)
    write_cifar_py(tmp_path / "py" / "cifar-10-batches-py", train, test)
    write_cifar_bin(tmp_path / "bin" / "cifar-10-batches-bin", train, test, meta=META)
    a = load_dataset("cifar10", tmp_path / "py", download=False, seed=3)
    b = load_dataset("cifar10", tmp_path / "bin", download=False, seed=3)
    assert a.classes == CIFAR10_CLASSES  # no batches.meta: the standard names
    assert b.classes == META
    for name in ("train", "val", "test"):
        xa, ya = a.split(name)
        xb, yb = b.split(name)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    train, test = batches()
    folder = write_cifar_py(tmp_path / "cifar-10-batches-py", train, test)
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DataError, match=r"refused to load .*data_batch_3.*(posix|nt)\.system"):
        load_dataset("cifar10", tmp_path, download=False)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        (eval, ("1+1",)),
        (getattr, ("abc", "upper")),
        (np.load, ("x.npy",)),
        (bytes.fromhex, ("00",)),
    ],
)
def test_other_globals_are_refused(tmp_path, payload):
    class Reducer:
        def __reduce__(self):
            return payload

    (tmp_path / "b").write_bytes(pickle.dumps([Reducer()], protocol=2))
    with pytest.raises(DataError, match="is not allowed"):
        restricted_load(tmp_path / "b")


def test_codecs_encode_is_limited_to_latin1(tmp_path):
    import codecs

    class Rot:
        def __reduce__(self):
            return (codecs.encode, ("abc", "rot13"))

    (tmp_path / "b").write_bytes(pickle.dumps(Rot(), protocol=2))
    with pytest.raises(DataError, match="not allowed"):
        restricted_load(tmp_path / "b")


def test_truncated_pickle(tmp_path):
    x, y = cifar_batch(np.random.default_rng(0), 5)
    data = cifar_pickle({b"data": x.reshape(5, -1), b"labels": y.tolist()}, "py2")
    (tmp_path / "b").write_bytes(data[: len(data) - 100])
    with pytest.raises(DataError, match="corrupt or truncated"):
        read_py_batch(tmp_path / "b")


def test_pickle_with_wrong_content(tmp_path):
    x, y = cifar_batch(np.random.default_rng(0), 5)
    (tmp_path / "a").write_bytes(
        cifar_pickle({b"data": x.reshape(5, -1), b"labels": [1, 2]}, "py2")
    )
    with pytest.raises(DataError, match="5 images but 2 labels"):
        read_py_batch(tmp_path / "a")
    (tmp_path / "b").write_bytes(
        cifar_pickle({b"data": x.reshape(5, -1).astype(np.float32), b"labels": y.tolist()}, "py2")
    )
    with pytest.raises(DataError, match="must be a uint8 array"):
        read_py_batch(tmp_path / "b")
    (tmp_path / "c").write_bytes(cifar_pickle([1, 2, 3], "py2"))
    with pytest.raises(DataError, match="expected a dict"):
        read_py_batch(tmp_path / "c")


def test_truncated_bin_batch(tmp_path):
    train, test = batches()
    folder = write_cifar_bin(tmp_path / "cifar-10-batches-bin", train, test)
    data = (folder / "test_batch.bin").read_bytes()
    (folder / "test_batch.bin").write_bytes(data[:-10])
    with pytest.raises(DataError, match="not a whole number of 3073-byte records"):
        load_dataset("cifar10", tmp_path, download=False)


def test_incomplete_folder_names_what_is_there(tmp_path):
    train, test = batches()
    folder = write_cifar_py(tmp_path / "cifar-10-batches-py", train, test)
    (folder / "data_batch_4").unlink()
    with pytest.raises(DataError, match="incomplete CIFAR-10 folder.*data_batch_5"):
        load_dataset("cifar10", tmp_path, download=False)


def test_cifar_spec_takes_no_options(tmp_path):
    with pytest.raises(DataError, match="bad option"):
        load_dataset("cifar10:format=bin", tmp_path)
