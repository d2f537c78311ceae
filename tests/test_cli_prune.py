"""`secateurs prune` and `secateurs export`: a study written by the command, a round exported as a
smaller network whose outputs equal that round's masked network (rebuilt here from the files),
and user errors as one line with a non-zero exit code."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from secateurs.cli.main import main
from secateurs.data import load_dataset
from secateurs.io import load_tensors
from secateurs.models import build_model
from secateurs.pruning import MaskedNetwork, load_exported, load_run

PRUNE = ["prune", "--model", "model-a:widths=8-6", "--dataset", "digits", "--fraction", "0.3",
         "--epochs", "1", "--batch-size", "128", "--json"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "study"
    assert main([*PRUNE, "--metric", "minimum", "--metric", "random", "--out", str(out)]) == 0
    return out


def test_prune_writes_a_study_and_a_json_summary(tmp_path, capsys):
    out = tmp_path / "study"
    assert main([*PRUNE, "--metric", "minimum_layer", "--seeds", "2", "--until", "0.5",
                 "--out", str(out)]) == 0
    summary = _json(capsys)
    assert summary["out"] == str(out)
    (row,) = summary["summary"]
    assert row["metric"] == "minimum_layer" and row["seeds"] == 2
    for name in ("rounds.csv", "rounds.json", "dropped.csv", "accuracy.png", "summary.json"):
        assert (out / name).is_file(), name
    rows = json.loads((out / "rounds.json").read_text())
    assert {r["seed"] for r in rows} == {0, 1}
    run = load_run(out / "runs" / "minimum_layer-seed0", weights=False)
    assert run.config["fraction"] == 0.3 and run.config["until"] == 0.5
    assert run.config["train"]["max_epochs"] == 1 and run.config["train"]["batch_size"] == 128
    assert run.rounds[-1]["remaining"] <= 0.5 < run.rounds[-2]["remaining"]


def _round_network(study, metric: str, round_: int) -> nn.Module:
    """The masked network of one round, rebuilt from the run folder's files by hand."""
    run = load_run(study / "runs" / f"{metric}-seed0", weights=False)
    data = load_dataset("digits")
    model = build_model("model-a:widths=8-6", data.input_shape, data.num_classes)
    masked = MaskedNetwork(model, data.x_train[:2])
    masked.load_weight_state_dict(
        load_tensors(study / "runs" / f"{metric}-seed0" / f"round-{round_:03d}.safetensors"))
    masked.set_masks(run.masks_at(round_))
    return masked.eval()


@pytest.mark.parametrize("metric", ["minimum", "random"])
def test_export_round_equals_the_masked_network_of_that_round(study, tmp_path, capsys, metric):
    run = load_run(study / "runs" / f"{metric}-seed0", weights=False)
    k = 2
    out = tmp_path / "export"
    assert main(["export", str(study), "--metric", metric, "--round", str(k), "--out", str(out),
                 "--json"]) == 0
    info = _json(capsys)
    assert info["round"] == k and info["metric"] == metric
    assert info["remaining"] == run.rounds[k]["remaining"]
    assert info["params"] < info["params_before"]
    exported = load_exported(out)
    x = load_dataset("digits").x_test
    with torch.no_grad():
        want = _round_network(study, metric, k)(x)
        got = exported(x)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # physically smaller: the hidden layers have the round's widths
    linears = [m for m in exported.modules() if isinstance(m, nn.Linear)]
    widths = run.rounds[k]["widths"]
    assert [m.out_features for m in linears[:2]] == [widths["net.1"], widths["net.3"]]


def test_export_by_remaining_takes_the_nearest_round(study, tmp_path, capsys):
    run = load_run(study / "runs" / "minimum-seed0", weights=False)
    target = 0.45
    nearest = min(range(len(run.rounds)), key=lambda r: abs(run.rounds[r]["remaining"] - target))
    out = tmp_path / "export"
    assert main(["export", str(study), "--metric", "minimum", "--remaining", str(target),
                 "--out", str(out), "--json"]) == 0
    assert _json(capsys)["round"] == nearest
    x = load_dataset("digits").x_test[:50]
    with torch.no_grad():
        torch.testing.assert_close(load_exported(out)(x),
                                   _round_network(study, "minimum", nearest)(x),
                                   atol=1e-5, rtol=1e-5)


def test_export_to_one_safetensors_file(study, tmp_path, capsys):
    out = tmp_path / "exports" / "minimum-r2.safetensors"
    assert main(["export", str(study), "--metric", "minimum", "--round", "2", "--out", str(out)]) == 0
    assert str(out) in "".join(capsys.readouterr().out.split())  # rich may wrap the path
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]
    x = load_dataset("digits").x_test[:50]
    with torch.no_grad():
        torch.testing.assert_close(load_exported(out)(x), _round_network(study, "minimum", 2)(x),
                                   atol=1e-5, rtol=1e-5)
    taken = tmp_path / "taken.safetensors"
    taken.mkdir()
    assert main(["export", str(study), "--metric", "minimum", "--round", "2", "--out",
                 str(taken)]) != 0
    _one_line_error(capsys, "is a directory")


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1, f"expected a one-line message, got:\n{err}"
    for needle in needles:
        assert needle in err, err
    return err


def test_prune_user_errors_exit_non_zero_with_one_line(tmp_path, capsys):
    out = tmp_path / "bad"
    assert main([*PRUNE, "--metric", "median", "--out", str(out)]) != 0
    _one_line_error(capsys, "unknown metric 'median'")
    for value in ("0", "1.5", "-0.2"):
        args = [a if a != "0.3" else value for a in PRUNE]
        assert main([*args, "--out", str(out)]) != 0
        _one_line_error(capsys, "--fraction", value)
    assert main([*PRUNE, "--reset", "zeros", "--out", str(out)]) != 0
    _one_line_error(capsys, "--reset")
    assert main([*PRUNE, "--kappa", "1.5", "--out", str(out)]) != 0
    _one_line_error(capsys, "--kappa")


def test_a_prune_that_fails_on_a_bad_metric_leaves_no_files(tmp_path, capsys):
    out = tmp_path / "bad"
    assert main([*PRUNE, "--metric", "minimum", "--metric", "median", "--out", str(out)]) != 0
    _one_line_error(capsys, "unknown metric 'median'")
    assert not out.exists() or not any(out.iterdir()), "a failed command left files behind"


def test_export_user_errors_exit_non_zero_with_one_line(study, tmp_path, capsys):
    out = tmp_path / "export"
    n = len(load_run(study / "runs" / "minimum-seed0", weights=False).rounds)
    assert main(["export", str(study), "--metric", "minimum", "--round", "99", "--out",
                 str(out)]) != 0
    _one_line_error(capsys, "round 99", f"0..{n - 1}")
    assert main(["export", str(study), "--round", "1", "--out", str(out)]) != 0  # two metrics
    _one_line_error(capsys, "--metric")
    assert main(["export", str(study), "--metric", "maximum", "--round", "1", "--out",
                 str(out)]) != 0
    _one_line_error(capsys, "maximum")
    assert main(["export", str(tmp_path / "nothing"), "--round", "1", "--out", str(out)]) != 0
    _one_line_error(capsys, "study")
    assert not out.exists()


def test_export_needs_exactly_one_of_round_or_remaining(study, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", str(study), "--metric", "minimum", "--out", str(out)]) != 0
    _one_line_error(capsys, "--round", "--remaining")
    assert main(["export", str(study), "--metric", "minimum", "--round", "1", "--remaining",
                 "0.5", "--out", str(out)]) != 0
    _one_line_error(capsys, "--round", "--remaining")
    assert not out.exists()
