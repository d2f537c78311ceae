import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from pipeline_configs import TINY, strip_timing

from secateurs.ensembles import load_predictions, select_team
from secateurs.errors import ConfigError
from secateurs.experiments import pareto_front, run_experiment, validate
from secateurs.experiments.lock import run_lock
from secateurs.io import TMP_SUFFIX


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One uninterrupted run of the tiny config, shared by the tests that compare against it."""
    cfg = copy.deepcopy(TINY)
    cfg["output"] = str(tmp_path_factory.mktemp("first") / "run")
    return cfg, run_experiment(cfg, progress=False)


def test_end_to_end_tiny_config(first_run):
    tiny_config, results = first_run
    out = Path(tiny_config["output"])
    for name in (
        "config.yaml",
        "results.json",
        "table_global.csv",
        "table_layer.csv",
        "rounds.csv",
        "report.md",
        "accuracy_vs_remaining.png",
        "pareto.png",
        "diversity_vs_accuracy.png",
        "pareto.csv",
    ):
        assert (out / name).is_file(), name
    # 2 metrics x 2 levels x (2 focal metrics + their consensus) rows, one table per scope.
    assert len(results["table"]) == 12
    assert {r["scope"] for r in results["table"]} == {"global", "layer"}
    # Each pool is on disk in the interchange format, and `select` on it by hand agrees.
    # Its manifest keeps config order (fc12 would sort first), so team indices agree too.
    pool = load_predictions(out / "pools" / "minimum" / "p50")
    assert list(pool.names) == ["fc8-s0", "fc8-s1", "fc12-s2"]
    again = select_team(pool, method="hq", metric="gd", beta=0.1)
    row = next(
        r
        for r in results["table"]
        if r["metric"] == "minimum" and r["level"] == 0.5 and r["focal_metric"] == "gd"
    )
    assert row["team_names"] == list(again.recommended.names)
    assert row["team"] == list(again.recommended.indices)  # numbers, not a "{0,2}" string
    assert row["team_test_acc"] == pytest.approx(again.recommended.test_accuracy)
    # Snapshots: level 0 is the unpruned round; level 0.5 the round nearest 50% pruned.
    for r in results["table"]:
        assert abs(r["pruned"] - r["level"]) < 0.15
    # MAC fraction of a team is its members' MACs over the whole unpruned pool's.
    assert all(0 < r["mac_fraction"] <= 1 for r in results["table"])
    report = (out / "report.md").read_text()
    assert "Global metrics" in report and "Layer-wise metrics" in report and "Pareto" in report
    # The mixed pool holds each member once unpruned, plus each (metric, level > 0) snapshot.
    assert len(results["mixed"]["models"]) == 3 + 3 * 2


def test_rerun_skips_finished_tasks_and_gives_identical_results(first_run, monkeypatch):
    tiny_config, first = first_run
    import secateurs.experiments.tasks as tasks

    def boom(*a, **k):
        raise AssertionError("a finished task ran again")

    monkeypatch.setattr(tasks, "run_dropnets", boom)
    second = run_experiment(tiny_config, progress=False)
    assert strip_timing(first) == strip_timing(second)


def _cli(config_path: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "src"))
    return subprocess.Popen(
        [sys.executable, "-m", "secateurs", "run", str(config_path), "--json", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(first_run, tiny_config, tmp_path):
    """Also the reproducibility check: another folder, the same config and seeds, the same numbers."""
    clean = first_run[1]
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    out = Path(tiny_config["output"])
    proc = _cli(path)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("tasks/*/task.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(out.glob("tasks/*/task.json")))
    assert 1 <= done_before < 6, "the kill should land mid-way"
    assert not (out / "results.json").exists()
    resumed = _cli(path)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert not list(out.rglob(f"*{TMP_SUFFIX}")), "half-written temporary files left behind"
    got = json.loads((out / "results.json").read_text())
    assert strip_timing(got) == strip_timing(json.loads(json.dumps(clean)))


def test_a_second_run_on_the_same_folder_is_refused(tiny_config):
    with run_lock(tiny_config["output"]), pytest.raises(ConfigError, match="in use by another"):
        run_experiment(tiny_config, progress=False)


def test_local_workers_give_the_same_results(first_run, tiny_config):
    tiny_config["executor"] = {"kind": "local", "workers": 2}
    b = run_experiment(tiny_config, progress=False)
    assert strip_timing(first_run[1]) == strip_timing(b)


def test_ray_executor_gives_the_same_results_as_local(first_run, tiny_config):
    pytest.importorskip("ray", reason="Ray is an optional extra (pip install secateurs[ray])")
    local = first_run[1]
    tiny_config["executor"] = {"kind": "ray", "workers": 2}
    ray_results = run_experiment(tiny_config, progress=False)
    assert strip_timing(local) == strip_timing(ray_results)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bogus": 1}, "unknown config key 'bogus'"),
        ({"dropnet": {"fraction": 1.5}}, "'dropnet.fraction': got 1.5"),
        ({"dropnet": {"metrics": ["minimum", "median"]}}, r"'dropnet.metrics\[1\]': got 'median'"),
        ({"dropnet": {"levels": [0, 1.0]}}, r"'dropnet.levels\[1\]'"),
        ({"ensemble": {"metrics": ["xx"]}}, r"'ensemble.metrics\[0\]'"),
        ({"ensemble": {"beta": -0.1}}, "'ensemble.beta'"),
        ({"ensemble": {"vote": "borda"}}, "'ensemble.vote'"),
        ({"executor": {"kind": "slurm"}}, "'executor.kind': got 'slurm'"),
        ({"training": {"lr": -1}}, "lr must be positive"),
        ({"training": {"learning_rate": 0.1}}, "unknown config key 'training.learning_rate'"),
        ({"pool": [{"model": "nope"}]}, r"'pool\[0\].model': got 'nope'"),
        ({"pool": [{"model": "model-a", "seeds": [0, 1]}]}, "at least 3 models"),
        ({"pool": [{"model": "model-a", "seeds": [0, 0, 1]}]}, "no repeated seeds"),
        ({"ensemble": {"max_size": 9}}, "ensemble.max_size"),
        ({"dropnet": {"levels": [0.12, 0.12000001]}}, "levels that differ"),
        ({"training": {"lr": "fast"}}, "lr must be a number"),
        ({"pool": [{"model": "model-a", "seeds": [-1, 0]}]}, r"'pool\[0\].seeds\[0\]'"),
        ({"dataset": {"val_fraction": 0}}, "'dataset.val_fraction'"),
    ],
)
def test_config_errors_name_the_key_the_value_and_what_is_allowed(tiny_config, change, message):
    cfg = {**tiny_config}
    for key, value in change.items():
        cfg[key] = (
            {**cfg[key], **value}
            if isinstance(value, dict) and isinstance(cfg.get(key), dict)
            else value
        )
    with pytest.raises(ConfigError, match=message):
        validate(cfg)


def test_cli_reports_config_errors_in_one_line(tmp_path, capsys):
    from secateurs.cli.main import main

    path = tmp_path / "bad.yaml"
    path.write_text("pool: [{model: model-a}]\nbogus: 3\n")
    assert main(["run", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: unknown config key 'bogus'") and err.count("\n") == 1
    assert main(["run", str(tmp_path / "missing.yaml")]) == 1
    assert "not found" in capsys.readouterr().err
    path.write_text("pool: [unclosed\n")
    assert main(["run", str(path)]) == 1
    assert "not valid YAML" in capsys.readouterr().err


def test_pareto_front_against_a_brute_force_definition():
    rng = np.random.default_rng(0)
    points = [
        {"mac_fraction": float(m), "val_acc": float(a), "test_acc": 0.0}
        for m, a in rng.random((60, 2))
    ]
    front = pareto_front(points)
    dominated = [
        p
        for p in points
        if any(
            q["mac_fraction"] <= p["mac_fraction"]
            and q["val_acc"] >= p["val_acc"]
            and (q["mac_fraction"], q["val_acc"]) != (p["mac_fraction"], p["val_acc"])
            for q in points
        )
    ]
    assert sorted(map(id, front)) == sorted(id(p) for p in points if p not in dominated)


def test_round_0_is_trained_once_per_member_so_every_metric_shares_it(first_run):
    from secateurs.experiments.tasks import read_task

    tiny_config, _ = first_run
    out = Path(tiny_config["output"])
    by_member: dict[tuple, list[dict]] = {}
    for folder in sorted((out / "tasks").iterdir()):
        task = read_task(out, folder.name)
        spec = task["spec"]
        by_member.setdefault((spec["member"], spec["seed"]), []).append(task)
    assert by_member and all(len(tasks) == 2 for tasks in by_member.values())  # 2 metrics
    for tasks in by_member.values():
        first = next(i for i, s in enumerate(tasks[0]["snapshots"]) if s["round"] == 0)
        for other in tasks[1:]:
            j = next(i for i, s in enumerate(other["snapshots"]) if s["round"] == 0)
            assert np.array_equal(tasks[0]["val_probs"][first], other["val_probs"][j])
            assert np.array_equal(tasks[0]["test_probs"][first], other["test_probs"][j])


def test_outputs_a_rerun_no_longer_asks_for_are_removed(first_run, tmp_path):
    cfg, _ = first_run
    optional = ("comparison.csv", "pareto.csv", "pareto.png", "diversity_vs_accuracy.png")
    assert all((Path(cfg["output"]) / name).exists() for name in optional)
    copy_dir = tmp_path / "run"
    shutil.copytree(cfg["output"], copy_dir)
    (copy_dir / "report.html").write_text("<html>an older report</html>")
    again = copy.deepcopy(cfg)
    again["output"] = str(copy_dir)
    again["ensemble"] = {**again["ensemble"], "mixed_pool": False, "compare": False}
    results = run_experiment(again, progress=False)
    assert results["mixed"] is None
    left = [name for name in (*optional, "report.html") if (copy_dir / name).exists()]
    assert left == []
    assert (copy_dir / "report.md").exists() and (copy_dir / "team_vs_pool.png").exists()
