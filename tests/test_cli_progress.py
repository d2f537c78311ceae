"""Progress wherever the output goes: log lines with elapsed time and an ETA when stderr is not a
terminal (nohup, SLURM, CI), a row per run in lockstep on a terminal, and the output folder and
settings first."""

from __future__ import annotations

import io
import re

import pytest
from rich.progress import Progress

from secateurs.experiments import prune_study
from secateurs.progress import LogProgress, format_seconds, progress_bar
from secateurs.pruning import DropNetConfig
from secateurs.training import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_log_lines_carry_elapsed_time_and_an_eta():
    clock, buf = Clock(), io.StringIO()
    log = LogProgress(file=buf, clock=clock)
    task = log.add_task("DropNet", total=4, info="")
    clock.t += 10
    log.update(task, advance=1, info="round 0")
    clock.t += 10
    log.update(task, info="round 0")  # nothing new: no line
    log.update(task, advance=3, info="all done")
    lines = buf.getvalue().splitlines()
    assert lines == ["[   10s] DropNet  1/4  round 0  ETA 30s",
                     "[   20s] DropNet  4/4  all done  done in 20s"]
    assert format_seconds(185) == "3m05s" and format_seconds(7260) == "2h01m"


def test_off_a_terminal_progress_logs_lines_and_disabled_writes_nothing(capsys):
    bar = progress_bar(True)  # pytest's stderr is not a terminal
    assert isinstance(bar, LogProgress)
    with bar:
        bar.update(bar.add_task("train", total=2, info=""), advance=1, info="loss 0.5")
    assert re.fullmatch(r"\[ +\d+s\] train  1/2  loss 0\.5  ETA \d+s\n", capsys.readouterr().err)
    with progress_bar(False) as quiet:
        quiet.update(quiet.add_task("train", total=2, info=""), advance=1, info="x")
    assert capsys.readouterr().err == ""


CONFIG = DropNetConfig(fraction=0.4, until=0.4, train=TrainConfig(max_epochs=1, batch_size=128))


def test_a_study_off_a_terminal_logs_every_round_and_run(digits, capsys):
    study = prune_study.run_prune_study("model-a:widths=8-6", digits, ["minimum", "random"],
                                        [0], CONFIG, progress=True)
    err = capsys.readouterr().err.splitlines()
    rounds = sum(len(r.rounds) for r in study.runs)
    round_lines = [line for line in err if re.search(r"seed 0 round \d+: ", line)]
    assert len(round_lines) == rounds
    assert sum("finished" in line for line in err) == 2
    assert all(re.match(r"\[ +\d+s\] DropNet  \d+/\d+  ", line) for line in err)
    assert any("ETA" in line for line in round_lines)
    assert err[-1].endswith(f"2/2 runs done  done in {err[-1].rsplit(' ', 1)[-1]}")


def test_lockstep_on_a_terminal_shows_a_row_per_run(digits, monkeypatch):
    bars = []

    def recording(enabled: bool = True):
        bars.append(Progress(disable=True))  # keeps its tasks; draws nothing
        return bars[-1]

    monkeypatch.setattr(prune_study, "progress_bar", recording)
    study = prune_study.run_prune_study("model-a:widths=8-6", digits, ["minimum", "random"],
                                        [0, 1], CONFIG, progress=True, lockstep=True)
    (bar,) = bars
    overall, *rows = bar.tasks
    assert [t.description.strip() for t in rows] == [
        f"{r.metric} seed {r.seed}" for r in study.runs]
    for task, run in zip(rows, study.runs, strict=True):
        assert task.completed == task.total == len(run.rounds)
    assert overall.completed == overall.total


def test_expected_rounds_follow_the_stop_rule():
    assert prune_study.expected_rounds(DropNetConfig(fraction=0.5, until=0.2)) == 4  # 1 .5 .25 .125
    assert prune_study.expected_rounds(DropNetConfig(fraction=0.5, until=0.2, max_rounds=1)) == 2
    assert prune_study.expected_rounds(DropNetConfig(until=None, kappa=0.9)) is None


def test_commands_start_with_the_output_folder_and_settings(tmp_path, capsys):
    from secateurs.cli.main import main

    out = tmp_path / "s"
    assert main(["prune", "--model", "model-a:widths=8-6", "--epochs", "1", "--fraction", "0.5",
                 "--until", "0.5", "--out", str(out), "--json"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"output: {out}"
    assert err[1].startswith("settings: model=model-a:widths=8-6, dataset=digits, ")
    for part in ("metrics=minimum", "seeds=0", "fraction=0.5", "until=0.5", "reset=initial",
                 "max_epochs=1", "device=auto (cpu)"):
        assert part in err[1], part


def test_a_pipeline_run_off_a_terminal_logs_every_round_of_every_task(tmp_path, capsys):
    """A lockstep group finishes all its runs at once: without per-round lines a log shows
    nothing for the whole group."""
    import copy
    import csv
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "experiments"))
    from pipeline_configs import TINY

    from secateurs.experiments import run_experiment

    cfg = copy.deepcopy(TINY)
    cfg["output"] = str(tmp_path / "run")
    cfg["pool"] = [{**cfg["pool"][0], "seeds": [0, 1, 2]}]  # one lockstep group of 6 runs
    run_experiment(cfg, progress=True)
    err = capsys.readouterr().err
    with open(tmp_path / "run" / "rounds.csv") as f:
        recorded = list(csv.DictReader(f))
    lines = [line for line in err.splitlines() if "round" in line and "of units left" in line]
    for metric in ("minimum", "random_layer"):
        for seed in (0, 1, 2):
            mine = [ln for ln in lines if f" {metric} seed {seed}: round " in ln]
            rounds = [r for r in recorded if r["metric"] == metric and r["seed"] == str(seed)]
            assert rounds and len(mine) == len(rounds), (metric, seed, err[-2000:])
            assert all(re.match(r"\[ *\d+m\d\ds\] model-a:widths=8-8 ", ln) for ln in mine)
    # and nothing at all with progress off
    cfg["output"] = str(tmp_path / "quiet")
    run_experiment(cfg, progress=False)
    assert "of units left" not in capsys.readouterr().err
