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


@pytest.mark.parametrize("command", [
    ["train", "--model", "model-a:widths=4", "--epochs", "1"],
    ["sweep", "--model", "model-a:widths=4", "--fraction", "0.5", "--epochs", "1"],
    ["interpret", "no-study"],
    ["export-team", "no-run", "--row", "minimum/p0/gd"],
])
def test_every_out_is_checked_before_any_work(tmp_path, capsys, command):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker / ("t.safetensors" if command[0] == "export-team" else "sub")
    _one_line_error(capsys, main([*command, "--out", str(out)]), "--out", "is not a folder")
    assert blocker.read_text() == "x"


@pytest.mark.parametrize("text, says", [
    ("pool: [model-a]\npool: [model-b]\n", "key 'pool' appears twice in one mapping (lines 1 and 2)"),
    ("training: {lr: 1e-1, lr: 0.2}\npool: [model-a]\n", "key 'lr' appears twice"),
    ("training: {device: cudaX}\npool: [{model: model-a, seeds: [0, 1, 2]}]\n",
     "device must be auto, cpu, cuda or cuda:N, got 'cudaX'"),
    ("training: {max_epoch: 3}\npool: [model-a]\n", "unknown config key 'training.max_epoch'"),
])
def test_config_files_users_write_fail_in_one_line(tmp_path, text, says):
    from secateurs.experiments import load_config

    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "c.yaml")
    assert says in str(e.value) and "\n" not in str(e.value)


def test_yaml_numbers_as_people_write_them_and_empty_sections(tmp_path):
    from secateurs.experiments import load_config

    (tmp_path / "c.yaml").write_text(
        "training: {lr: 1e-1, weight_decay: 5E-4, min_lr: 1.5e-3}\ndropnet: null\n"
        "pool: [{model: model-a, seeds: [0, 1, 2]}]\nname: 1e5x\n"
    )
    cfg = load_config(tmp_path / "c.yaml")
    assert (cfg["training"]["lr"], cfg["training"]["weight_decay"]) == (0.1, 0.0005)
    assert cfg["training"]["min_lr"] == 0.0015 and cfg["name"] == "1e5x"
    (tmp_path / "n.yaml").write_text("training: null\npool: [{model: model-a, seeds: [0, 1, 2]}]\n")
    assert load_config(tmp_path / "n.yaml")["training"] == validate(TINY)["training"] | {
        "max_epochs": 100, "patience": 5}


def test_prune_and_run_never_share_a_folder(tmp_path, capsys):
    study = tmp_path / "study"
    assert main(["prune", "--model", "model-a:widths=4", "--epochs", "1", "--until", "0.8",
                 "--out", str(study)]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in study.iterdir() if p.is_file()}
    cfg = {**copy.deepcopy(TINY), "output": str(study)}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    _one_line_error(capsys, main(["run", str(tmp_path / "c.yaml")]), "holds a `secateurs prune` "
                    "study")
    assert {p.name: p.read_bytes() for p in study.iterdir() if p.is_file()} == before
    run = tmp_path / "run"
    (run / "tasks").mkdir(parents=True)
    (run / "config.yaml").write_text("name: x\n")
    code = main(["prune", "--model", "model-a:widths=4", "--epochs", "1", "--out", str(run)])
    _one_line_error(capsys, code, "holds a `secateurs run` experiment")


def test_a_changed_study_setting_is_named(tmp_path, capsys):
    args = ["prune", "--model", "model-a:widths=4", "--until", "0.8", "--out", str(tmp_path / "s")]
    assert main([*args, "--epochs", "1"]) == 0
    capsys.readouterr()
    _one_line_error(capsys, main([*args, "--epochs", "2"]),  # before the header, naming it
                    "(config.train.max_epochs: 1 there, 2 now)")


def test_a_data_dir_a_built_in_dataset_does_not_use_is_said(tmp_path):
    from secateurs.data import load_dataset
    from secateurs.errors import DataWarning

    with pytest.warns(DataWarning, match="digits is built in: the data folder .* is not used "
                                         r"\(nor does it exist\)"):
        load_dataset("digits", tmp_path / "nowhere")


def test_a_seed_beyond_what_splits_take_is_refused(capsys):
    assert main(["prune", "--model", "model-a", "--seed", str(2**32)]) == 2
    assert "--seed" in capsys.readouterr().err
    from secateurs.data import load_dataset

    with pytest.raises(ConfigError, match=r"seed 4294967296: expected an integer in \[0, 2\^32\)"):
        load_dataset("digits", seed=2**32)


def test_levels_far_from_their_snapshots_are_said():
    from secateurs.experiments.pipeline import far_levels

    snaps = {
        "a-s0-p0": {"metric": None, "level": 0.0, "pruned": 0.0},
        "a-s0-minimum-p50": {"metric": "minimum", "level": 0.5, "pruned": 0.94},
        "a-s1-minimum-p50": {"metric": "minimum", "level": 0.5, "pruned": 0.90},
        "a-s0-random-p50": {"metric": "random", "level": 0.5, "pruned": 0.55},
    }
    (note,) = far_levels({"dropnet": {"fraction": 1.0}}, {"snapshots": snaps})
    assert note.startswith("level 0.5 (minimum): its snapshots are 0.92 pruned on average")
    assert "dropnet.fraction 1 " in note
