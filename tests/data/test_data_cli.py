"""``secateurs datasets`` and ``secateurs models``."""

from __future__ import annotations

import json

import numpy as np
from datafiles import random_images, write_mnist_like

from secateurs.cli.main import main
from secateurs.models import list_models


def test_datasets_json_lists_every_spec_and_where_found(tmp_path, capsys):
    rng = np.random.default_rng(0)
    write_mnist_like(tmp_path / "mnist", None, None, *random_images(rng, 20))
    rc = main(["datasets", "--data-dir", str(tmp_path), "--json"])
    assert rc == 0
    infos = {i["name"]: i for i in json.loads(capsys.readouterr().out)["datasets"]}
    assert set(infos) >= {
        "digits",
        "synthetic",
        "mnist",
        "fashion-mnist",
        "cifar10",
        "idx:DIR",
        "imagefolder:DIR",
        "npz:FILE",
    }
    assert infos["mnist"]["status"] == "partial"
    assert infos["mnist"]["path"] == str(tmp_path / "mnist")
    assert infos["cifar10"]["status"] == "missing"
    assert set(infos["digits"]) == {"name", "description", "status", "path", "how_to_get", "note"}


def test_datasets_text(tmp_path, capsys):
    rng = np.random.default_rng(0)
    write_mnist_like(tmp_path / "mnist", None, None, *random_images(rng, 20))
    assert main(["datasets", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    mnist = next(i for i, line in enumerate(lines) if line.startswith("mnist "))
    assert "partial" in lines[mnist]
    assert f"found in {tmp_path / 'mnist'}" in lines[mnist + 1]
    assert "mnist-t10k" in out and "cifar-10-python.tar.gz" in out


def test_models_json_matches_the_registry(capsys):
    assert main(["models", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["models"]
    assert [m["name"] for m in got] == [m.name for m in list_models()]
    assert all(m["options"] == dict(r.options) for m, r in zip(got, list_models(), strict=True))


def test_models_text(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for m in list_models():
        assert any(
            line.startswith(m.name + " ") and m.description in line for line in out.splitlines()
        )
        for key in m.options:
            assert f"{key}=" in out


def test_user_errors_are_one_line_with_nonzero_code(tmp_path, capsys):
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    assert main(["datasets", "--data-dir", str(not_a_folder)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --data-dir") and err.count("\n") == 1
    assert main(["datasets", "--bogus"]) != 0
    assert "--bogus" in capsys.readouterr().err
