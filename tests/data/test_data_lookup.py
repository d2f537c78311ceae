"""Where named datasets are looked up, the dataset list, and spec parsing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datafiles import random_images, write_mnist_like

from secateurs.data import list_datasets, load_dataset
from secateurs.errors import DataError

FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


def mnist_files(folder: Path, n_test: int = 40, n_train: int | None = 60, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    x_te, y_te = random_images(rng, n_test)
    x_tr, y_tr = random_images(rng, n_train) if n_train else (None, None)
    return write_mnist_like(folder, x_tr, y_tr, x_te, y_te)


def test_lookup_order_data_dir_then_env_then_cache(tmp_path, monkeypatch, isolated_env):
    mnist_files(tmp_path / "arg" / "mnist", n_test=20)
    mnist_files(tmp_path / "env" / "MNIST" / "raw", n_test=30)  # torchvision's layout
    mnist_files(isolated_env / "mnist", n_test=40)
    monkeypatch.setenv("SECATEURS_DATA", str(tmp_path / "env"))

    def n_test(data_dir=None):
        return len(load_dataset("mnist", data_dir, download=False).y_test)

    assert n_test(tmp_path / "arg") == 20
    assert n_test() == 30
    monkeypatch.delenv("SECATEURS_DATA")
    assert n_test() == 40
    assert n_test(tmp_path / "nothing-here") == 40  # falls through to the cache


def test_data_dir_itself_may_hold_the_files_but_env_root_may_not(tmp_path, monkeypatch):
    folder = mnist_files(tmp_path / "files", n_test=20)
    assert load_dataset("mnist", folder, download=False).source == str(folder)
    monkeypatch.setenv("SECATEURS_DATA", str(folder))
    with pytest.raises(DataError, match="the subfolders mnist/, MNIST/raw/.* of .*files"):
        load_dataset("mnist", download=False)


def test_single_pair_gets_a_visible_name(tmp_path):
    folder = mnist_files(tmp_path, n_test=100, n_train=None)
    d = load_dataset("mnist", folder, download=False)
    assert d.name == "mnist-t10k" and "only the test files" in d.note
    assert d.summary()["note"] == d.note


def test_list_datasets_reports_found_partial_missing(tmp_path):
    mnist_files(tmp_path / "mnist", n_train=None)
    infos = {i.name: i for i in list_datasets(tmp_path)}
    assert {
        "digits",
        "synthetic",
        "mnist",
        "fashion-mnist",
        "cifar10",
        "idx:DIR",
        "imagefolder:DIR",
        "npz:FILE",
    } <= set(infos)
    assert infos["digits"].status == "embedded"
    assert infos["mnist"].status == "partial" and infos["mnist"].path == str(tmp_path / "mnist")
    assert "mnist-t10k" in infos["mnist"].note
    assert infos["cifar10"].status == "missing" and infos["cifar10"].path == ""
    assert "cifar-10-python.tar.gz" in infos["cifar10"].how_to_get
    assert str(tmp_path / "cifar10") in infos["cifar10"].how_to_get  # the download target
    mnist_files(tmp_path / "mnist")  # now with the training files too
    full = {i.name: i for i in list_datasets(tmp_path)}["mnist"]
    assert full.status == "found" and full.how_to_get == ""


def test_unknown_and_malformed_specs(tmp_path):
    with pytest.raises(DataError, match="unknown dataset spec 'imagenet'.*secateurs datasets"):
        load_dataset("imagenet")
    with pytest.raises(DataError, match="needs a path"):
        load_dataset("npz:")
    with pytest.raises(DataError, match="bad option"):
        load_dataset("mnist:train=1", tmp_path)
    with pytest.raises(DataError, match="bad option"):
        load_dataset("digits:n=3")


def test_spec_aliases_and_case(tmp_path):
    mnist_files(tmp_path / "fashion-mnist", n_test=30)
    assert len(load_dataset("Fashion_MNIST", tmp_path, download=False).y_test) == 30


@pytest.mark.skipif(
    not (FASHION_SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST not installed in {FASHION_SYSTEM_DIR} "
    "(apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist_from_the_debian_package():
    d = load_dataset("fashion-mnist", download=False)
    assert d.name == "fashion-mnist" and d.source == str(FASHION_SYSTEM_DIR)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (54000, 6000, 10000)
    assert torch.bincount(torch.cat([d.y_train, d.y_val])).tolist() == [6000] * 10
    assert torch.bincount(d.y_test).tolist() == [1000] * 10
    assert torch.bincount(d.y_val).tolist() == [600] * 10
    assert d.classes[0] == "T-shirt/top" and d.classes[9] == "Ankle boot"
