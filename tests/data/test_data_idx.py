"""IDX files (MNIST format): reading, error reports, and the real MNIST test set."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from datafiles import idx_bytes, random_images, write_idx, write_mnist_like

from secateurs.data import load_dataset
from secateurs.data.idx import read_idx, scan_idx_dir
from secateurs.errors import DataError

MNIST_TEST_COUNTS = [
    980,
    1135,
    1032,
    1010,
    982,
    892,
    958,
    1028,
    974,
    1009,
]  # shared/datasets README


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32])
def test_read_idx_round_trips_every_type(tmp_path, gz, dtype):
    rng = np.random.default_rng(1)
    arr = (rng.normal(size=(5, 3, 4)) * 100).astype(dtype)
    path = write_idx(tmp_path / "a-idx3-ubyte", arr, gz=gz)
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(got, arr)


def test_read_idx_header_by_hand(tmp_path):
    # 2 labels, 1-D: magic 00 00 08 01, size 2, values 7 and 3
    (tmp_path / "l").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 3]))
    np.testing.assert_array_equal(read_idx(tmp_path / "l"), [7, 3])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b[:-5], "truncated"),
        (lambda b: b + b"\x00", "longer than its header says"),
        (lambda b: b"\x08\x03" + b[2:], "bad IDX magic"),
        (lambda b: b[:2] + b"\x42" + b[3:], "bad IDX magic"),
        (lambda b: b[:2], "too short"),
        (lambda b: b[:9], "truncated IDX header"),
    ],
)
def test_corrupt_idx_is_reported(tmp_path, mutate, message):
    good = idx_bytes(np.zeros((4, 2, 2), np.uint8))
    (tmp_path / "bad").write_bytes(mutate(good))
    with pytest.raises(DataError, match=message) as e:
        read_idx(tmp_path / "bad")
    assert str(tmp_path / "bad") in str(e.value)


def test_truncated_gzip_is_reported(tmp_path):
    data = gzip.compress(idx_bytes(np.arange(2000, dtype=np.uint8).reshape(20, 10, 10)))
    (tmp_path / "x.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        read_idx(tmp_path / "x.gz")


def test_scan_finds_pairs_and_prefers_uncompressed(tmp_path):
    x, y = random_images(np.random.default_rng(0), 20)
    write_mnist_like(tmp_path, x, y, x, y, gz=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", x)  # raw beside gz
    (tmp_path / "train-labels.idx1-ubyte").write_bytes(idx_bytes(y))  # the dotted naming
    pairs = scan_idx_dir(tmp_path)
    assert set(pairs) == {"train", "test"}
    assert pairs["test"][0].name == "t10k-images-idx3-ubyte"
    assert pairs["train"][1].name == "train-labels.idx1-ubyte"


def test_idx_dir_with_train_and_test(tmp_path):
    rng = np.random.default_rng(0)
    x_tr, y_tr = random_images(rng, 200, (6, 5))
    x_te, y_te = random_images(rng, 50, (6, 5))
    write_mnist_like(tmp_path, x_tr, y_tr, x_te, y_te, gz=False)
    d = load_dataset(f"idx:{tmp_path}", val_fraction=0.1)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (180, 20, 50)
    assert d.input_shape == (1, 6, 5) and d.num_classes == 10 and d.note == ""
    # the test split is the t10k files, in order, scaled to [0, 1]
    torch.testing.assert_close(d.x_test, torch.from_numpy(x_te).float().unsqueeze(1) / 255)
    assert d.y_test.tolist() == y_te.tolist()

    # train + val are exactly the train files (as multisets of (image, label))
    def rows(x, y):
        return sorted(
            zip((x * 255).round().to(torch.uint8).flatten(1).tolist(), y.tolist(), strict=True)
        )

    expected = sorted(zip(x_tr.reshape(200, -1).tolist(), y_tr.tolist(), strict=True))
    got = rows(torch.cat([d.x_train, d.x_val]), torch.cat([d.y_train, d.y_val]))
    assert got == expected
    # stratified validation split: 2 samples of each of the 10 classes
    assert torch.bincount(d.y_val, minlength=10).tolist() == [2] * 10


def test_idx_dir_with_one_pair_is_split_by_fractions(tmp_path):
    x, y = random_images(np.random.default_rng(3), 500, (4, 4))
    write_mnist_like(tmp_path, None, None, x, y)
    d = load_dataset(f"idx:{tmp_path}", val_fraction=0.1, test_fraction=0.2, seed=5)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (360, 40, 100)
    assert "only the test files" in d.note
    assert torch.bincount(d.y_test, minlength=10).tolist() == [10] * 10


def test_mismatched_counts(tmp_path):
    x, y = random_images(np.random.default_rng(0), 30)
    write_mnist_like(tmp_path, None, None, x, y[:29])
    with pytest.raises(DataError, match="30 images but 29 labels"):
        load_dataset(f"idx:{tmp_path}")


def test_labels_with_wrong_rank(tmp_path):
    x, y = random_images(np.random.default_rng(0), 30)
    write_mnist_like(tmp_path, None, None, x, np.stack([y, y], axis=1))
    with pytest.raises(DataError, match="expected \\(N,\\)"):
        load_dataset(f"idx:{tmp_path}")


def test_idx_dir_without_files(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(DataError, match="no IDX image/label pair.*t10k-images-idx3-ubyte"):
        load_dataset(f"idx:{tmp_path}")


def test_train_and_test_of_different_sizes(tmp_path):
    rng = np.random.default_rng(0)
    x_tr, y_tr = random_images(rng, 40, (4, 4))
    x_te, y_te = random_images(rng, 20, (5, 5))
    write_mnist_like(tmp_path, x_tr, y_tr, x_te, y_te)
    with pytest.raises(DataError, match="train images are"):
        load_dataset(f"idx:{tmp_path}")


# ---- the real MNIST test set ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_test_dir(shared_datasets):
    folder = shared_datasets / "mnist-test"
    if not (folder / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST test files not found in {folder}")
    return folder


def test_real_mnist_test_files_load_as_single_source(mnist_test_dir):
    d = load_dataset("mnist", mnist_test_dir, download=False)
    assert d.name == "mnist-t10k"
    assert "only the test files" in d.note and str(mnist_test_dir) in d.note
    assert d.source == str(mnist_test_dir)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (7200, 800, 2000)
    everything = torch.cat([d.y_train, d.y_val, d.y_test])
    assert torch.bincount(everything).tolist() == MNIST_TEST_COUNTS
    # stratified: each class's share of the test split is within one sample of 20%
    test_counts = torch.bincount(d.y_test, minlength=10).tolist()
    assert all(abs(t - 0.2 * c) <= 1 for t, c in zip(test_counts, MNIST_TEST_COUNTS, strict=True))
    assert d.x_train.dtype == torch.float32 and d.input_shape == (1, 28, 28)
    assert d.x_train.min() >= 0.0 and d.x_train.max() == 1.0


def test_real_mnist_pixels_match_an_independent_decode(mnist_test_dir):
    raw = gzip.decompress((mnist_test_dir / "t10k-images-idx3-ubyte.gz").read_bytes())
    labels = gzip.decompress((mnist_test_dir / "t10k-labels-idx1-ubyte.gz").read_bytes())
    assert int.from_bytes(raw[4:8], "big") == 10000
    x = read_idx(mnist_test_dir / "t10k-images-idx3-ubyte.gz")
    first = np.frombuffer(raw[16 : 16 + 784], np.uint8).reshape(28, 28)
    last = np.frombuffer(raw[-784:], np.uint8).reshape(28, 28)
    np.testing.assert_array_equal(x[0], first)
    np.testing.assert_array_equal(x[-1], last)
    assert read_idx(mnist_test_dir / "t10k-labels-idx1-ubyte.gz")[:5].tolist() == list(labels[8:13])
    assert labels[8] == 7  # the first MNIST test digit is a 7


def test_real_mnist_found_under_secateurs_data(mnist_test_dir, monkeypatch):
    monkeypatch.setenv("SECATEURS_DATA", str(mnist_test_dir.parent))  # holds mnist-test/
    d = load_dataset("mnist", download=False, seed=1)
    assert d.name == "mnist-t10k" and d.source == str(mnist_test_dir)


def test_header_dimensions_whose_product_overflows_64_bits_are_refused():
    import struct

    from secateurs.data.idx import parse_idx

    # 65536**4 = 2**64: wraps to 0 in int64, which made a 20-byte file look complete
    data = bytes([0, 0, 8, 4]) + struct.pack(">IIII", 65536, 65536, 65536, 65536)
    with pytest.raises(DataError, match=r"truncated: header says shape \(65536, 65536, 65536"):
        parse_idx(data, "f")
    data = bytes([0, 0, 0x0E, 2]) + struct.pack(">II", 2**32 - 1, 2**32 - 1)
    with pytest.raises(DataError, match="truncated"):
        parse_idx(data, "f")
