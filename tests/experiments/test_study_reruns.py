"""`secateurs prune` folders: damaged files are found and redone, one process at a time, and its
temporary files are cleaned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secateurs.errors import ConfigError, DataError
from secateurs.experiments import load_study, run_prune_study
from secateurs.experiments.lock import run_lock
from secateurs.io import TMP_SUFFIX
from secateurs.pruning import DropNetConfig
from secateurs.training import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

MODEL = "model-a:widths=8"
CONFIG = DropNetConfig(until=0.6, train=TrainConfig(max_epochs=2, patience=None))


def study(digits, out, log=None):
    """Runs one by one (lockstep equals them only up to float rounding), so a redone run gives
    exactly its first numbers."""
    return run_prune_study(
        MODEL, digits, ["minimum"], [0, 1], CONFIG, out=out, progress=False, log=log,
        lockstep=False,
    )


def rows(result) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in result.rows()]


@pytest.fixture(scope="module")
def reference(digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "s"
    return out, rows(study(digits, out))


def _copy(reference, tmp_path) -> Path:
    import shutil

    out = tmp_path / "s"
    shutil.copytree(reference[0], out)
    return out


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (lambda f: _truncate(f / "run.json"), "run.json is unreadable"),
        (lambda f: (f / "round-001.safetensors").unlink(), "round-001.safetensors is missing"),
        (lambda f: _truncate(f / "round-000.safetensors"), "round-000.safetensors is truncated"),
    ],
)
def test_a_damaged_run_is_found_said_and_redone(digits, reference, tmp_path, damage, said):
    out = _copy(reference, tmp_path)
    damage(out / "runs" / "minimum-seed1")
    with pytest.raises(DataError, match="damaged"):
        load_study(out)  # reading it fails in one line, not with a traceback
    messages: list[str] = []
    again = study(digits, out, log=messages.append)
    assert [m for m in messages if "running it again" in m and said in m], messages
    assert [m for m in messages if "minimum seed 0" in m] == []  # the intact run is kept
    assert rows(again) == reference[1]
    assert len(load_study(out)[1].runs) == 2


def test_a_damaged_study_json_reruns_its_runs(digits, reference, tmp_path):
    out = _copy(reference, tmp_path)
    _truncate(out / "study.json")
    with pytest.raises(DataError, match="study.json is damaged"):
        load_study(out)
    messages: list[str] = []
    again = study(digits, out, log=messages.append)
    assert any("study.json is unreadable" in m for m in messages), messages
    assert rows(again) == reference[1]
    assert json.loads((out / "study.json").read_text())["model"] == MODEL


def test_a_second_prune_on_the_same_folder_is_refused_and_stale_temporaries_go(
    digits, reference, tmp_path
):
    out = _copy(reference, tmp_path)
    with run_lock(out), pytest.raises(ConfigError, match="in use by another"):
        study(digits, out)
    stale = out / "runs" / "minimum-seed0" / f".run.json.abcd_123{TMP_SUFFIX}"
    user = out / ".my-notes.tmp"
    stale.write_text("half")
    user.write_text("mine")
    study(digits, out)
    assert not stale.exists() and user.read_text() == "mine"
