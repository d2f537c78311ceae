"""``secateurs select`` and ``secateurs diversity`` through the real entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ens_slow import random_pool

from secateurs.cli.main import main
from secateurs.ensembles import (
    METRICS,
    load_predictions,
    save_predictions,
    select_team,
    team_diversity,
    team_focal_diversity,
)


@pytest.fixture
def pool_dir(tmp_path):
    probs, labels = random_pool(7, 5, 120, 4, copies=False)
    tp, tl = random_pool(8, 5, 60, 4, copies=False)
    names = ["alpha", "beta", "gamma", "delta", "eps"]
    costs = {n: {"params": 100 * (i + 1)} for i, n in enumerate(names)}
    return save_predictions(tmp_path / "preds", names, probs, labels, tp, tl, costs=costs)


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_select_json_matches_the_python_api(pool_dir, capsys):
    code = main(["select", "--predictions", str(pool_dir), "--metric", "gd", "--metric", "ck,kw",
                 "--beta", "0.2", "--max-size", "4", "--json"])
    assert code == 0
    out = _json(capsys)
    assert [r["metric"] for r in out["results"]] == ["gd", "ck", "kw"]
    pool = load_predictions(pool_dir)
    for r in out["results"]:
        api = select_team(pool, "hq", r["metric"], beta=0.2, max_size=4)
        want = api.to_dict()
        assert r["recommended"] == want["recommended"]
        assert r["levels"] == want["levels"]
        assert r["rule"] == api.rule
        assert r["recommended"]["cost"]["params_fraction"] > 0


@pytest.mark.parametrize("method", ["exhaustive", "mean-threshold", "kmeans"])
def test_select_other_methods_and_votes(pool_dir, capsys, method):
    assert main(["select", "--predictions", str(pool_dir), "--method", method,
                 "--vote", "plurality", "--no-focal", "--json"]) == 0
    r = _json(capsys)["results"][0]
    assert r["method"] == method and r["vote"] == "plurality" and r["focal"] is False
    assert r["recommended"]["names"]


def test_select_human_output_is_a_table_with_the_rule(pool_dir, capsys):
    assert main(["select", "--predictions", str(pool_dir), "--metric", "bd"]) == 0
    out = capsys.readouterr().out
    pool = load_predictions(pool_dir)
    rec = select_team(pool, "hq", "bd").recommended
    assert "recommended" in out and "whole pool" in out and "best single" in out
    assert "Rule: Among the teams HQ kept" in out
    assert f"{100 * rec.selection_accuracy:.2f}" in out
    assert "Teams per size" in out


def test_select_with_logits(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 30)
    np.save(tmp_path / "labels.npy", labels)
    for name in ("a", "b", "c"):
        np.save(tmp_path / f"{name}.npy", rng.normal(scale=3, size=(30, 3)))
    assert main(["select", "--predictions", str(tmp_path), "--json"]) == 1
    assert "--logits" in capsys.readouterr().err
    assert main(["select", "--predictions", str(tmp_path), "--logits", "--json"]) == 0
    assert _json(capsys)["results"][0]["pool"]["test_accuracy"] is None


def test_diversity_prints_every_raw_metric(pool_dir, capsys):
    assert main(["diversity", "--predictions", str(pool_dir), "--team", "alpha,gamma,eps",
                 "--json"]) == 0
    out = _json(capsys)
    want = team_diversity(load_predictions(pool_dir), ["alpha", "gamma", "eps"])
    assert set(out["raw"]) == set(METRICS)
    for m in METRICS:
        assert out["raw"][m] == pytest.approx(want[m])
    assert out["score"]["ck"] == pytest.approx(1 - want["ck"])
    assert out["score"]["gd"] == pytest.approx(want["gd"])
    assert "focal_raw" not in out


def test_diversity_focal_gives_each_members_raw_values(pool_dir, capsys):
    assert main(["diversity", "--predictions", str(pool_dir), "--team", "beta,delta",
                 "--focal", "--json"]) == 0
    out = _json(capsys)
    pool = load_predictions(pool_dir)
    want = team_focal_diversity(pool, ["beta", "delta"])
    assert set(out["focal_raw"]) == {"beta", "delta"}
    neg = int((~pool.selection.correct[1]).sum())
    assert out["focal_raw"]["beta"]["negatives"] == neg
    for name in ("beta", "delta"):
        for m in METRICS:
            assert out["focal_raw"][name][m] == pytest.approx(want[name][m])
    assert main(["diversity", "--predictions", str(pool_dir), "--team", "beta,delta",
                 "--focal"]) == 0
    text = capsys.readouterr().out
    assert "Kohavi-Wolpert" in text and "negatives" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["select"], "--predictions DIR is required"),
        (["select", "--predictions", "{missing}"], "does not exist"),
        (["select", "--predictions", "{dir}", "--metric", "zz"], "unknown diversity metric 'zz'"),
        (["select", "--predictions", "{dir}", "--beta", "1"], "beta must be in [0, 1)"),
        (["select", "--predictions", "{dir}", "--max-size", "9"], "max size must be an integer"),
        (["select", "--predictions", "{dir}", "--method", "nosuch"], "unknown selection method"),
        (["select", "--predictions", "{dir}", "--method", "greedy"], "needs a team size"),
        (["select", "--predictions", "{dir}", "--vote", "avg"], "unknown voting rule"),
        (["select", "--predictions", "{dir}", "--method", "exhaustive", "--max-teams", "10"],
         "--max-size"),
        (["diversity", "--predictions", "{dir}"], "--team NAME,NAME,... is required"),
        (["diversity", "--predictions", "{dir}", "--team", "alpha,nobody"], "unknown model 'nobody'"),
        (["diversity", "--predictions", "{dir}", "--team", "alpha"], "at least 2 models"),
        (["diversity", "--predictions", "{dir}", "--team", "alpha,alpha"], "names a model twice"),
    ],
)
def test_user_errors_exit_non_zero_with_one_line(pool_dir, tmp_path, capsys, args, message):
    args = [a.format(dir=pool_dir, missing=tmp_path / "missing") for a in args]
    assert main(args) != 0
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "Traceback" not in captured.out + captured.err
