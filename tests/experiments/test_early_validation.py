"""Bad input fails before any work: one line, a non-zero exit, nothing written."""

from __future__ import annotations

import copy
import os

import pytest
import yaml
from pipeline_configs import TINY

from secateurs.cli.main import main
from secateurs.errors import ConfigError
from secateurs.experiments import validate
from secateurs.models import build_model


def _one_line_error(capsys, code: int, *parts: str) -> str:
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for p in parts:
        assert p in err, err
    return err


def _nothing_under(folder) -> bool:
    return not folder.exists() or not any(folder.iterdir())


@pytest.mark.parametrize(
    ("model", "says"),
    [
        ("resnet18:width=0", "option width must be a positive integer, got 0"),
        ("resnet18:width=2.5", "option width must be a positive integer, got 2.5"),
        ("vgg16:scale=nan", "option scale must be a finite number > 0, got nan"),
        ("vgg16:scale=-1", "option scale must be a finite number > 0, got -1"),
        ("vgg11:scale=0.001", "option scale=0.001 makes its 64-channel convs"),
        ("model-c:hidden=-1", "option hidden must be a positive integer, got -1"),
        ("model-a:depth=3", "has no option depth"),
    ],
)
def test_bad_model_options_fail_before_any_work(tmp_path, capsys, model, says):
    cfg = copy.deepcopy(TINY)
    cfg["pool"] = [{"model": model, "seeds": [0, 1, 2]}]
    cfg["output"] = str(tmp_path / "out")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    _one_line_error(capsys, main(["run", str(path)]), "pool[0].model", says)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "spec", ["resnet18:width=0", "vgg16:scale=nan", "vgg16:scale=-1", "model-c:hidden=-1"]
)
def test_the_builders_themselves_refuse_bad_options(spec):
    with pytest.raises(ConfigError, match="option"):
        build_model(spec, (3, 32, 32), 10)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"dropnet": 0}, "'dropnet': got 0; expected a mapping"),
        ({"ensemble": []}, "'ensemble': got []; expected a mapping"),
        (
            {"pool": [{"model": "model-a:widths=8", "seeds": [0, 1, 2], "name": "a/b"}]},
            "'pool[0].name': got 'a/b'",
        ),
        (
            {"pool": [{"model": "model-a:widths=8", "seeds": [0, 1, 2], "name": ".hidden"}]},
            "'pool[0].name'",
        ),
        ({"executor": {"threads_per_task": 0}}, "'executor.threads_per_task': got 0"),
        ({"executor": {"gpus_per_task": -1}}, "'executor.gpus_per_task': got -1"),
        ({"training": {"max_epochs": "3"}},
         "'training.max_epochs': max_epochs must be an integer, got '3'"),
        ({"training": {"lr": -1.0}}, "'training.lr': lr must be positive"),
    ],
)
def test_config_values_fail_in_validate(change, says):
    with pytest.raises(ConfigError) as e:
        validate({**TINY, **change})
    assert says in str(e.value)


def test_member_names_are_checked_before_training(tmp_path, capsys):
    cfg = {**copy.deepcopy(TINY), "output": str(tmp_path / "out")}
    cfg["pool"] = [{"model": "model-a:widths=8", "seeds": [0, 1, 2], "name": "a\\b"}]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    _one_line_error(capsys, main(["run", str(path)]), "pool[0].name")
    assert not (tmp_path / "out").exists()


def test_a_non_utf8_config_is_one_line(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_bytes("name: caf\u00e9\npool: [model-a]\n".encode("latin-1"))
    _one_line_error(capsys, main(["run", str(path)]), "is not UTF-8", "0xe9")


def test_an_unwritable_output_fails_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out in (blocker / "run", blocker, "/proc/secateurs-run"):
        cfg = {**copy.deepcopy(TINY), "output": str(out)}
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(cfg))
        _one_line_error(capsys, main(["run", str(path)]), "output folder")
    assert blocker.read_text() == "not a folder"
    assert not os.path.exists("/proc/secateurs-run")


def test_prune_to_an_unwritable_out_fails_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code = main(["prune", "--model", "model-a:widths=4", "--out", str(blocker / "s"), "--json"])
    _one_line_error(capsys, code, "--out")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--remaining", "5"], "--remaining 5: expected a fraction in [0, 1]"),
        (["--remaining", "nan"], "--remaining nan"),
        (["--round", "-1"], "--round -1"),
    ],
)
def test_export_options_are_checked_before_reading_anything(tmp_path, capsys, args, says):
    out = tmp_path / "m.safetensors"
    code = main(["export", str(tmp_path / "no-study"), *args, "--out", str(out)])
    _one_line_error(capsys, code, says)
    assert not out.exists()


def test_export_to_an_unwritable_out_fails_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    for out in (blocker / "m.safetensors", blocker / "folder"):
        code = main(["export", str(tmp_path / "no-study"), "--round", "0", "--out", str(out)])
        _one_line_error(capsys, code, "--out")
    assert _nothing_under(tmp_path / "no-study")
