"""Run time counts every invocation of a resumed run, not only the last."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secateurs.errors import DataError
from secateurs.experiments import pipeline, run_experiment
from secateurs.reporting.run_time import describe_run_time, read_invocations

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_resumed_run_reports_the_time_of_every_invocation(report_config, monkeypatch):
    out = Path(report_config["output"])
    real = pipeline._assemble

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt  # the first invocation is stopped after its DropNet tasks

    monkeypatch.setattr(pipeline, "_assemble", stopped)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(report_config, progress=False)
    first = read_invocations(out)
    assert len(first) == 1
    assert first[0]["finished"] is False and first[0]["tasks_run"] == 6
    assert first[0]["seconds"] > 0  # counted up to its last finished task

    monkeypatch.setattr(pipeline, "_assemble", real)
    results = run_experiment(report_config, progress=False)
    records = read_invocations(out)
    assert len(records) == 2
    assert records[1]["finished"] is True and records[1]["tasks_run"] == 0
    assert results["seconds"] == pytest.approx(sum(r["seconds"] for r in records), abs=0.11)
    assert results["seconds"] >= first[0]["seconds"] + records[1]["seconds"] - 0.11
    assert json.loads((out / "results.json").read_text())["seconds"] == results["seconds"]
    report = (out / "report.md").read_text()
    assert describe_run_time(records) in report
    assert "over 2 invocations" in report


def test_describe_run_time():
    assert describe_run_time([{"seconds": 12.4}]) == "Run time 12 s."
    text = describe_run_time([{"seconds": 100.0}, {"seconds": 30.2}])
    assert text.startswith("Run time 130 s in total over 2 invocations (100 s, 30 s;")


def test_a_damaged_log_is_reported(tmp_path):
    (tmp_path / "invocations.json").write_text("[{")
    with pytest.raises(DataError, match="invocations.json"):
        read_invocations(tmp_path)
    (tmp_path / "invocations.json").write_text('{"seconds": 3}')
    with pytest.raises(DataError, match="list of invocation records"):
        read_invocations(tmp_path)
