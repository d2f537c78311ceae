"""The example configs work from any clone: they validate, and name their datasets as a user would
(a dataset spec, no folder of this machine, nothing outside the clone)."""

from __future__ import annotations

from pathlib import Path

import pytest

from secateurs.experiments import load_config

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_and_names_its_dataset_like_a_user(path):
    cfg = load_config(path)
    ds = cfg["dataset"]
    assert ds["data_dir"] is None, f"{path.name}: data_dir {ds['data_dir']!r} is this machine's"
    assert ":" not in ds["spec"] or not ds["spec"].split(":", 1)[1].startswith(("/", "..", "~"))
    text = path.read_text()
    assert "../" not in text and "shared/datasets" not in text, path.name
    assert not Path(cfg["output"]).is_absolute() and ".." not in Path(cfg["output"]).parts
