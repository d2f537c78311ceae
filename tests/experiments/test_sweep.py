"""The sweep over DropNet's pruning fraction p: the cost arithmetic by hand, one study folder per p
that `secateurs prune` resumes, the table's "first round at or below the size", resume, and user
errors (Python and command line)."""

from __future__ import annotations

import csv
import json
import math

import pytest

from secateurs.cli.main import main
from secateurs.errors import ConfigError
from secateurs.experiments.prune_study import run_prune_study
from secateurs.experiments.sweep import (
    fraction_dir,
    reach_table,
    round_flops,
    run_sweep,
    with_costs,
)
from secateurs.pruning import DropNet, DropNetConfig
from secateurs.pruning import driver as driver_module
from secateurs.training import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = TrainConfig(max_epochs=1, batch_size=128, patience=None)
MODEL = "model-a:widths=6-5"
CONFIG = DropNetConfig(until=0.3, train=FAST)


# -- the arithmetic, by hand -------------------------------------------------------------------
def test_round_flops_is_epochs_times_macs_times_six_per_train_and_two_per_val_sample():
    # 3 epochs of a 100-MAC network over 10 training and 4 validation samples:
    # per epoch 100 x (6 x 10 + 2 x 4) = 6800 FLOPs, so 20400
    assert round_flops({"macs": 100, "epochs": 3}, 10, 4) == 20400.0
    assert round_flops({"macs": 100, "epochs": 0}, 10, 4) == 0.0


def test_costs_accumulate_within_each_run_only():
    def row(p, seed, r, macs, epochs):
        return {"fraction": p, "metric": "minimum", "seed": seed, "round": r, "macs": macs,
                "epochs": epochs}

    rows = [row(0.5, 0, 1, 50, 2), row(0.2, 0, 0, 100, 3), row(0.5, 0, 0, 100, 1),
            row(0.2, 0, 1, 80, 2), row(0.2, 1, 0, 100, 4)]
    got = {(r["fraction"], r["seed"], r["round"]): r for r in with_costs(rows, 10, 4)}
    per = 6 * 10 + 2 * 4  # FLOPs per MAC per epoch
    assert got[(0.2, 0, 0)]["cum_flops"] == 3 * 100 * per
    assert got[(0.2, 0, 1)]["cum_flops"] == 3 * 100 * per + 2 * 80 * per
    assert got[(0.2, 0, 1)]["cum_epochs"] == 5
    assert got[(0.2, 1, 0)]["cum_flops"] == 4 * 100 * per and got[(0.2, 1, 0)]["cum_epochs"] == 4
    assert got[(0.5, 0, 1)]["cum_flops"] == 1 * 100 * per + 2 * 50 * per
    assert got[(0.5, 0, 1)]["round_flops"] == 2 * 50 * per


def test_reach_table_takes_each_seeds_first_round_at_or_below_the_size():
    def row(seed, r, remaining, acc, epochs, flops):
        return {"fraction": 0.2, "seed": seed, "round": r, "remaining": remaining,
                "test_acc": acc, "cum_epochs": epochs, "cum_flops": flops}

    rows = [row(0, 0, 1.0, 0.9, 5, 100.0), row(0, 1, 0.6, 0.8, 9, 160.0),
            row(0, 2, 0.4, 0.7, 12, 190.0),
            row(1, 0, 1.0, 0.9, 4, 90.0), row(1, 1, 0.5, 0.6, 8, 140.0)]
    (half, tenth) = reach_table(rows, [0.5, 0.1])
    # seed 0 first reaches <= 0.5 at round 2 (0.4), seed 1 at round 1 (0.5, "at or below")
    assert half["seeds_reaching"] == 2 and half["rounds"] == 1.5
    assert math.isclose(half["remaining"], 0.45) and math.isclose(half["test_acc"], 0.65)
    assert half["cum_epochs"] == 10 and half["cum_flops"] == 165.0
    # the mean curve: round 1 at remaining 0.55 acc 0.7; round 2 (seed 0 only) at 0.4, acc 0.7
    assert math.isclose(half["test_acc_at_target"], 0.7)
    assert tenth["seeds_reaching"] == 0 and "test_acc" not in tenth


