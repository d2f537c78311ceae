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


def test_a_selection_without_a_team_says_why_in_text_as_in_json(tmp_path, capsys):
    probs, labels = random_pool(3, 1, 50, 3, copies=False)  # three copies of one model: every
    folder = save_predictions(tmp_path / "same", list("abc"), np.repeat(probs, 3, axis=0), labels)
    cmd = ["select", "--predictions", str(folder), "--method", "mean-threshold"]  # team ties
    assert main([*cmd, "--json"]) == 0
    result = _json(capsys)["results"][0]
    assert result["recommended"] is None and result["notes"]
    assert main(cmd) == 0
    out = capsys.readouterr().out
    assert "recommended" not in out
    for note in result["notes"]:
        assert f"note: {note}" in " ".join(out.split())


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
        (["select"], "Missing option '--predictions'"),
        (["select", "--predictions", "{missing}"], "does not exist"),
        (["select", "--predictions", "{dir}", "--metric", "zz"], "unknown diversity metric 'zz'"),
        (["select", "--predictions", "{dir}", "--beta", "1"], "beta must be in [0, 1)"),
        (["select", "--predictions", "{dir}", "--max-size", "9"], "max size must be an integer"),
        (["select", "--predictions", "{dir}", "--method", "nosuch"], "unknown selection method"),
        (["select", "--predictions", "{dir}", "--method", "greedy"], "needs a team size"),
        (["select", "--predictions", "{dir}", "--vote", "avg"], "unknown voting rule"),
        (["select", "--predictions", "{dir}", "--method", "exhaustive", "--max-teams", "10"],
         "--max-size"),
        (["diversity", "--predictions", "{dir}"], "Missing option '--team'"),
        (["select", "--predictions", "{dir}", "--seed", "-1"], "'--seed'"),
        (["select", "--predictions", "{dir}", "--max-teams", "0"], "'--max-teams'"),
        (["select", "--predictions", "{dir}", "--resample", "--hq-variant", "bounded"],
         "resample (--resample) is not available with bounded HQ (--hq-variant bounded)"),
        (["diversity", "--predictions", "{dir}", "--team", "alpha,nobody"], "unknown model 'nobody'"),
        (["diversity", "--predictions", "{dir}", "--team", "alpha"], "at least 2 models"),
        (["diversity", "--predictions", "{dir}", "--team", "alpha,alpha"], "names a model twice"),
    ],
)
def test_user_errors_exit_non_zero_with_one_line(pool_dir, tmp_path, capsys, args, message):
    args = [a.format(dir=pool_dir, missing=tmp_path / "missing") for a in args]
    code = main(args)
    assert code != 0
    if "Missing option" in message or message.startswith("'--"):
        assert code == 2  # docs/cli.md: a bad or missing option exits 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert message in err
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "Traceback" not in captured.out + captured.err


def test_select_json_shape_baselines_consensus_and_compare(pool_dir, capsys):
    pool = load_predictions(pool_dir)
    assert main(["select", "--predictions", str(pool_dir), "--method", "greedy",
                 "--criterion", "reduced-error", "--size", "3", "--json"]) == 0
    out = _json(capsys)
    assert out["models"] == list(pool.names) and out["consensus"] is None
    (r,) = out["results"]
    assert r["method"] == "greedy" and r["criterion"] == "reduced-error"
    assert r["recommended"]["size"] == 3
    assert isinstance(r["recommended"]["selection_accuracy"], float)
    assert all(isinstance(i, int) for i in r["recommended"]["indices"])
    assert r["recommended"]["names"] == [pool.names[i] for i in r["recommended"]["indices"]]

    assert main(["select", "--predictions", str(pool_dir), "--metric", "gd,kw,ck", "--consensus",
                 "--quorum", "2", "--compare", "--json"]) == 0
    out = _json(capsys)
    assert [r["metric"] for r in out["results"]] == ["gd", "kw", "ck"]
    c = out["consensus"]
    assert c["method"] == "consensus" and c["quorum"] == 2 and "per_metric" not in c
    cmp = out["comparison"]
    k = c["recommended"]["size"]
    assert cmp["size"] == k and cmp["has_test"] is True and cmp["num_models"] == 5
    methods = [(row["method"], row["criterion"]) for row in cmp["rows"]]
    assert methods[0] == ("consensus", None)
    assert ("greedy", "drep") in methods and ("cluster", "accuracy") in methods
    assert ("rank", "margin-diversity") in methods and ("random", "uniform") in methods
    for row in cmp["rows"]:
        assert row["size"] == k and row["size_fraction"] == pytest.approx(k / 5)
        assert isinstance(row["test_accuracy"], float) and row["macs_fraction"] is None
        assert row["params_fraction"] > 0
        assert row["names"] == [pool.names[i] for i in row["indices"]]

    assert main(["select", "--predictions", str(pool_dir), "--hq-variant", "bounded",
                 "--width", "3", "--compare"]) == 0
    text = capsys.readouterr().out
    assert "bounded HQ (W=3)" in text and "dropped" in text and "Comparison at team size" in text
    assert "greedy (reduced-error)" in text


