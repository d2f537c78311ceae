"""HQ against a brute-force implementation of its definition, the other selections, the
recommendation rule, and the guarantee that selection never reads the test split."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest
from ens_slow import (
    draw,
    focal_slow,
    hq_slow,
    preds_correct,
    random_pool,
    recommend_slow,
    vote_slow,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from secateurs.ensembles import PredictionPool, diversity_of_teams, select_team
from secateurs.errors import ConfigError

SETTINGS = settings(max_examples=20, deadline=None, derandomize=True)


def _pool(seed, m, n, c, test=True, costs=False):
    probs, labels = random_pool(seed, m, n, c)
    kw = {}
    if test:
        tp, tl = random_pool(seed + 1, m, max(n // 2, 1), c)
        kw = dict(test_probs=tp, test_labels=tl)
    if costs:
        rng = np.random.default_rng(seed)
        kw["costs"] = {f"m{i}": {"params": int(rng.integers(1, 100))} for i in range(m)}
    return PredictionPool.from_arrays([f"m{i}" for i in range(m)], probs, labels, **kw)


def _slow_fns(pool, metric, weighting="rank", focal=True, vote="soft"):
    probs = pool.selection.probs.astype(np.float64)
    labels = pool.selection.labels
    preds, correct = preds_correct(probs, labels)
    acc = [sum(r) / len(labels) for r in correct]
    c = pool.num_classes

    def div_fn(cands):
        if focal:
            return focal_slow(metric, correct, preds, c, cands, acc, weighting)
        from ens_slow import score, team_metric

        return [float(np.round(score(metric, team_metric(metric, correct, preds, c, t)), 12))
                for t in cands]

    def acc_fn(t):
        return vote_slow(probs, labels, t, vote)

    return div_fn, acc_fn


def _levels(result):
    return [(lv.size, lv.candidates, [tuple(t) for t in lv.teams.tolist()]) for lv in result.levels]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1))
def test_hq_matches_brute_force_definition(seed):
    m, n, beta, metric, focal, costs = draw(
        seed, m=(3, 7), n=(8, 50), beta=[0.05, 0.1, 0.2, 0.29, 0.5, 0.7],
        metric=["gd", "kw", "bd", "ck", "qs", "en", "fk", "cc"], focal=[True, True, False],
        costs=[True, False],
    ).values()
    pool = _pool(seed, m, n, 3, test=False, costs=costs)
    max_size = m - 1 if seed % 2 else m
    result = select_team(pool, "hq", metric, beta=beta, max_size=max_size, focal=focal)
    div_fn, acc_fn = _slow_fns(pool, metric, focal=focal)
    slow = hq_slow(m, beta, max_size, div_fn, acc_fn)
    assert [(s, len(cands), kept) for s, cands, _, kept in slow] == _levels(result)
    assert [len(p) for _, _, p, _ in slow] == [lv.pruned for lv in result.levels]
    pool_acc = vote_slow(pool.selection.probs, pool.selection.labels, tuple(range(m)))
    assert result.pool.selection_accuracy == pytest.approx(pool_acc)

    def cost_fn(t):
        return sum(pool.costs["params"][list(t)]) if costs else 0

    want = recommend_slow([kept for *_, kept in slow], acc_fn, pool_acc, cost_fn)
    assert result.recommended.indices == want
    assert result.recommended.selection_accuracy == pytest.approx(acc_fn(want))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_hq_with_beta_zero_keeps_every_team(seed):
    m, n = draw(seed, m=(2, 8), n=(1, 30)).values()
    pool = _pool(seed, m, n, 3, test=False)
    result = select_team(pool, "hq", "gd", beta=0.0, max_size=m)
    assert [lv.size for lv in result.levels] == list(range(2, m + 1))
    for lv in result.levels:
        assert [tuple(t) for t in lv.teams.tolist()] == list(combinations(range(m), lv.size))
        assert lv.pruned == 0 and lv.candidates == lv.kept


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), beta=st.floats(0.05, 0.6))
def test_no_kept_team_contains_a_pruned_team(seed, beta):
    m, metric = draw(seed, m=(4, 10), metric=["gd", "ck", "bd", "kw", "en"]).values()
    pool = _pool(seed, m, 40, 4, test=False)
    result = select_team(pool, "hq", metric, beta=beta, max_size=m)
    pruned_sets = []
    seen = [set(range(m))]  # kept teams of the previous size, as masks of members
    prev_kept = {(i,) for i in range(m)}
    for lv in result.levels:
        kept = {tuple(t) for t in lv.teams.tolist()}
        # candidates = teams whose every sub-team one smaller was kept; the rest were pruned
        cands = {t for t in combinations(range(m), lv.size)
                 if all(tuple(x for x in t if x != r) in prev_kept for r in t)}
        assert len(cands) == lv.candidates
        assert kept <= cands
        pruned_sets += [set(t) for t in cands - kept]
        for t in kept:
            assert not any(p <= set(t) for p in pruned_sets), (t, pruned_sets)
        prev_kept = kept
        seen.append(kept)
    assert len(seen) >= 2


def test_ties_are_broken_by_lower_accuracy_then_team_index():
    # Four identical copies of one model: every team has the same diversity, and every team of a
    # size has the same accuracy, so pruning follows team index order.
    probs, labels = random_pool(11, 1, 50, 3, copies=False)
    pool = PredictionPool.from_arrays(list("abcd"), np.repeat(probs, 4, axis=0), labels)
    result = select_team(pool, "hq", "gd", beta=0.5, max_size=3)
    lv2 = result.levels[0]
    assert lv2.pruned == 3
    assert [tuple(t) for t in lv2.teams.tolist()] == [(1, 2), (1, 3), (2, 3)]  # (0,1),(0,2),(0,3) go
    assert result.levels[1].candidates == 1  # only (1, 2, 3) contains no pruned pair

    # Same diversity everywhere but different accuracies: the less accurate team goes first.
    probs, labels = random_pool(12, 3, 60, 3, copies=False)
    pool = PredictionPool.from_arrays(list("abc"), probs, labels)
    one = select_team(pool, "hq", "gd", beta=0.34, max_size=2, focal=False)
    pairs = list(combinations(range(3), 2))
    div = diversity_of_teams(pool, pairs, "gd", focal=False)
    acc = [vote_slow(probs, labels, t) for t in pairs]
    worst = min(range(3), key=lambda k: (div[k], acc[k], pairs[k]))
    assert pairs[worst] not in [tuple(t) for t in one.levels[0].teams.tolist()]


def test_selection_never_reads_the_test_split():
    clean = _pool(21, 7, 200, 5)
    rng = np.random.default_rng(0)
    garbage = rng.dirichlet(np.ones(5), size=(7, clean.test.num_samples))
    poisoned = PredictionPool.from_arrays(
        clean.names, clean.selection.probs, clean.selection.labels,
        garbage, rng.permutation(clean.test.labels),
    )
    no_test = PredictionPool.from_arrays(clean.names, clean.selection.probs, clean.selection.labels)
    for method in ("hq", "exhaustive", "mean-threshold", "kmeans"):
        results = [select_team(p, method, "gd", beta=0.2) for p in (clean, poisoned, no_test)]
        teams = {r.recommended.indices for r in results}
        assert len(teams) == 1, method
        assert all(_levels(r) == _levels(results[0]) for r in results)
        assert results[2].recommended.test_accuracy is None
    # NaN in the test split, planted after validation: selection is unchanged, only the report.
    nan_pool = PredictionPool.from_arrays(clean.names, clean.selection.probs,
                                          clean.selection.labels, clean.test.probs.copy(),
                                          clean.test.labels)
    nan_pool.test.probs[:] = np.nan
    r = select_team(nan_pool, "hq", "kw")
    assert r.recommended.indices == select_team(clean, "hq", "kw").recommended.indices


def test_exhaustive_evaluates_every_team_and_recommends_by_the_rule():
    pool = _pool(3, 6, 60, 4, costs=True)
    result = select_team(pool, "exhaustive", "gd", max_size=6)
    _, acc_fn = _slow_fns(pool, "gd")
    every = [list(combinations(range(6), s)) for s in range(2, 7)]
    assert [[tuple(t) for t in lv.teams.tolist()] for lv in result.levels] == every
    for lv, teams in zip(result.levels, every, strict=True):
        np.testing.assert_allclose(lv.accuracy, [acc_fn(t) for t in teams])
    pool_acc = acc_fn(tuple(range(6)))
    want = recommend_slow(every, acc_fn, pool_acc, lambda t: sum(pool.costs["params"][list(t)]))
    assert result.recommended.indices == want
    assert result.recommended.selection_accuracy >= pool_acc  # the whole pool is a candidate
    # HQ's recommendation is one of the teams exhaustive search saw, never better than its best
    hq = select_team(pool, "hq", "gd", beta=0.3, max_size=6)
    best = max(lv.stats.max for lv in result.levels)
    assert hq.recommended.selection_accuracy <= best


def test_mean_threshold_and_kmeans_select_above_their_threshold():
    pool = _pool(4, 6, 80, 4)
    teams = [t for s in range(2, 6) for t in combinations(range(6), s)]
    div = {}
    for s in range(2, 6):
        group = [t for t in teams if len(t) == s]
        div.update(zip(group, diversity_of_teams(pool, group, "ck"), strict=True))
    mean = np.mean(list(div.values()))
    mt = select_team(pool, "mean-threshold", "ck")
    selected = {tuple(t) for lv in mt.levels for t in lv.teams.tolist()}
    assert selected == {t for t in teams if div[t] > mean}
    km = select_team(pool, "kmeans", "ck")
    km_selected = {tuple(t) for lv in km.levels for t in lv.teams.tolist()}
    assert km_selected and km_selected <= selected  # never looser than the mean threshold
    assert sum(lv.candidates for lv in km.levels) == len(teams)


def test_result_reports_costs_best_single_and_is_json_serialisable():
    pool = _pool(5, 5, 100, 3, costs=True)
    res = select_team(pool, "hq", ["gd", "kw"], beta=0.1, max_size=4)
    assert set(res) == {"gd", "kw"}
    r = res["gd"]
    d = json.loads(json.dumps(r.to_dict()))
    assert d["metric"] == "gd" and d["rule"] == r.rule and "selection split only" in d["rule"]
    rec = d["recommended"]
    params = pool.costs["params"]
    assert rec["cost"]["size_fraction"] == pytest.approx(len(rec["indices"]) / 5)
    assert rec["cost"]["params_fraction"] == pytest.approx(params[rec["indices"]].sum() / params.sum())
    assert rec["names"] == [pool.names[i] for i in rec["indices"]]
    assert rec["test_accuracy"] == pytest.approx(
        vote_slow(pool.test.probs, pool.test.labels, tuple(rec["indices"])))
    best = int(np.argmax(pool.selection.accuracy))
    assert d["best_single"]["indices"] == [best]
    assert d["pool"]["size"] == 5 and d["pool"]["cost"]["params_fraction"] == 1.0
    for lv in d["levels"]:
        assert lv["kept"] == len(lv["teams"]) == len(lv["accuracy"]) == len(lv["diversity"])
        s = lv["stats"]
        if s["count"]:
            assert s["min"] == pytest.approx(min(lv["accuracy"]))
            assert s["max"] == pytest.approx(max(lv["accuracy"]))
            pool_acc = d["pool"]["selection_accuracy"]
            assert s["reach_pool"] == sum(a >= pool_acc for a in lv["accuracy"])
            best_members = [max(pool.selection.accuracy[t]) for t in lv["teams"]]
            assert s["beat_best_member"] == sum(
                a > b for a, b in zip(lv["accuracy"], best_members, strict=True))


def test_infeasible_searches_raise_with_a_suggestion():
    pool = _pool(6, 12, 30, 3, test=False)
    with pytest.raises(ConfigError, match="--max-size"):
        select_team(pool, "exhaustive", "gd", max_teams=500)
    with pytest.raises(ConfigError, match="--max-size"):
        select_team(pool, "hq", "gd", beta=0.0, max_teams=500, variant="exact")
    # "auto" (the default) runs bounded HQ where exact HQ does not fit, and says so
    auto = select_team(pool, "hq", "gd", beta=0.0, max_teams=500)
    assert auto.variant == "bounded" and auto.width == 100
    assert any("bounded HQ (width W=100)" in n for n in auto.notes)
    for bad in (dict(beta=1.0), dict(beta=-0.1), dict(max_size=1), dict(max_size=13),
                dict(method="greedy"), dict(method="nosuch"), dict(metric="xx"), dict(vote="mean"),
                dict(weighting="argsort"), dict(metric=[])):
        with pytest.raises(ConfigError):
            select_team(pool, **bad)


def test_weighted_vote_defaults_to_selection_accuracy():
    pool = _pool(8, 4, 60, 3)
    r = select_team(pool, "exhaustive", "gd", vote="weighted", max_size=4)
    w = pool.selection.accuracy
    for lv in r.levels:
        want = [vote_slow(pool.selection.probs, pool.selection.labels, tuple(t), "weighted", w)
                for t in lv.teams.tolist()]
        np.testing.assert_allclose(lv.accuracy, want)


def test_hq_computes_diversity_and_accuracy_only_for_generated_candidates(monkeypatch):
    from secateurs.ensembles import selection

    seen = {"diversity": 0, "accuracy": 0}
    orig_div, orig_acc = selection._Evaluator.diversity, selection._Evaluator.accuracy

    def count(kind, orig):
        def wrapped(self, members):
            seen[kind] += len(members)
            return orig(self, members)
        return wrapped

    monkeypatch.setattr(selection._Evaluator, "diversity", count("diversity", orig_div))
    monkeypatch.setattr(selection._Evaluator, "accuracy", count("accuracy", orig_acc))
    pool = _pool(9, 12, 200, 5, test=False)
    result = select_team(pool, "hq", "gd", beta=0.3)
    assert result.max_size == 11  # default M - 1
    candidates = sum(lv.candidates for lv in result.levels)
    assert seen["diversity"] == candidates
    assert seen["accuracy"] == candidates
    assert candidates < (2**12 - 12 - 2) / 4  # far fewer than every team of size 2..11


@pytest.mark.parametrize("kwargs,message", [
    (dict(seed=-1), r"seed \(--seed\) must be an integer in \[0, 4294967295\], got -1"),
    (dict(seed=2**32, method="random", size=2), r"got 4294967296"),
    (dict(seed=1.5), r"got 1.5"),
    (dict(max_teams=0), r"max_teams \(--max-teams\) must be an integer of at least 1, got 0"),
    (dict(max_teams=None), r"max_teams .* got None"),
    (dict(focal="no"), r"focal must be True or False, got 'no'"),
    (dict(resample=1), r"resample must be True or False, got 1"),
    (dict(resample=True, variant="bounded"), r"not available with bounded HQ"),
])
def test_out_of_range_arguments_are_refused_before_any_work(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        select_team(_pool(0, 5, 40, 3), **kwargs)


def test_searches_that_hold_focal_statistics_for_every_model_refuse_more_than_the_budget(
        monkeypatch):
    from secateurs.ensembles import selection

    pool = _pool(0, 6, 40, 3)
    monkeypatch.setattr(selection, "EXACT_MEMORY", 6**3 * 8 - 1)  # just below what 6 models need
    for method in ("exhaustive", "mean-threshold", "kmeans"):
        with pytest.raises(ConfigError, match=rf"method '{method}' with focal diversity on 6 "
                                              r"models needs .* use method 'hq'"):
            select_team(pool, method, "gd")
        assert select_team(pool, method, "gd", focal=False).levels  # plain diversity: M x M
    assert select_team(pool, "hq", "gd").variant == "bounded"


def test_consensus_of_one_metric_named_by_a_string_and_an_empty_team():
    from secateurs.ensembles import Consensus, select_consensus, team_accuracy

    pool = _pool(1, 6, 40, 3)
    one = select_consensus(pool, "gd")  # one metric, not the letters g and d
    assert one.metrics == ("gd",)
    assert Consensus(metrics="gd").fit(pool).result_.metrics == ("gd",)
    with pytest.raises(ConfigError, match="empty team"):
        team_accuracy(pool, [])


def test_a_pool_of_two_recommends_the_pair_and_compares_with_the_baselines():
    from secateurs.ensembles.api import compare_selections

    pool = _pool(2, 2, 40, 3)
    for method in ("hq", "exhaustive"):
        r = select_team(pool, method, "gd")
        assert r.max_size == 2 and r.recommended.indices == (0, 1)  # once max size M - 1 = 1
    rows = compare_selections(pool, r)["rows"]
    assert all(row["size"] == 2 for row in rows)


def test_bounded_hq_over_the_team_limit_at_size_two_does_not_suggest_a_smaller_width():
    pool = _pool(3, 6, 40, 3)
    with pytest.raises(ConfigError, match="raise --max-teams .* every pair is a candidate") as e:
        select_team(pool, "hq", "gd", variant="bounded", max_teams=5)  # 15 pairs
    assert "--width" not in str(e.value)


@pytest.mark.parametrize("method, kw", [
    ("hq", {"variant": "exact"}), ("hq", {"variant": "bounded"}), ("exhaustive", {"max_size": 3}),
    ("kmeans", {"max_size": 3}), ("hq", {"focal": False}),
])
def test_progress_reports_each_level_and_changes_nothing(method, kw, capsys):
    """Off (the default), nothing reaches stderr; on, every focal model and every level a line
    (a log off a terminal), and the result is the same."""
    pool = _pool(3, 7, 60, 3, test=False)
    quiet = select_team(pool, method, "ck", **kw)
    assert capsys.readouterr().err == ""
    loud = select_team(pool, method, "ck", progress=True, **kw)
    err = capsys.readouterr().err
    assert _levels(loud) == _levels(quiet) and loud.recommended == quiet.recommended
    sizes = [lv.size for lv in loud.levels]
    for size, teams in zip(sizes, [lv.candidates for lv in loud.levels], strict=True):
        assert f"size {size}: {teams:,} teams" in err
    # bounded HQ computes them lazily, as its levels reach each focal model
    focal = kw.get("focal", True)
    lines = [line for line in err.splitlines() if "ck focal stats" in line]
    assert len(lines) == (pool.num_models if focal else 0)
    assert (f"ck focal stats  {pool.num_models}/{pool.num_models}" in err) == focal
    assert f"{len(sizes)}/{len(sizes)}" in err  # closed at the levels run, even when HQ stops early
