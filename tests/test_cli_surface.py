"""The command line as a tool to script: --help without torch, --version, choices listed and bad
values refused in one line, Ctrl-C exits 130 and says how to resume, warnings as one plain line,
device auto giving the CPU's results, JSON with numbers as numbers and plain keys, tables that
keep every character at 80 columns and in a pipe."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from secateurs.cli import options
from secateurs.cli.main import main
from secateurs.cli.run_cmds import json_summary

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1", COLUMNS="80")
COMMANDS = ["datasets", "models", "train", "prune", "export", "run", "demo", "select", "diversity"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _python(code: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True,
                          timeout=600, **kw)  # seconds when idle; generous for a loaded machine


def test_help_of_every_command_answers_without_importing_torch():
    code = f"""
import contextlib, io, sys
from secateurs.cli.main import main
for argv in [["--help"]] + [[c, "--help"] for c in {COMMANDS!r}]:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        rc = main(argv)
    assert rc == 0, (argv, rc)
    assert "Usage:" in out.getvalue(), argv
heavy = [m for m in ("torch", "sklearn", "matplotlib") if m in sys.modules]
assert not heavy, heavy
print("ok")
"""
    r = _python(code)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_version():
    r = subprocess.run([sys.executable, "-m", "secateurs", "--version"], env=ENV,
                       capture_output=True, text=True, timeout=600)
    from secateurs import __version__

    assert r.returncode == 0 and r.stdout.strip() == f"secateurs {__version__}"


def test_cli_choices_are_the_library_s():
    from secateurs.experiments.config import EXECUTORS
    from secateurs.pruning.dropnet import COUPLINGS, RESETS
    from secateurs.pruning.metrics import METRICS
    from secateurs.training.config import OPTIMIZERS

    assert options.OPTIMIZERS == OPTIMIZERS and options.RESETS == RESETS
    assert options.COUPLINGS == COUPLINGS and options.EXECUTORS == EXECUTORS
    assert tuple(METRICS) == options.METRICS


@pytest.mark.parametrize("command, option, values, required", [
    ("prune", "--reset", options.RESETS, "--model"),
    ("prune", "--optimizer", options.OPTIMIZERS, "--model"),
    ("prune", "--coupled", options.COUPLINGS, "--model"),
    ("train", "--optimizer", options.OPTIMIZERS, "--model"),
    ("run", "--executor", options.EXECUTORS, None),
    ("export", "--metric", (), "--out"),
])
def test_help_lists_choices_and_marks_required_options(capsys, command, option, values, required):
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    if values:
        assert f"{option} <{'|'.join(values)}>" in text
    if required:
        block = text[text.index(f"  {required} "):]
        block = block[: block.index("\n  --", 1)]
        assert "[required]" in block, block


@pytest.mark.parametrize("argv", [
    ["prune", "--model", "model-a", "--patience", "-1"],
    ["train", "--model", "model-a", "--patience", "-1"],
    ["sweep", "--model", "model-a", "--patience", "-3"],
])
def test_a_negative_patience_is_refused_as_a_bad_option(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'--patience'" in err and "greater than or equal to 0" in err


@pytest.mark.parametrize("argv, bad", [
    (["prune", "--model", "model-a", "--reset", "zeros"], "zeros"),
    (["train", "--model", "model-a", "--optimizer", "adagrad"], "adagrad"),
    (["demo", "--executor", "slurm"], "slurm"),
])
def test_a_bad_choice_is_refused_in_one_line_naming_the_value_and_the_choices(capsys, argv, bad):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert f"'{bad}'" in err and "is not one of" in err and f"secateurs {argv[0]} --help" in err


def test_no_arguments_show_the_help(capsys):
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: secateurs") and "\nCommands:\n" in err and "error" not in err


def test_a_missing_required_option_is_one_line(capsys):
    assert main(["train"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--model" in err


@pytest.mark.parametrize("argv, code, says", [
    (["select", "--predictions", "/nonexistent/pool", "--json"], 1, "/nonexistent/pool"),
    (["select", "--json", "--predictions"], 2, "--predictions"),
    (["train", "--model", "no-such-model", "--json"], 1, "no-such-model"),
    (["prune", "--json", "--model", "model-a", "--reset", "zeros"], 2, "zeros"),
])
def test_with_json_an_error_is_one_object_on_stdout_too(capsys, argv, code, says):
    assert main(argv) == code
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and says in captured.err
    obj = json.loads(captured.out)  # a script reading stdout gets JSON whatever happened
    assert obj == {"error": {"message": captured.err.strip().removeprefix("error: "),
                             "exit_code": code}}
    assert main([a for a in argv if a != "--json"]) == code
    assert capsys.readouterr().out == ""  # without --json, stdout holds results only


def default_sigint() -> None:
    """In the child: Ctrl-C's default action. A suite started in the background by a
    non-interactive shell ignores SIGINT, children inherit that, and Python then installs no
    KeyboardInterrupt handler (a terminal's Ctrl-C always finds the default)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path):
    out = tmp_path / "study"
    proc = subprocess.Popen(
        [sys.executable, "-m", "secateurs", "prune", "--model", "model-a", "--epochs", "100000",
         "--patience", "0", "--batch-size", "8", "--no-lockstep", "--out", str(out), "--json"],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=default_sigint,
    )
    try:
        lines = []
        deadline = time.time() + 600  # a loaded machine can take minutes to import torch
        while time.time() < deadline:  # wait for the header: training starts right after it
            line = proc.stderr.readline()
            lines.append(line)
            if line.startswith("settings:") or not line:
                break
        time.sleep(4.0)  # past the set-up (first imports, round 0's cost) and into training
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:  # a failed run must not leave a training process behind
            proc.kill()
            proc.wait()
    err = "".join(lines) + stderr
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted") and str(out) in last and "rerun the same command" in last
    assert json.loads(stdout) == {"error": {"message": last, "exit_code": 130}}


def test_warnings_are_one_plain_line(monkeypatch, capsys):
    from secateurs.errors import ConfigError
    from secateurs.experiments import prune_study
    from secateurs.pruning.lockstep import LockstepFallback

    def warn_then_fail(*args, **kwargs):
        warnings.warn("lockstep disabled for net: a reason;\n  running 2 runs one after another",
                      LockstepFallback, stacklevel=2)
        warnings.warn("something from elsewhere", DeprecationWarning, stacklevel=2)
        raise ConfigError("stop here")

    monkeypatch.setattr(prune_study, "run_prune_study", warn_then_fail)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        assert main(["prune", "--model", "model-a:widths=4", "--json",
                     "--out", "unused-folder"]) == 1
    err = capsys.readouterr().err.splitlines()
    warned = [line for line in err if line.startswith("warning:")]
    assert warned[0] == ("warning: lockstep disabled for net: a reason; running 2 runs one after "
                         "another")
    assert warned[1] == "warning: something from elsewhere [DeprecationWarning, builtins]"
    assert not any(".py" in line for line in err), err
    assert err[-1] == "error: stop here"


def test_device_defaults_to_auto_which_gives_the_cpu_s_results_here(tmp_path, capsys):
    import torch

    from secateurs.io import load_tensors
    from secateurs.training import TrainConfig

    assert TrainConfig().device == "auto"
    if torch.cuda.is_available():
        pytest.skip("auto picks CUDA on this machine; the CPU comparison needs a CPU-only one")
    outs = {}
    for device in ("auto", "cpu"):
        args = ["train", "--model", "model-a:widths=8", "--epochs", "2", "--json",
                "--out", str(tmp_path / device)]
        assert main(args if device == "auto" else [*args, "--device", device]) == 0
        outs[device] = load_tensors(tmp_path / device / "model.safetensors")
    assert "device=auto (cpu)" in capsys.readouterr().err
    assert outs["auto"].keys() == outs["cpu"].keys()
    assert all(torch.equal(outs["auto"][k], outs["cpu"][k]) for k in outs["cpu"])


# -- JSON -------------------------------------------------------------------------------------------
KEY = re.compile(r"^[a-z][a-z0-9_]*$")
NUMBER_IN_A_STRING = re.compile(r"^\s*[-+]?\d+(\.\d+)?(\s*\(.*\))?\s*%?$|^\{[\d, ]*\}$")


def assert_plain_json(obj, where="$", data_keys=()):
    """Numbers are numbers, lists are lists, keys are snake_case (except in maps keyed by data:
    ``data_keys`` names them)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if where.rsplit(".", 1)[-1] not in data_keys:
                assert KEY.match(k), f"{where}: key {k!r} is not snake_case"
            assert_plain_json(v, f"{where}.{k}", data_keys)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            assert_plain_json(v, f"{where}[{i}]", data_keys)
    elif isinstance(obj, str):
        assert not NUMBER_IN_A_STRING.match(obj), f"{where}: number packed in a string {obj!r}"


def test_jsonable_keeps_numbers_and_lists_and_refuses_the_unknown(tmp_path):
    value = {"a": np.float32(0.5), "b": np.int64(3), "c": (1, 2), "d": np.array([[1, 2]]),
             "e": float("nan"), "f": tmp_path, "g": options.Reset("random"), "h": {3: True}}
    assert options.jsonable(value) == {"a": 0.5, "b": 3, "c": [1, 2], "d": [[1, 2]], "e": None,
                                       "f": str(tmp_path), "g": "random", "h": {"3": True}}
    with pytest.raises(TypeError, match="object"):
        options.jsonable({"x": object()})


def test_prune_train_export_datasets_models_json_is_plain(tmp_path, capsys):
    study = tmp_path / "study"
    prune = ["prune", "--model", "model-a:widths=8-6", "--metric", "minimum", "--metric",
             "random", "--epochs", "1", "--batch-size", "128", "--fraction", "0.4", "--until",
             "0.4", "--out", str(study), "--json"]
    assert main(prune) == 0
    got = json.loads(capsys.readouterr().out)
    assert_plain_json(got)
    (row, _) = got["summary"]
    assert set(row) == {"metric", "seeds", "rounds", "unpruned", "near_50", "near_25", "final"}
    assert row["unpruned"]["remaining"] == 1.0 and isinstance(row["final"]["test_acc"], float)
    assert json.loads((study / "summary.json").read_text()) == got["summary"]
    for argv in (["train", "--model", "model-a:widths=8", "--epochs", "1",
                  "--out", str(tmp_path / "t"), "--json"],
                 ["export", str(study), "--metric", "minimum", "--round", "1",
                  "--out", str(tmp_path / "e"), "--json"],
                 ["datasets", "--json"], ["models", "--json"]):
        assert main(argv) == 0, argv
        got = json.loads(capsys.readouterr().out)
        assert isinstance(got, dict), argv  # one object per command, never a bare list
        assert_plain_json(got, data_keys=("options",))


def test_run_json_gives_teams_as_lists():
    rows = [{"metric": "minimum", "scope": "global", "level": 0.2, "pruned": 0.2,
             "focal_metric": "gd", "pool_test_acc": 0.9, "team": "{0,2}",
             "team_names": "fc40 fc24", "size": 2, "cost": 0.4, "team_test_acc": 0.93},
            {"metric": "minimum", "scope": "global", "level": 0.5, "pruned": 0.5,
             "focal_metric": "kw", "pool_test_acc": 0.9, "team": "", "size": 0, "cost": None}]
    results = {"table": rows, "seconds": 12.5,
               "mixed": {"front": [{"team": ["fc40-p0", "fc24-p0"], "size": 2,
                                    "mac_fraction": 0.4, "val_acc": 0.9, "test_acc": 0.91}]}}
    got = options.jsonable(json_summary(results, "runs/x"))
    assert_plain_json(got)
    assert got["table"][0]["team"] == [0, 2] and got["table"][0]["team_names"] == ["fc40", "fc24"]
    assert got["table"][1]["team"] == [] and got["table"][1]["team_names"] == []
    assert got["front"][0]["team"] == ["fc40-p0", "fc24-p0"] and got["seconds"] == 12.5


# -- tables -----------------------------------------------------------------------------------------
HEAD = ["metric", "pruned (level / actual)", "focal", "team", "cost (size/M)",
        "MACs / unpruned pool", "pool acc %", "team acc %", "difference"]
ROWS = [["minimum_layer", "50% / 49.3%", "GD", "{0,2,3} fc40 fc24 fc100", "60%", "47.1%",
         "96.94", "97.22", "+0.28"],
        ["unpruned", "0% / 0.0%", "KW", "-", "-", "-", "96.11", "-", "-"]]


@pytest.mark.parametrize("width", [60, 80, 120, 200])
@pytest.mark.parametrize("table", ["results", "study"])
def test_tables_on_a_terminal_fit_its_width_and_keep_every_word(width, table):
    head, rows = (HEAD, ROWS) if table == "results" else (STUDY_HEAD, STUDY_ROWS)
    buf = io.StringIO()
    term = Console(file=buf, force_terminal=True, width=width, color_system=None)
    options.print_table("A results table", head, rows, right=(1, 2), out=term)
    text = buf.getvalue()
    assert "…" not in text and "..." not in text
    assert max(len(line) for line in text.splitlines()) <= width
    words = set(text.replace(": ", " ").split())  # narrow: one block of "header: value" per row
    for cell in [*head, *(c for row in rows for c in row)]:
        assert set(cell.split()) <= words, f"{cell!r} was cut at width {width}"


STUDY_HEAD = ["metric", "seeds", "rounds", "unpruned", "near 50% left", "near 25% left", "final"]
STUDY_ROWS = [["minimum_layer", "2", "12", "0.7306", "0.5583 at 0.45", "0.3917 at 0.25",
               "0.2153 at 0.10"], ["random", "2", "13", "0.7306", "0.4444 at 0.53",
                                   "0.2056 at 0.25", "0.1014 at 0.10"]]


def test_tables_in_a_pipe_are_plain_text_with_every_cell_whole():
    buf = io.StringIO()
    piped = Console(file=buf, width=80, force_terminal=False)
    options.print_table("A results table", HEAD, ROWS, out=piped)
    lines = buf.getvalue().splitlines()
    assert lines[0] == "A results table" and "…" not in buf.getvalue()
    for i, row in enumerate(ROWS):
        body = lines[3 + i]
        starts = [lines[1].index(h) for h in HEAD]  # cells start under their header
        assert [body[s:].split("  ")[0].strip() for s in starts] == row


def test_prune_table_through_a_pipe_at_80_columns(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "secateurs", "prune", "--model", "model-a:widths=8-6", "--metric",
         "minimum_layer", "--metric", "random_layer", "--epochs", "1", "--batch-size", "128",
         "--fraction", "0.4", "--until", "0.4", "--out", str(tmp_path / "s")],
        env=ENV, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "…" not in r.stdout
    table = [line for line in r.stdout.splitlines() if line.startswith(("minimum_layer ",
                                                                          "random_layer "))]
    assert len(table) == 2 and all(re.search(r"\d\.\d{4} at \d\.\d\d$", t) for t in table)


def test_run_tables_in_text_show_every_row(capsys):
    from secateurs.cli.run_cmds import _show

    row = {"metric": "minimum_layer", "scope": "layer", "level": 0.5, "pruned": 0.493,
           "focal_metric": "gd", "pool_val_acc": 0.97, "pool_test_acc": 0.9694,
           "best_single_test_acc": 0.95, "team": [0, 2], "team_names": ["fc40", "fc24"], "size": 2,
           "cost": 0.4, "mac_fraction": 0.31, "team_val_acc": 0.97, "team_test_acc": 0.9722,
           "difference": 0.0028}
    empty = {**row, "metric": "minimum", "scope": "global", "focal_metric": "kw", "team": [],
             "team_names": [], "size": 0, "cost": None, "mac_fraction": None,
             "team_val_acc": None, "team_test_acc": None, "difference": None}
    _show({"table": [row, empty], "seconds": 3.0}, "runs/x", json_out=False)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("Global metrics") and any(line.startswith("Layer-wise") for line in lines)
    assert any(line.startswith("minimum_layer ") and "{0,2}" in line and "+0.28" in line
               for line in lines)
    assert "report: runs/x/report.md" in out and "…" not in out
