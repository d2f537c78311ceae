"""The recipe options of ``secateurs train`` and ``secateurs prune`` reach TrainConfig; bad values
give one line and a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secateurs.cli.main import main

pytestmark = pytest.mark.usefixtures("one_thread")


def test_train_takes_schedule_and_augmentation(tmp_path, capsys):
    out = tmp_path / "t"
    args = ["train", "--model", "model-a:widths=8-8", "--epochs", "2", "--batch-size", "256",
            "--schedule", "cosine", "--warmup-epochs", "1", "--augment", "--json", "--out",
            str(out)]
    assert main(args) == 0
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert (config["schedule"], config["warmup_epochs"], config["augment"]) == ("cosine", 1, True)
    assert config["milestones"] == [] and config["schedule_unit"] == "epoch"


def test_prune_takes_a_step_schedule(tmp_path):
    out = tmp_path / "p"
    args = ["prune", "--model", "model-a:widths=8-8", "--epochs", "2", "--max-rounds", "1",
            "--schedule", "step", "--milestones", "1", "--schedule-unit", "step", "--json",
            "--out", str(out)]
    assert main(args) == 0
    train = json.loads((out / "study.json").read_text())["config"]["train"]
    assert (train["schedule"], train["milestones"], train["schedule_unit"]) == ("step", [1], "step")
    assert train["augment"] is False


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--milestones", "ten"], "--milestones must be comma-separated whole epochs"),
        (["--schedule", "step"], "schedule 'step' needs milestones"),
        (["--schedule", "wavy"], "schedule must be one of"),
        (["--warmup-epochs", "500"], "warmup_epochs must be >= 0 and below max_epochs"),
    ],
)
def test_bad_recipe_options_give_one_line(tmp_path, capsys, extra, words):
    assert main(["train", "--model", "model-a", "--out", str(tmp_path / "x"), *extra]) == 1
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", ["cifar10-model-c", "cifar10-seed-pool"])
def test_the_cifar_examples_train_with_the_recipe(name):
    from secateurs.experiments import load_config
    from secateurs.training import TrainConfig

    root = Path(__file__).resolve().parents[2]
    training = TrainConfig.from_dict(load_config(root / "examples" / f"{name}.yaml")["training"])
    assert training.augment and training.flip and training.crop_padding == 4
    assert training.schedule == "cosine"