def test_accuracy_at_exactly_a_recorded_size_despite_float_drift():
    # three seeds at 8/80 average to 0.10000000000000002: still "exactly" the size 0.1
    rows = [{"fraction": 0.2, "seed": s, "round": r, "remaining": rem, "test_acc": acc,
             "cum_epochs": 1, "cum_flops": 1.0}
            for s in range(3) for r, rem, acc in ((0, 1.0, 0.9), (1, 8 / 80, 0.7))]
    (entry,) = reach_table(rows, [0.1])
    assert entry["test_acc_at_target"] == pytest.approx(0.7)
    assert entry["remaining"] > 0.1  # the drift is real


# -- a sweep on the embedded digits ------------------------------------------------------------
@pytest.fixture(scope="module")
def swept(tmp_path_factory, digits):
    out = tmp_path_factory.mktemp("sweep") / "sw"
    result = run_sweep(MODEL, digits, [0.3, 0.5], [0, 1], CONFIG, out=out, dataset_spec="digits",
                       split_seed=0, progress=False)
    return out, result


def test_each_p_is_a_study_that_drops_p_of_the_remaining_units(swept, digits):
    out, result = swept
    for p in (0.3, 0.5):
        folder = fraction_dir(out, p)
        study = json.loads((folder / "study.json").read_text())
        assert study["config"]["fraction"] == p and study["metrics"] == ["minimum"]
        for seed in (0, 1):
            run = json.loads((folder / "runs" / f"minimum-seed{seed}" / "run.json").read_text())
            units = [r["units"] for r in run["rounds"]]
            for before, after in zip(units, units[1:], strict=False):
                assert after == before - max(1, math.floor(p * before))
            assert run["rounds"][-1]["remaining"] <= 0.3 < run["rounds"][-2]["remaining"]


def test_sweep_rounds_carry_the_flops_spent_computed_from_each_studys_rounds(swept, digits):
    out, _ = swept
    with open(out / "sweep_rounds.csv") as f:
        rows = list(csv.DictReader(f))
    n_train, n_val = len(digits.y_train), len(digits.y_val)
    for p in (0.3, 0.5):
        recorded = json.loads((fraction_dir(out, p) / "rounds.json").read_text())
        for seed in (0, 1):
            total_flops, total_epochs = 0, 0
            mine = sorted((r for r in recorded if r["seed"] == seed), key=lambda r: r["round"])
            got = sorted((r for r in rows if float(r["fraction"]) == p and int(r["seed"]) == seed),
                         key=lambda r: int(r["round"]))
            assert len(got) == len(mine)
            for want, row in zip(mine, got, strict=True):
                total_epochs += want["epochs"]
                total_flops += want["epochs"] * want["macs"] * (6 * n_train + 2 * n_val)
                assert int(row["cum_epochs"]) == total_epochs
                assert math.isclose(float(row["cum_flops"]), total_flops)


def test_sweep_writes_table_figure_and_page(swept):
    out, result = swept
    for name in ("sweep.json", "sweep.md", "sweep.png", "sweep_table.csv", "sweep_table.json",
                 "sweep_rounds.json"):
        assert (out / name).is_file(), name
    table = json.loads((out / "sweep_table.json").read_text())
    assert [(e["target"], e["fraction"]) for e in table] == [
        (t, p) for t in (0.5, 0.3, 0.2, 0.1) for p in (0.3, 0.5)
    ]
    page = (out / "sweep.md").read_text()
    assert "![sweep](sweep.png)" in page and "| 0.3 | 0.5 | 2/2 |" in page
    assert result.table() == table


