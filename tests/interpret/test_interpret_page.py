"""`secateurs interpret`: widths per round against the drop record, kept vs dropped scores, unit
images, the first layer, the page and its files, and user errors."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from secateurs.cli.main import main
from secateurs.errors import ConfigError, DataError
from secateurs.models import build_model
from secateurs.pruning import DropNetResult
from secateurs.pruning.masks import MaskedNetwork
from secateurs.reporting.interpret import (
    first_layer,
    interpret_study,
    score_rows,
    score_summary,
    unit_images,
    widths_by_round,
)

pytestmark = pytest.mark.usefixtures("one_thread")

PRUNE = ["prune", "--dataset", "digits", "--epochs", "1", "--batch-size", "128", "--until",
         "0.4", "--fraction", "0.3", "--json"]


def _result(**kw) -> DropNetResult:
    base = dict(metric="minimum", seed=0, config={}, layers=["a", "b"], widths={"a": 4, "b": 3},
                rounds=[{}, {}, {}], dropped=[], stop_reason=None)
    return DropNetResult(**{**base, **kw})


def test_widths_by_round_by_hand():
    run = _result(dropped=[{"layer": "a", "index": 1, "round": 1},
                           {"layer": "b", "index": 0, "round": 1},
                           {"layer": "a", "index": 3, "round": 2}])
    assert widths_by_round(run) == [{"a": 4, "b": 3}, {"a": 3, "b": 2}, {"a": 2, "b": 2}]


def test_scores_are_split_into_kept_and_dropped_by_the_next_round():
    run = _result(
        dropped=[{"layer": "a", "index": 1, "round": 1}, {"layer": "a", "index": 0, "round": 2},
                 {"layer": "b", "index": 2, "round": 2}],
        scores={0: {"a": [0.2, 0.1, 0.5, 0.9], "b": [0.6, 0.7, 0.3]},
                1: {"a": [0.25, 0.0, 0.4, 0.8], "b": [0.45, 0.5, 0.05]}},
    )
    rows = score_rows(run)
    r0 = {(r["layer"], r["unit"]): r["dropped"] for r in rows if r["round"] == 0}
    assert r0 == {("a", 0): False, ("a", 1): True, ("a", 2): False, ("a", 3): False,
                  ("b", 0): False, ("b", 1): False, ("b", 2): False}
    r1 = {(r["layer"], r["unit"]): r["dropped"] for r in rows if r["round"] == 1}
    assert ("a", 1) not in r1  # dropped before round 1: not alive, not drawn
    assert r1[("a", 0)] and r1[("b", 2)] and not r1[("a", 2)]
    (s0, s1) = score_summary(rows, "global")
    assert (s0["kept"], s0["dropped"]) == (6, 1) and s0["dropped_max"] == 0.1
    assert s0["separated"] and s0["kept_min"] == 0.2
    assert s1["dropped"] == 2 and s1["dropped_mean"] == pytest.approx(0.15)
    assert s1["separated"]  # 0.25 and 0.05 <= 0.4, 0.8, 0.45, 0.5
    run.scores[1]["b"][2] = 0.9  # now a dropped unit outscores kept ones of both layers
    assert not score_summary(score_rows(run), "global")[1]["separated"]
    # per layer: a dropped 0.25 <= kept 0.4, 0.8; b dropped 0.9 > kept 0.45: not separated
    assert not score_summary(score_rows(run), "layer")[1]["separated"]
    run.scores[1]["b"][2] = 0.01
    run.scores[1]["a"][0] = 0.6  # above a's kept 0.4
    assert score_summary(score_rows(run), "global")[1]["separated"] is False
    assert score_summary(score_rows(run), "layer")[1]["separated"] is False
    run.scores[1]["a"][2] = 0.7  # a: 0.6 <= 0.7, 0.8; b: 0.01 <= 0.45, 0.5; but 0.6 > b's 0.45
    assert score_summary(score_rows(run), "layer")[1]["separated"] is True
    assert score_summary(score_rows(run), "global")[1]["separated"] is False


def test_unit_images_are_the_incoming_weights_in_the_inputs_shape():
    w = torch.randn(5, 3 * 4 * 4)
    imgs = unit_images(w, (3, 4, 4))
    assert imgs.shape == (5, 4, 4, 3)
    assert float(imgs.min()) == 0.0 and float(imgs.max()) == 1.0
    j, c, y, x = 2, 1, 3, 0
    lo, hi = w[j].min(), w[j].max()
    assert torch.isclose(imgs[j, y, x, c], (w[j, c * 16 + y * 4 + x] - lo) / (hi - lo))
    gray = unit_images(torch.randn(4, 64), (1, 8, 8))
    assert gray.shape == (4, 8, 8)
    filters = torch.randn(6, 1, 3, 3)
    assert torch.equal(unit_images(filters, (1, 8, 8)), filters[:, 0])


class _Head(nn.Module):
    """The first Linear is not prunable."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(64, 5)
        self.b = nn.Linear(5, 4)
        self.c = nn.Linear(4, 10)
        self.prunable_layers = ("b",)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x.flatten(1))))))


