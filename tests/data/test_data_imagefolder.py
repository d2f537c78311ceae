"""Image folders: labels from sorted class folder names, pixels read with Pillow, real CIFAR JPEGs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datafiles import write_image_tree
from PIL import Image

from secateurs.data import load_dataset
from secateurs.data.cifar import CIFAR10_CLASSES
from secateurs.data.imagefolder import decode_images, load_image_folder
from secateurs.errors import DataError


def random_tree(rng, classes=("cat", "dog", "ant"), per_class=12, shape=(6, 7, 3)):
    return {
        c: [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(per_class)]
        for c in classes
    }


def as_rows(x: torch.Tensor, y: torch.Tensor) -> list[tuple[bytes, int]]:
    u8 = (x * 255).round().to(torch.uint8).numpy()
    return sorted(zip([r.tobytes() for r in u8], y.tolist(), strict=True))


def test_single_folder_labels_and_pixels(tmp_path):
    rng = np.random.default_rng(0)
    tree = random_tree(rng)
    write_image_tree(tmp_path / "pets", tree)
    d = load_dataset(f"imagefolder:{tmp_path / 'pets'}", val_fraction=0.25, test_fraction=0.25)
    assert d.classes == ["ant", "cat", "dog"]  # sorted names give the label indices
    assert d.input_shape == (3, 6, 7) and d.num_classes == 3
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (
        20,
        7,
        9,
    )  # sklearn rounds the held-out part up: ceil(27 / 4) = 7
    want = sorted(
        (a.transpose(2, 0, 1).tobytes(), d.classes.index(c))
        for c, arrs in tree.items()
        for a in arrs
    )
    got = as_rows(
        torch.cat([d.x_train, d.x_val, d.x_test]), torch.cat([d.y_train, d.y_val, d.y_test])
    )
    assert got == want
    assert torch.bincount(d.y_test).tolist() == [3, 3, 3]


def test_train_and_test_subfolders(tmp_path):
    rng = np.random.default_rng(1)
    train = random_tree(rng, per_class=10, shape=(5, 5))  # grayscale
    test = random_tree(rng, classes=("dog", "ant"), per_class=4, shape=(5, 5))
    write_image_tree(tmp_path / "train", train)
    write_image_tree(tmp_path / "test", test)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    d = load_dataset(f"imagefolder:{tmp_path}")
    assert d.input_shape == (1, 5, 5) and d.classes == ["ant", "cat", "dog"]
    assert len(d.y_test) == 8 and sorted(set(d.y_test.tolist())) == [
        0,
        2,
    ]  # test labels follow train
    want = sorted(
        (a.tobytes(), ["ant", "cat", "dog"].index(c)) for c, arrs in test.items() for a in arrs
    )
    assert as_rows(d.x_test, d.y_test) == want


def test_threaded_decode_equals_serial(tmp_path):
    rng = np.random.default_rng(2)
    write_image_tree(tmp_path, random_tree(rng, per_class=400, shape=(4, 4, 3)))
    paths = sorted(tmp_path.rglob("*.png"))
    serial, _ = decode_images(paths, workers=1)
    threaded, _ = decode_images(paths, workers=3)
    assert serial.shape == (1200, 3, 4, 4)
    assert np.array_equal(serial, threaded)
    np.testing.assert_array_equal(serial[5], np.asarray(Image.open(paths[5])).transpose(2, 0, 1))


def test_images_of_different_sizes(tmp_path):
    rng = np.random.default_rng(0)
    write_image_tree(
        tmp_path,
        {
            "a": [rng.integers(0, 255, (4, 4), np.uint8)],
            "b": [rng.integers(0, 255, (5, 4), np.uint8)],
        },
    )
    with pytest.raises(DataError, match=r"0000.png is 4x5 but the first image is 4x4"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_undecodable_image(tmp_path):
    rng = np.random.default_rng(0)
    write_image_tree(tmp_path, random_tree(rng, per_class=2, shape=(4, 4)))
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="cannot decode image .*broken.png"):
        load_image_folder(tmp_path)


def test_folder_without_class_subfolders(tmp_path):
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "x.png")
    with pytest.raises(DataError, match="no class subfolders"):
        load_dataset(f"imagefolder:{tmp_path}")
    with pytest.raises(DataError, match="not found"):
        load_dataset(f"imagefolder:{tmp_path / 'nope'}")


def test_test_class_missing_from_train(tmp_path):
    rng = np.random.default_rng(0)
    write_image_tree(tmp_path / "train", random_tree(rng, classes=("a", "b"), per_class=2))
    write_image_tree(tmp_path / "test", random_tree(rng, classes=("a", "c"), per_class=2))
    with pytest.raises(DataError, match=r"class folders \['c'\]"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_real_cifar_jpeg_test_set(cifar_jpeg_test_tree):
    src = load_image_folder(cifar_jpeg_test_tree)
    d = src.to_splits(val_fraction=0.1, test_fraction=0.2, seed=0)
    assert d.classes == CIFAR10_CLASSES  # alphabetical folders give the standard indices
    assert d.input_shape == (3, 32, 32)
    y = torch.cat([d.y_train, d.y_val, d.y_test])
    assert torch.bincount(y).tolist() == [1000] * 10
    assert torch.bincount(d.y_test).tolist() == [200] * 10
    # pixels equal an independent Pillow decode of the same file
    files = sorted((cifar_jpeg_test_tree / "cat").glob("*.jpg"))
    first_cat = int((src.y_train < 3).sum())  # airplane, automobile, bird come first
    ref = np.asarray(Image.open(files[0]).convert("RGB")).transpose(2, 0, 1)
    assert src.y_train[first_cat].item() == 3
    np.testing.assert_array_equal(src.x_train[first_cat].numpy(), ref)
    # channel means of CIFAR-10 (JPEG copy) are near the published 0.49, 0.48, 0.45
    means = d.x_test.mean(dim=(0, 2, 3))
    assert torch.allclose(means, torch.tensor([0.49, 0.48, 0.45]), atol=0.02)


def test_wide_gray_images_are_scaled_not_clipped(tmp_path):
    sixteen = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4200)  # 0 .. 63,000
    floats = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    for cls, arr in (("a", sixteen), ("b", floats)):
        (tmp_path / "w" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(arr).save(tmp_path / "w" / cls / f"{i}.{'png' if cls == 'a' else 'tif'}")
    source = load_image_folder(tmp_path / "w")
    x = source.x_train.float()
    assert source.x_train.shape == (6, 1, 4, 4)
    assert torch.equal(x[0, 0].flatten(), torch.from_numpy(np.rint(sixteen / 257.0).ravel()).float())
    assert torch.equal(x[3, 0].flatten(), torch.from_numpy(np.rint(floats * 255).ravel()).float())


def test_hidden_and_empty_folders_are_not_classes_or_samples(tmp_path):
    rng = np.random.default_rng(3)
    write_image_tree(tmp_path / "p", random_tree(rng, classes=("cat", "dog"), per_class=5))
    (tmp_path / "p" / "__MACOSX" / "cat").mkdir(parents=True)
    (tmp_path / "p" / "__MACOSX" / "cat" / "._0000.png").write_bytes(b"\0\5\26\7")
    (tmp_path / "p" / "empty").mkdir()
    hidden = tmp_path / "p" / "cat" / ".ipynb_checkpoints"
    hidden.mkdir()
    Image.fromarray(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)).save(hidden / "x.png")
    source = load_image_folder(tmp_path / "p")
    assert source.classes == ["cat", "dog"]
    assert torch.bincount(source.y_train).tolist() == [5, 5]


def test_a_class_named_train_is_a_class_and_train_alone_holds_the_classes(tmp_path):
    rng = np.random.default_rng(4)
    write_image_tree(tmp_path / "v", random_tree(rng, classes=("bus", "car", "train"), per_class=4))
    assert load_image_folder(tmp_path / "v").classes == ["bus", "car", "train"]
    write_image_tree(tmp_path / "only" / "train", random_tree(rng, classes=("a", "b"), per_class=4))
    assert load_image_folder(tmp_path / "only").classes == ["a", "b"]
    write_image_tree(tmp_path / "tv" / "train", random_tree(rng, classes=("a", "b"), per_class=4))
    write_image_tree(tmp_path / "tv" / "val", random_tree(rng, classes=("a", "b"), per_class=2))
    with pytest.raises(DataError, match="train/ and val/ but no test/"):
        load_image_folder(tmp_path / "tv")


def test_one_colour_mode_for_the_whole_dataset(tmp_path):
    rng = np.random.default_rng(5)
    gray = {c: [rng.integers(0, 256, (5, 5), dtype=np.uint8) for _ in range(3)] for c in "ab"}
    colour = {c: [rng.integers(0, 256, (5, 5, 3), dtype=np.uint8) for _ in range(3)] for c in "ab"}
    write_image_tree(tmp_path / "m" / "train", gray)
    write_image_tree(tmp_path / "m" / "test", colour)
    write_image_tree(tmp_path / "m" / "val", gray)
    source = load_image_folder(tmp_path / "m")
    assert source.x_train.shape[1:] == source.x_test.shape[1:] == (3, 5, 5)
    first = source.x_train[0]  # gray replicated into the three channels, values kept
    assert torch.equal(first[0], first[1]) and torch.equal(first[0], first[2])
    assert torch.equal(first[0], torch.from_numpy(gray["a"][0]))
    assert "val" in source.note and "not read" in source.note
    # a gray image after a colour one in a single folder is replicated, not the colour one dropped
    write_image_tree(tmp_path / "mixed", {"a": [colour["a"][0], gray["a"][0]], "b": colour["b"]})
    mixed = load_image_folder(tmp_path / "mixed")
    assert mixed.x_train.shape[1] == 3
    assert torch.equal(mixed.x_train[0], torch.from_numpy(colour["a"][0].transpose(2, 0, 1)))


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_photos_with_an_exif_orientation_are_loaded_upright(tmp_path, suffix):
    # A phone stores the sensor's pixels and a tag saying how to turn them. Tag 6 means "turn 90
    # degrees clockwise to view": the stored pixels are the upright image turned anticlockwise.
    rng = np.random.default_rng(0)
    upright = rng.integers(0, 256, (3, 5), dtype=np.uint8)  # 3 rows, 5 columns
    stored = np.rot90(upright, k=1)  # anticlockwise: 5 rows, 3 columns
    exif = Image.Exif()
    exif[0x0112] = 6
    for cls in ("a", "b"):
        (tmp_path / cls).mkdir()
    Image.fromarray(np.ascontiguousarray(stored)).save(
        tmp_path / "a" / f"turned{suffix}", exif=exif, **({"lossless": True} if suffix == ".webp" else {})
    )
    Image.fromarray(upright).save(tmp_path / "b" / "plain.png")  # no tag: kept as stored
    x, colour = decode_images([tmp_path / "a" / f"turned{suffix}", tmp_path / "b" / "plain.png"])
    assert colour == (suffix == ".webp") and x.shape[2:] == (3, 5)  # WebP stores RGB
    assert all(np.array_equal(x[i, c], upright) for i in range(2) for c in range(x.shape[1]))