@pytest.mark.parametrize("args, message", [
    (["--consensus", "--method", "greedy"], "--consensus combines HQ runs"),
    (["--quorum", "2"], "--quorum is only used with --consensus"),
    (["--consensus", "--metric", "gd,kw", "--quorum", "3"], "quorum must be an integer from 1 to 2"),
    (["--method", "rank", "--criterion", "drep", "--size", "2"], "unknown criterion 'drep'"),
    (["--hq-variant", "beam"], "unknown HQ variant 'beam'"),
    (["--hq-variant", "bounded", "--width", "0"], "width must be an integer >= 1"),
])
def test_select_new_option_errors(pool_dir, capsys, args, message):
    assert main(["select", "--predictions", str(pool_dir), *args]) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_manifest_gives_the_model_order(tmp_path, capsys):
    probs, labels = random_pool(9, 4, 50, 3, copies=False)
    names = ["zeta", "alpha", "mid", "beta"]  # config order, not sorted
    save_predictions(tmp_path / "p", names, probs, labels)
    pool = load_predictions(tmp_path / "p")
    assert pool.names == tuple(names)
    np.testing.assert_array_equal(pool.selection.probs[0], probs[0])
    assert main(["select", "--predictions", str(tmp_path / "p"), "--json"]) == 0
    out = _json(capsys)
    assert out["models"] == names
    rec = out["results"][0]["recommended"]
    assert rec["names"] == [names[i] for i in rec["indices"]]
    (tmp_path / "p" / "pool.json").unlink()
    assert load_predictions(tmp_path / "p").names == tuple(sorted(names))


@pytest.mark.parametrize("terminal", [False, True])
def test_select_tables_lose_nothing_at_80_columns_or_in_a_pipe(pool_dir, capsys, monkeypatch,
                                                                terminal):
    """No cell is cut ("…") and every member name stays whole, on an 80-column terminal and when
    piped (select used to force 120 columns and wrap into garbage)."""
    import io

    from rich.console import Console

    import secateurs.cli.options as options

    buf = io.StringIO()
    fake = Console(file=buf, width=80, force_terminal=terminal, color_system=None)
    monkeypatch.setattr(options, "console", fake)
    assert main(["select", "--predictions", str(pool_dir), "--metric", "gd", "--metric", "kw",
                 "--consensus", "--compare"]) == 0
    out = buf.getvalue() + capsys.readouterr().out
    assert "…" not in out and "recommended" in out
    if terminal:
        assert max(len(line) for line in out.splitlines()) <= 80
    rec = select_team(load_predictions(pool_dir), "hq", "gd").recommended
    if terminal:  # cells wrap at spaces only: every name stays whole
        assert all(n in out for n in rec.names)
    else:  # a pipe: one row a line
        assert any(all(n in line for n in rec.names) for line in out.splitlines())


def test_a_model_file_in_another_format_is_said_not_silently_skipped(pool_dir, capsys):
    np.savez(pool_dir / "zeta.npz", probs=np.full((120, 4), 0.25))
    assert main(["select", "--predictions", str(pool_dir), "--json"]) == 0
    err = capsys.readouterr().err
    assert "zeta.npz ignored; each model is one file ending in lower-case .npy" in err
    assert err.count("\n") == 1


def test_a_metric_list_that_names_nothing_is_refused(pool_dir, capsys):
    assert main(["select", "--predictions", str(pool_dir), "--metric", ","]) == 1
    assert "--metric ',' names nothing" in capsys.readouterr().err