def test_first_layer_is_the_prunable_layer_that_reads_the_input():
    x = torch.zeros(2, 1, 8, 8)
    assert first_layer(MaskedNetwork(build_model("model-a:widths=6-5", (1, 8, 8), 10), x)) == "net.1"
    assert first_layer(MaskedNetwork(build_model("model-b:widths=2-3", (1, 8, 8), 10), x)) == (
        "features.0")
    assert first_layer(MaskedNetwork(_Head(), x)) is None


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("interp") / "study"
    assert main([*PRUNE, "--model", "model-a:widths=8-6", "--metric", "minimum", "--metric",
                 "random", "--metric", "maximum_layer", "--seeds", "2", "--out", str(out)]) == 0
    return out


def test_interpret_writes_the_page_and_its_figures(study):
    result = interpret_study(study)
    out = study / "interpret"
    assert result.out == out and result.metric == "minimum" and result.seed == 0
    for name in ("interpret.md", "interpret.json", "widths.csv", "widths.png", "scores.csv",
                 "scores.png", "scores_by_round.csv", "first_layer_kept.png",
                 "first_layer_dropped.png", "input_paths.png", "input_paths.csv"):
        assert (out / name).is_file(), name
    page = (out / "interpret.md").read_text()
    for fig in result.figures:
        assert f"]({fig})" in page
    assert "Metrics whose scores are all equal (nothing to draw): random" in page
    summary = json.loads((out / "interpret.json").read_text())
    rounds = json.loads((study / "rounds.json").read_text())
    last = max(r["round"] for r in rounds if r["metric"] == "minimum" and r["seed"] == 0)
    final = next(r for r in rounds if r["metric"] == "minimum" and r["seed"] == 0
                 and r["round"] == last)
    assert summary["round"] == last and summary["kept"] == final["widths"]["net.1"]
    assert summary["kept"] + summary["dropped"] == 8
    assert summary["live_pixels"] == summary["pixels"] == 64


def test_widths_csv_agrees_with_the_recorded_widths(study):
    import csv

    interpret_study(study, study / "again")
    with open(study / "again" / "widths.csv") as f:
        got = {(r["metric"], int(r["seed"]), int(r["round"])): (int(r["net.1"]), int(r["net.3"]))
               for r in csv.DictReader(f)}
    rounds = json.loads((study / "rounds.json").read_text())
    assert len(got) == len(rounds)
    for r in rounds:
        assert got[(r["metric"], r["seed"], r["round"])] == (r["widths"]["net.1"],
                                                              r["widths"]["net.3"])


def test_interpret_a_chosen_run_and_round(study):
    result = interpret_study(study, study / "r1", metric="maximum_layer", seed=1, round_=1)
    assert (result.metric, result.seed, result.round) == ("maximum_layer", 1, 1)
    run = json.loads((study / "runs" / "maximum_layer-seed1" / "run.json").read_text())
    assert result.summary["kept"] == run["rounds"][1]["widths"]["net.1"]


def test_interpret_a_conv_study_draws_filters(tmp_path):
    out = tmp_path / "conv"
    assert main([*PRUNE, "--model", "model-b:widths=4-3", "--metric", "minimum", "--out",
                 str(out)]) == 0
    result = interpret_study(out)
    assert result.summary["first_layer"] == "features.0"
    assert "filters" in (out / "interpret" / "interpret.md").read_text()


def test_a_model_the_path_count_cannot_follow_still_gets_its_page(tmp_path, capsys):
    out = tmp_path / "lstm"
    assert main([*PRUNE, "--model", "lstm-a", "--metric", "minimum", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["interpret", str(out), "--json"]) == 0  # the LSTM's permute: no path count
    summary = json.loads(capsys.readouterr().out)
    assert summary["input_paths"] is None and "widths.png" in summary["figures"]
    page = (out / "interpret" / "interpret.md").read_text()
    assert "Not drawn: cannot follow input paths through the method 'permute'" in page


def test_python_errors(study, tmp_path):
    with pytest.raises(DataError, match="is not a DropNet study folder"):
        interpret_study(tmp_path)
    with pytest.raises(ConfigError, match=r"--metric 'apoz' is not in this study"):
        interpret_study(study, metric="apoz")
    with pytest.raises(ConfigError, match=r"--seed 7 is not in this study; it has \[0, 1\]"):
        interpret_study(study, seed=7)
    with pytest.raises(ConfigError, match=r"--round 99 does not exist; rounds are 0\.\."):
        interpret_study(study, round_=99)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        interpret_study(study, tmp_path / "file")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--metric", "apoz"], "error: --metric 'apoz' is not in this study"),
        (["--round", "-1"], "error: --round -1 does not exist"),
        (["--seed", "5"], "error: --seed 5 is not in this study"),
    ],
)
def test_cli_errors_are_one_line(study, capsys, args, message):
    assert main(["interpret", str(study), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_cli_not_a_study_and_json(study, tmp_path, capsys):
    assert main(["interpret", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith(f"error: {tmp_path} is not a DropNet study folder")
    assert main(["interpret", str(study), "--out", str(tmp_path / "page"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["out"] == str(tmp_path / "page") and got["metric"] == "minimum"
    assert isinstance(got["live_pixels"], int) and "widths.png" in got["figures"]
