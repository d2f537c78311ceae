"""The seed presentation's experiment shape, in miniature: 5 members x 6 DropNet metrics x levels
0 / 20 / 50 %, HQ with focal CK, BD, KW, GD, and a mixed pool of 5 + 5 x 6 x 2 = 65 snapshots
(more than 62 models: teams can no longer be 64-bit masks). It must run to a complete report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secateurs.deploy import evaluate_on, export_team_from_run, load_deployed
from secateurs.experiments import run_experiment

pytestmark = pytest.mark.usefixtures("one_thread")

METRICS = ["minimum", "maximum", "random", "minimum_layer", "maximum_layer", "random_layer"]
SEED_SHAPE = {
    "name": "seed-shape",
    "seed": 0,
    "dataset": {"spec": "digits"},
    "pool": [
        {"model": "model-a:widths=8-8", "seeds": [0], "name": "a"},
        {"model": "model-a:widths=10-6", "seeds": [0], "name": "b"},
        {"model": "model-a:widths=12", "seeds": [0], "name": "c"},
        {"model": "model-a:widths=6-6", "seeds": [0], "name": "d"},
        {"model": "model-a:widths=9", "seeds": [0], "name": "e"},
    ],
    "dropnet": {"metrics": METRICS, "fraction": 0.2, "levels": [0.0, 0.2, 0.5]},
    "training": {"max_epochs": 2, "patience": 2},
    "ensemble": {"metrics": ["ck", "bd", "kw", "gd"], "beta": 0.1, "mixed_max_size": 5},
    "report": {"html": True},
}


def test_seed_shaped_config_runs_to_a_complete_report(tmp_path):
    cfg = {**SEED_SHAPE, "output": str(tmp_path / "run")}
    results = run_experiment(cfg, progress=False)
    out = Path(cfg["output"])
    for name in ("results.json", "report.md", "report.html", "table_global.csv",
                 "table_layer.csv", "pareto.csv", "pareto.png"):
        assert (out / name).is_file(), name
    # 6 metrics x 3 levels x (4 focal metrics + their consensus) rows, each with a team of the
    # 5-model pool
    assert len(results["table"]) == 6 * 3 * 5
    assert sum(r["focal_metric"] == "consensus" for r in results["table"]) == 6 * 3
    assert all(1 <= r["size"] <= 4 for r in results["table"])
    mixed = results["mixed"]
    assert len(mixed["models"]) == 65 == len(results["snapshots"])
    manifest = json.loads((out / "pools" / "mixed" / "pool.json").read_text())
    assert manifest["models"] == mixed["models"]
    for focal in ("ck", "bd", "kw", "gd"):
        rec = mixed["selections"][focal]["recommended"]
        assert rec is not None and 1 <= rec["size"] <= 5
    report = (out / "report.md").read_text()
    assert "Mixed pool of every snapshot" in report and "65 models" in report
    # HQ against every baseline at equal size, for each of the 18 pools and the mixed one
    assert len(results["comparison"]["pools"]) == 6 * 3 + 1
    assert "### Pool `mixed` (M = 65" in report
    # the mixed pool's team deploys and gives the reported accuracy
    row = "mixed/gd"
    summary = export_team_from_run(out, tmp_path / "team.safetensors", row=row)
    assert evaluate_on(load_deployed(tmp_path / "team.safetensors"), "digits")["accuracy"] == (
        summary["reported_test_acc"]
    )
