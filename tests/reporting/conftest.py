from __future__ import annotations

import copy
from pathlib import Path

import pytest

# A small pool: two members (one with two seeds, so that bands exist), two metrics, two levels.
REPORT_CONFIG = {
    "name": "tiny-report",
    "seed": 0,
    "dataset": {"spec": "digits"},
    "pool": [
        {"model": "model-a:widths=8-8", "seeds": [0, 1], "name": "fc8"},
        {"model": "model-a:widths=12-6", "seeds": [2], "name": "fc12"},
    ],
    "dropnet": {"metrics": ["minimum", "random_layer"], "levels": [0.0, 0.5]},
    "training": {"max_epochs": 3, "patience": 2},
    "ensemble": {"metrics": ["gd", "kw"], "beta": 0.1, "mixed_max_size": 3},
    "report": {"html": True},
}


@pytest.fixture
def report_config(tmp_path):
    cfg = copy.deepcopy(REPORT_CONFIG)
    cfg["output"] = str(tmp_path / "run")
    return cfg


@pytest.fixture(scope="session")
def report_run(tmp_path_factory):
    """One finished run with an HTML report: (validated config, results, run folder)."""
    import torch

    from secateurs.experiments import run_experiment, validate

    cfg = copy.deepcopy(REPORT_CONFIG)
    cfg["output"] = str(tmp_path_factory.mktemp("report") / "run")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = run_experiment(cfg, progress=False)
    finally:
        torch.set_num_threads(before)
    return validate(cfg), results, Path(cfg["output"])
