"""NumPy .npz files: layouts, value ranges, and refusal of pickled (object) arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from secateurs.data import load_dataset
from secateurs.errors import DataError


def data(rng, n=40, classes=4):
    x = rng.integers(0, 256, size=(n, 3, 5, 6), dtype=np.uint8)  # NCHW reference
    y = (np.arange(n) % classes).astype(np.int64)
    return x, y


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("scale", ["uint8", "float"])
def test_npz_train_test_layouts(tmp_path, layout, scale):
    rng = np.random.default_rng(0)
    (x_tr, y_tr), (x_te, y_te) = data(rng), data(rng, 12)

    def store(x):
        x = x.transpose(0, 2, 3, 1) if layout == "nhwc" else x
        return x if scale == "uint8" else (x / 255.0).astype(np.float32)

    np.savez(tmp_path / "d.npz", x_train=store(x_tr), y_train=y_tr, x_test=store(x_te), y_test=y_te)
    d = load_dataset(f"npz:{tmp_path / 'd.npz'}", val_fraction=0.25)
    assert d.input_shape == (3, 5, 6) and d.num_classes == 4
    assert d.x_test.dtype == torch.float32
    torch.testing.assert_close(d.x_test, torch.from_numpy(x_te).float() / 255)
    assert d.y_test.tolist() == y_te.tolist() and len(d.y_val) == 10


def test_npz_single_source_hw(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(50, 7, 7), dtype=np.uint8)
    y = (np.arange(50) % 5).astype(np.int32)
    np.savez_compressed(tmp_path / "d.npz", x=x, y=y)
    d = load_dataset(f"npz:{tmp_path / 'd.npz'}", test_fraction=0.2, val_fraction=0.1)
    assert d.input_shape == (1, 7, 7)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (36, 4, 10)
    assert torch.bincount(d.y_test).tolist() == [2] * 5


def test_object_arrays_are_refused(tmp_path):
    x = np.empty(3, dtype=object)
    x[:] = [np.zeros((2, 2)), "evil", None]
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(3))
    with pytest.raises(DataError, match="no object dtype"):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")


@pytest.mark.parametrize(
    "arrays, message",
    [
        (
            {"x": np.full((10, 4, 4), 2.0, np.float32), "y": np.arange(10) % 2},
            r"must be in \[0, 1\]",
        ),
        ({"x": np.zeros((10, 4, 4), np.int16) + 300, "y": np.arange(10) % 2}, "0..255"),
        ({"x": np.zeros((10, 4, 4), np.uint8), "y": np.arange(9) % 2}, "10 images but 9 labels"),
        ({"x": np.zeros((10, 4), np.uint8), "y": np.arange(10) % 2, "layout": "images"},
         "expected \\(N, H, W\\)"),
        ({"x": np.zeros((10, 4)), "y": np.arange(10) % 2, "layout": "tabular"},
         "layout 'tabular'; expected one of images, features"),
        ({"x": np.full((10, 4), np.nan), "y": np.arange(10) % 2}, "NaN or infinite"),
        ({"x": np.full((10, 4, 4), 2.0), "y": np.arange(10) % 2}, "layout='features'"),
        ({"x_train": np.zeros((10, 4), np.int64), "y_train": np.arange(10) % 2,
          "x_test": np.zeros((10, 4)), "y_test": np.arange(10) % 2}, "both as integers"),
        ({"x": np.zeros((10, 4, 4), np.uint8), "y": np.arange(10) - 1}, "class indices >= 0"),
        ({"x": np.zeros((10, 4, 4), np.uint8), "y": np.full(10, 0.5)}, r"whole numbers \(class indices\), found 0.5"),
        ({"images": np.zeros((10, 4, 4), np.uint8)}, "expected x_train, y_train"),
        (
            {
                "x_train": np.zeros((10, 4, 4), np.uint8),
                "y_train": np.arange(10) % 2,
                "x_test": np.zeros((10, 5, 5), np.uint8),
                "y_test": np.arange(10) % 2,
            },
            "x_test samples",
        ),
    ],
)
def test_bad_npz_contents(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")


def test_truncated_npz(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 4, 4), np.uint8), y=np.arange(10) % 2)
    data = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(f"npz:{tmp_path / 'd.npz'}")


def test_relative_path_is_found_under_data_dir(tmp_path, monkeypatch):
    (tmp_path / "sets").mkdir()
    np.savez(tmp_path / "sets" / "d.npz", x=np.zeros((20, 2, 2), np.uint8), y=np.arange(20) % 2)
    monkeypatch.chdir(tmp_path / "sets")
    assert len(load_dataset("npz:d.npz").y_test) == 4  # relative to the working folder
    monkeypatch.chdir(tmp_path)
    assert load_dataset("npz:d.npz", tmp_path / "sets").source == str(tmp_path / "sets" / "d.npz")
    with pytest.raises(DataError, match="not found"):
        load_dataset("npz:missing.npz", tmp_path / "sets")


def test_files_that_are_not_npz_archives_say_what_they_are(tmp_path):
    from secateurs.data.npz import load_npz

    np.save(tmp_path / "a.npy", np.zeros((4, 2)))
    with pytest.raises(DataError, match=r"a single .npy array, not an .npz archive"):
        load_npz(tmp_path / "a.npy")
    (tmp_path / "t.npz").write_text("x,y\n1,2\n")
    with pytest.raises(DataError, match=r"not an .npz archive \(no zip header\)"):
        load_npz(tmp_path / "t.npz")
    np.savez(tmp_path / "s.npz", x=np.zeros((4, 3, 3)), y=np.int64(1))
    with pytest.raises(DataError, match="the labels are a single number"):
        load_npz(tmp_path / "s.npz")


def test_features_are_used_as_they_are(tmp_path):
    """Rows of a table (any real values), sequences and token ids: no image rules applied."""
    rng = np.random.default_rng(2)
    rows = rng.normal(0, 5, size=(30, 7))  # standardised features: negative, beyond 1
    tokens = rng.integers(0, 1000, size=(30, 12))
    sequences = rng.normal(size=(30, 9, 4)).astype(np.float32)
    y = np.arange(30) % 3
    np.savez(tmp_path / "rows.npz", x=rows, y=y)  # (N, F): features without saying so
    np.savez(tmp_path / "tokens.npz", x=tokens, y=y)
    np.savez(tmp_path / "seq.npz", x=sequences, y=y, layout="features")
    for name, x, dtype in (("rows", rows, torch.float32), ("tokens", tokens, torch.int64),
                           ("seq", sequences, torch.float32)):
        d = load_dataset(f"npz:{tmp_path / name}.npz", val_fraction=0.2, test_fraction=0.2)
        assert d.input_shape == x.shape[1:] and d.x_train.dtype == dtype, name
        got = torch.cat([d.x_train, d.x_val, d.x_test]).double()
        want = torch.from_numpy(x).to(dtype).double()  # the same samples, unscaled
        assert torch.equal(got.sort(0).values, want.sort(0).values), name