def test_rerun_resumes_and_prune_resumes_a_p_folder(swept, digits, monkeypatch):
    out, result = swept

    def boom(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(DropNet, "train_round", boom)
    monkeypatch.setattr(driver_module, "train_lockstep", boom)
    again = run_sweep(MODEL, digits, [0.3, 0.5], [0, 1], CONFIG, out=out, dataset_spec="digits",
                      split_seed=0, progress=False)
    assert again.rows() == result.rows()
    # the p folder is an ordinary study: `secateurs prune --fraction 0.5` on it trains nothing
    study = run_prune_study(MODEL, digits, ["minimum"], [0, 1],
                            DropNetConfig(fraction=0.5, until=0.3, train=FAST),
                            out=fraction_dir(out, 0.5), dataset_spec="digits", split_seed=0,
                            progress=False)
    assert len(study.runs) == 2


def test_a_sweep_folder_with_other_settings_is_refused(swept, digits):
    out, _ = swept
    other = DropNetConfig(until=0.5, train=FAST)
    with pytest.raises(ConfigError, match="holds a sweep with other settings"):
        run_sweep(MODEL, digits, [0.3], [0], other, out=out, dataset_spec="digits",
                  split_seed=0, progress=False)


def test_lockstep_and_sequential_sweeps_prune_alike(digits):
    a = run_sweep(MODEL, digits, [0.3, 0.5], [0], CONFIG, progress=False, lockstep=True)
    b = run_sweep(MODEL, digits, [0.3, 0.5], [0], CONFIG, progress=False, lockstep=False)
    for p in (0.3, 0.5):
        assert [r["widths"] for r in a.studies[p].rows()] == [
            r["widths"] for r in b.studies[p].rows()]


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fractions", "metric", "config", "message"),
    [
        ([], "minimum", CONFIG, "at least one fraction"),
        ([0.2, 0.2], "minimum", CONFIG, r"--fraction 0.2 is given more than once"),
        ([0.2, 1.5], "minimum", CONFIG, r"--fraction must be in \(0, 1\], got 1.5"),
        ([0.0], "minimum", CONFIG, r"got 0.0"),
        ([0.2], "oracle", CONFIG, "the oracle drops one unit per round"),
        ([0.2], "minimum", DropNetConfig(one_per_round=True, train=FAST), "one_per_round"),
        ([0.2], "nope", CONFIG, "nope"),
    ],
)
def test_bad_sweeps_are_refused_before_anything_is_written(
    digits, tmp_path, fractions, metric, config, message
):
    with pytest.raises(ConfigError, match=message):
        run_sweep(MODEL, digits, fractions, [0], config, metric=metric, out=tmp_path / "s",
                  progress=False)
    assert not (tmp_path / "s").exists()


def test_bad_target_size_is_refused(digits, tmp_path):
    with pytest.raises(ConfigError, match=r"target sizes must be in \(0, 1\], got 0"):
        run_sweep(MODEL, digits, [0.2], [0], CONFIG, targets=[0.5, 0.0], progress=False)


SWEEP = ["sweep", "--model", MODEL, "--dataset", "digits", "--epochs", "1", "--batch-size",
         "128", "--until", "0.5"]


def test_cli_sweep_writes_the_folder_and_prints_the_table_as_json(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main([*SWEEP, "--fraction", "0.3", "--fraction", "0.5", "--at", "0.5", "--out",
                 str(out), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["out"] == str(out)
    assert [(e["target"], e["fraction"]) for e in got["table"]] == [(0.5, 0.3), (0.5, 0.5)]
    assert all(isinstance(e["cum_flops"], float) for e in got["table"])
    assert (out / "p-0.3" / "runs" / "minimum-seed0" / "run.json").is_file()
    assert (out / "sweep.png").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fraction", "0.3", "--fraction", "0.3"], "error: --fraction 0.3 is given more than once"),
        (["--fraction", "2"], r"error: --fraction must be in (0, 1], got 2.0"),
        (["--metric", "oracle"], "error: the oracle drops one unit per round"),
        (["--seeds", "0"], "error: --seeds must be >= 1, got 0"),
        (["--at", "1.5"], "error: target sizes must be in (0, 1], got 1.5"),
        (["--model", "model-a:act=swish"], "error: model-a: act must be one of"),
    ],
)
def test_cli_sweep_errors_are_one_line(tmp_path, capsys, args, message):
    assert main([*SWEEP, "--out", str(tmp_path / "s"), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "s").exists()



def test_a_p_folder_holding_another_study_is_refused_before_anything_is_written(digits, tmp_path):
    out = tmp_path / "sw"
    run_prune_study(MODEL, digits, ["minimum"], [0], DropNetConfig(fraction=0.5, until=0.8,
                                                                  train=FAST),
                    out=fraction_dir(out, 0.5), progress=False)
    with pytest.raises(ConfigError, match="p-0.5 holds a study with other settings"):
        run_sweep(MODEL, digits, [0.3, 0.5], [0], CONFIG, out=out, progress=False)
    assert not (out / "sweep.json").exists() and not fraction_dir(out, 0.3).exists()
