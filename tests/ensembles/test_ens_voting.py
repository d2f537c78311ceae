"""Team accuracy under every voting rule, for many teams at once, against per-sample loops."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from ens_slow import draw, random_pool, vote_slow
from hypothesis import given, settings
from hypothesis import strategies as st

from secateurs.ensembles import (
    VOTES,
    PredictionPool,
    TeamAccuracy,
    predict,
    select_team,
    team_accuracy,
)
from secateurs.ensembles.voting import direct_correct_counts
from secateurs.errors import ConfigError

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_every_vote_matches_slow_loops(seed):
    m, n, c, dtype = draw(seed, m=(2, 6), n=(1, 40), c=(2, 4),
                          dtype=[np.float32, np.float64]).values()
    probs, labels = random_pool(seed, m, n, c)
    pool = PredictionPool.from_arrays([f"m{i}" for i in range(m)], probs.astype(dtype), labels)
    weights = np.random.default_rng(seed).uniform(0.1, 1.0, m)
    p = pool.selection.probs.astype(np.float64)
    teams = [t for s in range(1, m + 1) for t in combinations(range(m), s)]
    for vote in VOTES:
        evaluator = TeamAccuracy(pool.selection, vote, weights)
        for size in range(1, m + 1):
            group = [t for t in teams if len(t) == size]
            got = evaluator.accuracy(np.array(group))
            want = [vote_slow(p, labels, t, vote, weights) for t in group]
            np.testing.assert_allclose(got, want, err_msg=vote)
            for t, g in zip(group, got, strict=True):
                pred = predict(pool.selection, t, vote, weights)
                assert np.mean(pred == labels) == pytest.approx(g)


def test_plurality_ties_go_to_lowest_class_and_majority_needs_more_than_half():
    # 4 models vote 1, 1, 0, 0 on label 1 (tie -> class 0, wrong); 3 models 2, 1, 0: no majority
    probs = np.zeros((4, 2, 3))
    probs[:, 0] = [[0.1, 0.8, 0.1], [0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.8, 0.1, 0.1]]
    probs[:, 1] = [[0.1, 0.1, 0.8], [0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1]]
    labels = np.array([1, 1])
    pool = PredictionPool.from_arrays(list("abcd"), probs, labels)
    assert team_accuracy(pool, "abcd", "plurality") == 0.5  # sample 0 tied 2-2 -> class 0
    assert team_accuracy(pool, "abc", "plurality") == 0.5  # sample 1: 1 vote each -> class 0
    assert team_accuracy(pool, "abc", "majority") == 0.5  # sample 0: 2 of 3 ok; sample 1: none
    assert team_accuracy(pool, "abcd", "majority") == 0.0  # 2 of 4 is not more than half
    assert team_accuracy(pool, "abd", "majority") == 1.0


def test_samples_every_model_gets_right_are_right_for_every_team():
    probs, labels = random_pool(3, 5, 50, 3, copies=False)
    probs[:, :20] = 0.05
    probs[:, np.arange(20), labels[:20]] = 0.9
    pool = PredictionPool.from_arrays(list("abcde"), probs, labels)
    ev = TeamAccuracy(pool.selection, "soft")
    assert ev.n_easy >= 20
    teams = np.array(list(combinations(range(5), 3)))
    want = [vote_slow(probs, labels, t) for t in teams]
    np.testing.assert_allclose(ev.accuracy(teams), want)


def test_bad_votes_and_weights_are_config_errors():
    probs, labels = random_pool(0, 3, 10, 2)
    pool = PredictionPool.from_arrays(list("abc"), probs, labels)
    with pytest.raises(ConfigError, match="voting rule"):
        TeamAccuracy(pool.selection, "average")
    with pytest.raises(ConfigError, match="weights"):
        TeamAccuracy(pool.selection, "weighted", [1.0, 0.0, 1.0])
    with pytest.raises(ConfigError, match="no test split"):
        team_accuracy(pool, "ab", split="test")


def _hundredths_pool(seed, m, n, c):
    """Probabilities in whole hundredths (a CSV written to two decimals): ties between summed
    classes are common and exact in decimal, but not in binary floating point."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.integers(0, 11, (m, n, c - 1)), axis=2) * 10  # multiples of 0.1
    ints = np.diff(np.concatenate([np.zeros((m, n, 1), int), cuts, np.full((m, n, 1), 100)],
                                  axis=2), axis=2)
    return ints, rng.integers(0, c, n)


def _exact_right(ints, labels, team, weights):
    """Samples a team gets right, adding integer hundredths times integer weights: exact."""
    right = 0
    for k in range(len(labels)):
        totals = [sum(weights[i] * int(ints[i, k, j]) for i in team) for j in range(ints.shape[2])]
        right += totals.index(max(totals)) == labels[k]  # index(): the lowest class of a tie
    return right


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_decimal_ties_are_ties_in_every_routine(dtype):
    # [0.7, 0.3] + [0.2, 0.8] + [0.6, 0.4] is a tie: the margins' matrix product (selection) and
    # the summed probabilities (test accuracy, predict, bounded HQ) once broke it differently.
    m, n, c = 6, 300, 3
    ints, labels = _hundredths_pool(0, m, n, c)
    probs = (ints / 100).astype(dtype)
    pool = PredictionPool.from_arrays([f"m{i}" for i in range(m)], probs, labels, probs, labels)
    split = pool.selection
    assert np.array_equal(split.preds, np.asarray(
        [[list(ints[i, k]).index(max(ints[i, k])) for k in range(n)] for i in range(m)]))
    for vote, w in (("soft", np.ones(m, int)), ("weighted", np.arange(1, m + 1))):
        evaluator = TeamAccuracy(split, vote, w)
        for size in range(2, m + 1):
            group = np.array(list(combinations(range(m), size)))
            want = [_exact_right(ints, labels, t, w) for t in group]
            assert list(evaluator.correct_counts(group)) == want, (vote, size)
            assert list(direct_correct_counts(split, group, vote, w)) == want, (vote, size)
            for t, right in zip(group, want, strict=True):
                assert int((predict(split, t, vote, w) == labels).sum()) == right
    # selection and test are the same data: every team gets one accuracy
    result = select_team(pool, metric="gd", method="exhaustive", max_size=m)
    for level in result.levels:
        right = direct_correct_counts(pool.test, level.teams, "soft")
        assert list(level.accuracy) == list(right / n), level.size
    for report in (result.pool, result.best_single, result.recommended):
        assert report.selection_accuracy == report.test_accuracy
