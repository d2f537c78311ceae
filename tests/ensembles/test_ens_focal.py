"""Focal diversity (negatives, per-(focal, size) normalisation, rank weights) against slow loops."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from ens_slow import draw, focal_slow, preds_correct, random_pool, rank_in_team
from hypothesis import given, settings
from hypothesis import strategies as st

from secateurs.ensembles import (
    METRICS,
    RESAMPLE_SIZE,
    RESAMPLE_TIMES,
    PredictionPool,
    diversity_of_teams,
    focal_diversity,
    focal_stats,
    member_weights,
)

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_focal_diversity_matches_slow_definition(seed):
    m, n, c, weighting = draw(seed, m=(2, 5), n=(1, 40), c=(2, 4), w=["rank", "mean"]).values()
    probs, labels = random_pool(seed, m, n, c)
    preds, correct = preds_correct(probs, labels)
    acc = [sum(row) / n for row in correct]
    fstats = focal_stats(np.array(correct), np.array(preds), c, list(METRICS))
    rng = np.random.default_rng(seed)
    for size in range(2, m + 1):
        teams = list(combinations(range(m), size))
        # normalisation runs over the given teams: also check a random subset of them
        subset = [t for t in teams if rng.random() < 0.6] or teams[:1]
        for group in (teams, subset):
            for metric in METRICS:
                got = focal_diversity(metric, fstats, np.array(group), np.array(acc), weighting)
                want = focal_slow(metric, correct, preds, c, group, acc, weighting)
                np.testing.assert_allclose(got, want, atol=1e-9, err_msg=f"{metric} {group}")


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_resampling_is_three_seeded_draws_of_100_negatives_with_replacement(seed):
    m, n = draw(seed, m=(2, 4), n=(1, 40)).values()
    c = 3
    probs, labels = random_pool(seed, m, n, c)
    preds, correct = preds_correct(probs, labels)
    acc = [sum(row) / n for row in correct]
    rng = np.random.default_rng(seed)
    draws = {}
    for f in range(m):  # the documented draw order: focal model by focal model
        neg = [k for k in range(n) if not correct[f][k]]
        if not neg:
            draws[f] = [[]]
            continue
        draws[f] = [[neg[i] for i in rng.integers(0, len(neg), RESAMPLE_SIZE)]
                    for _ in range(RESAMPLE_TIMES)]
    fstats = focal_stats(np.array(correct), np.array(preds), c, list(METRICS), resample=True,
                         seed=seed)
    teams = [t for s in range(2, m + 1) for t in combinations(range(m), s)]
    for metric in ("ck", "bd", "kw", "gd", "en"):
        for size in range(2, m + 1):
            group = [t for t in teams if len(t) == size]
            got = focal_diversity(metric, fstats, np.array(group), np.array(acc))
            want = focal_slow(metric, correct, preds, c, group, acc, negatives=draws)
            np.testing.assert_allclose(got, want, atol=1e-9)


def test_rank_weights_are_ranks_not_argsort_indices():
    acc = np.array([0.9, 0.5, 0.7, 0.7])
    members = np.array([[0, 1, 2], [1, 2, 3], [0, 2, 3]])
    w = member_weights(members, acc, "rank")
    # team (0,1,2): accuracies .9 .5 .7 -> ranks 3 1 2 (argsort would give 1 2 0)
    np.testing.assert_array_equal(w[0], [3, 1, 2])
    np.testing.assert_array_equal(w[1], [1, 2.5, 2.5])  # tie shares the average rank
    for row, team in zip(w, members, strict=True):
        assert list(row) == rank_in_team(list(team), list(acc))
    assert np.all(member_weights(members, acc, "mean") == 1)


def test_more_accurate_member_weighs_more():
    # Two focal models disagree on which team is more diverse; the more accurate one decides.
    probs, labels = random_pool(5, 4, 60, 3, copies=False)
    preds, correct = preds_correct(probs, labels)
    acc = np.array([sum(r) / 60 for r in correct])
    fstats = focal_stats(np.array(correct), np.array(preds), 3, ["bd"])
    teams = np.array(list(combinations(range(4), 2)))
    rank = focal_diversity("bd", fstats, teams, acc, "rank")
    mean = focal_diversity("bd", fstats, teams, acc, "mean")
    # with two members and weights (1, 2) vs (1, 1): rank = (n_lo + 2 n_hi) / 3, mean = (n_lo + n_hi) / 2
    assert not np.allclose(rank, mean)
    assert np.all((rank >= 0) & (rank <= 1))


def test_focal_normalisation_constant_group_is_half():
    # model 0 is never wrong: every team's value on its (empty) negatives is the same
    labels = np.array([0, 1, 0, 1, 0, 1])
    probs = np.full((3, 6, 2), 0.25)
    probs[0, np.arange(6), labels] = 0.75
    probs[0, np.arange(6), 1 - labels] = 0.25
    probs[1] = [[0.9, 0.1]] * 6
    probs[2] = [[0.2, 0.8], [0.8, 0.2], [0.1, 0.9], [0.3, 0.7], [0.6, 0.4], [0.4, 0.6]]
    pool = PredictionPool.from_arrays(["a", "b", "c"], probs, labels)
    fs = focal_stats(pool.selection.correct, pool.selection.preds, 2, ["gd"])
    assert fs.num_negatives[0] == 0
    d = diversity_of_teams(pool, [("a", "b"), ("a", "c"), ("b", "c")], "gd", weighting="mean")
    assert np.all((d >= 0) & (d <= 1))
    # the full team is alone in its size: every focal value normalises to 0.5
    assert diversity_of_teams(pool, [("a", "b", "c")], "gd")[0] == pytest.approx(0.5)


def test_diversity_of_teams_groups_by_size_and_accepts_names():
    probs, labels = random_pool(1, 4, 40, 3, copies=False)
    pool = PredictionPool.from_arrays(list("pqrs"), probs, labels)
    teams = [("p", "q"), ("q", "r", "s"), ("p", "s"), ("p", "q", "r"), (0, 2)]
    got = diversity_of_teams(pool, teams, "kw")
    fs = focal_stats(pool.selection.correct, pool.selection.preds, 3, ["kw"])
    pairs = focal_diversity("kw", fs, np.array([[0, 1], [0, 3], [0, 2]]), pool.selection.accuracy)
    triples = focal_diversity("kw", fs, np.array([[1, 2, 3], [0, 1, 2]]), pool.selection.accuracy)
    np.testing.assert_allclose(got, [pairs[0], triples[0], pairs[1], triples[1], pairs[2]])
