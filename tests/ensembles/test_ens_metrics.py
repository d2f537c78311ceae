"""Every diversity metric, computed for many teams at once, against slow loops and hand cases."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
from ens_slow import draw, preds_correct, random_pool, score, team_metric
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score

from secateurs.ensembles import (
    METRICS,
    pair_matrix,
    sample_stats,
    team_raw,
    to_score,
)
from secateurs.ensembles.metrics import EMPTY_VALUE, team_metrics

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)


def _all_teams(m):
    return [t for s in range(2, m + 1) for t in combinations(range(m), s)]


def _fast(metric, correct, preds, c, teams, weights=None):
    st_ = sample_stats(np.asarray(correct), np.asarray(preds), c, weights=weights)
    m = len(correct)
    out = []
    for size in sorted({len(t) for t in teams}):
        group = [t for t in teams if len(t) == size]
        vals = team_raw(metric, st_, np.asarray(group), m, chunk=7)  # small chunk: chunking works
        out += list(zip(group, vals, strict=True))
    return dict(out)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_every_metric_matches_slow_loops_on_every_team(seed):
    m, n, c = draw(seed, m=(2, 6), n=(1, 40), c=(2, 4)).values()
    probs, labels = random_pool(seed, m, n, c)
    preds, correct = preds_correct(probs, labels)
    teams = _all_teams(m)
    for metric in METRICS:
        fast = _fast(metric, correct, preds, c, teams)
        for t in teams:
            slow = team_metric(metric, correct, preds, c, t)
            assert fast[t] == pytest.approx(slow, abs=1e-9), (metric, t)


def test_pools_of_more_than_64_models_match_slow_loops():
    # Correctness patterns were once packed into one int64 a sample: models 64 and up were lost.
    m, n, c = 75, 60, 3
    probs, labels = random_pool(7, m, n, c, copies=False)
    preds, correct = preds_correct(probs, labels)
    rng = np.random.default_rng(0)
    teams = [(66, 70, 74), (0, 63, 64), (1, 65), tuple(range(m)),
             *(tuple(sorted(rng.choice(m, size, replace=False))) for size in (2, 4, 9, 33, 70))]
    for metric in METRICS:
        fast = _fast(metric, correct, preds, c, teams)
        for t in teams:
            slow = team_metric(metric, correct, preds, c, t)
            assert fast[t] == pytest.approx(slow, abs=1e-9), (metric, t)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_sample_weights_equal_repeated_samples(seed):
    m, n = draw(seed, m=(2, 4), n=(1, 15)).values()
    """Weights (used by resampling) count a sample as often as it was drawn."""
    c = 3
    probs, labels = random_pool(seed, m, n, c)
    preds, correct = preds_correct(probs, labels)
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 4, n)
    expanded = [k for k in range(n) for _ in range(w[k])]
    teams = _all_teams(m)
    for metric in METRICS:
        fast = _fast(metric, correct, preds, c, teams, weights=w.astype(float))
        for t in teams:
            slow = team_metric(metric, correct, preds, c, t, expanded)
            assert fast[t] == pytest.approx(slow, abs=1e-9), (metric, t)


def _slow_counts(correct, preds, c, w):
    """Weighted pair counts by loops over pairs and samples, in float64."""
    m, n = correct.shape
    both, agree = np.zeros((m, m)), np.zeros((m, m))
    hist = np.zeros((m, c))
    for i in range(m):
        for s in range(n):
            hist[i, preds[i, s]] += w[s]
        for j in range(m):
            for s in range(n):
                both[i, j] += w[s] * (correct[i, s] and correct[j, s])
                agree[i, j] += w[s] * (preds[i, s] == preds[j, s])
    return both, agree, hist @ hist.T


@pytest.mark.parametrize("kind", ["whole", "fractional", "huge", "none"])
def test_pair_counts_match_loops_for_any_weights(kind):
    """Whole-number weights are counted in float32 (exact), others in float64: both must give
    the loops' counts, and a column subset (Fortran-ordered, as focal negatives are) too."""
    rng = np.random.default_rng(7)
    m, n, c = 5, 40, 4
    preds = rng.integers(0, c, (m, 3 * n))[:, ::3]  # a strided view, like a column subset
    correct = rng.random((m, n)) < 0.6
    w = {
        "whole": rng.integers(0, 5, n).astype(float),
        "fractional": rng.random(n) * 3,
        "huge": rng.integers(2**20, 2**21, n).astype(float),  # total above 2**24
        "none": None,
    }[kind]
    got = sample_stats(correct, preds, c, weights=w)
    both, agree, gram = _slow_counts(correct, preds, c, np.ones(n) if w is None else w)
    for name, fast, slow in (("both", got.both_correct, both), ("agree", got.agree, agree),
                             ("gram", got.class_gram, gram)):
        assert fast.dtype == np.float64, name
        np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=0, err_msg=name)
    if kind != "fractional":  # integer counts: exactly the loops' sums
        assert np.array_equal(got.agree, agree) and np.array_equal(got.both_correct, both)


@pytest.mark.filterwarnings("ignore::UserWarning")
@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_cohen_kappa_matches_sklearn_where_defined(seed):
    n, c = draw(seed, n=(2, 60), c=(2, 5)).values()
    probs, labels = random_pool(seed, 2, n, c, copies=False)
    preds = probs.argmax(axis=2)
    st_ = sample_stats(preds == labels, preds, c)
    expected = cohen_kappa_score(preds[0], preds[1])
    got = pair_matrix("ck", st_)[0, 1]
    if np.isnan(expected):  # sklearn: 0/0 when both predict one same class everywhere
        assert got == 1.0
    else:
        assert got == pytest.approx(expected, abs=1e-12)


def _hand_stats(c1, c2, preds=None, c=2):
    correct = np.array([c1, c2], dtype=bool)
    preds = np.where(correct, 0, 1) if preds is None else np.asarray(preds)
    return sample_stats(correct, preds, c)


def test_hand_computed_pairwise_case():
    # N11 = 2, N10 = 1, N01 = 1, N00 = 1 over 5 samples
    st_ = _hand_stats([1, 1, 1, 0, 0], [1, 1, 0, 1, 0])
    assert pair_matrix("qs", st_)[0, 1] == pytest.approx((2 * 1 - 1 * 1) / (2 * 1 + 1 * 1))
    assert pair_matrix("cc", st_)[0, 1] == pytest.approx(1 / np.sqrt(3 * 2 * 3 * 2))
    assert pair_matrix("bd", st_)[0, 1] == pytest.approx(2 / 5)


def test_hand_computed_team_case():
    # two models, four samples: l(n) = 2, 1, 1, 0
    correct = np.array([[1, 1, 0, 0], [1, 0, 1, 0]], dtype=bool)
    preds = np.array([[0, 0, 1, 1], [0, 1, 0, 1]])  # labels all 0
    got = team_metrics(correct, preds, 2, [0, 1])
    assert got["kw"] == pytest.approx(2 / (4 * 4))  # sum l(L-l) = 2
    # failures 0,1,1,2: p0=.25 p1=.5 p2=.25; p(1)=.5, p(2)=.25 -> GD = 0.5
    assert got["gd"] == pytest.approx(0.5)
    assert got["en"] == pytest.approx(2 / (4 * 1))
    assert got["qs"] == pytest.approx(0.0)
    assert got["bd"] == pytest.approx(0.5)
    # labels: p_o = .5, p_e = .5 -> kappa 0; Fleiss: P-bar = .5, P_e = .5 -> 0
    assert got["ck"] == pytest.approx(0.0)
    assert got["fk"] == pytest.approx(0.0)


def test_hand_computed_cohen_kappa():
    preds = np.array([[0, 1, 2, 0, 1, 2], [0, 1, 2, 1, 2, 0]])
    st_ = sample_stats(np.ones_like(preds, dtype=bool), preds, 3)
    # p_o = 3/6, p_e = 3 * (1/3 * 1/3) = 1/3 -> (1/2 - 1/3) / (2/3) = 1/4
    assert pair_matrix("ck", st_)[0, 1] == pytest.approx(0.25)


def test_three_model_gd_and_fleiss_by_hand():
    # three models, three samples; failures per sample: 0, 1, 3
    correct = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 0]], dtype=bool)
    preds = np.array([[0, 1, 2], [0, 0, 1], [0, 0, 1]])  # labels 0, 0, 0
    got = team_metrics(correct, preds, 3, [0, 1, 2])
    # p0 = p1 = p3 = 1/3: p(1) = (1/3)(1/3) + (3/3)(1/3) = 4/9, p(2) = (6/6)(1/3) = 1/3
    assert got["gd"] == pytest.approx(1 - (1 / 3) / (4 / 9))
    # Fleiss: P_n = 1, 1/3, 1/3 -> P-bar = 5/9; p = (5/9, 3/9, 1/9) -> P_e = 35/81
    assert got["fk"] == pytest.approx((5 / 9 - 35 / 81) / (1 - 35 / 81))
    # l = 3, 2, 0: sum l(L - l) = 0 + 2 + 0 -> KW = 2 / (3 * 9); EN = (0 + 1 + 0) / (3 * 1)
    assert got["kw"] == pytest.approx(2 / 27)
    assert got["en"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "c1, c2, expected",
    [
        ([1, 1, 1], [1, 1, 1], 1.0),  # never disagree (both always right)
        ([0, 0, 0], [0, 0, 0], 1.0),  # never disagree (both always wrong)
        ([1, 1], [0, 0], -1.0),  # always disagree, one always right
        ([0, 0, 0], [1, 0, 1], 0.0),  # one constant, the other not
        ([1, 1, 1, 1], [1, 0, 1, 0], 0.0),
    ],
)
def test_degenerate_q_and_correlation(c1, c2, expected):
    st_ = _hand_stats(c1, c2)
    assert pair_matrix("qs", st_)[0, 1] == expected
    assert pair_matrix("cc", st_)[0, 1] == expected


def test_degenerate_kappas_and_gd_are_defined():
    preds = np.zeros((3, 5), dtype=int)  # everybody predicts class 0 everywhere
    correct = np.ones((3, 5), dtype=bool)
    got = team_metrics(correct, preds, 4, [0, 1, 2])
    assert got["ck"] == 1.0 and got["fk"] == 1.0  # p_e = 1
    assert got["gd"] == 0.0  # p(1) = 0: nobody ever fails
    assert got["kw"] == 0.0 and got["en"] == 0.0 and got["bd"] == 0.0
    assert all(np.isfinite(list(got.values())))


def test_empty_sample_set_gives_no_diversity_values():
    st_ = sample_stats(np.zeros((3, 0), dtype=bool), np.zeros((3, 0), dtype=int), 3)
    for metric in METRICS:
        v = team_raw(metric, st_, np.array([[0, 1], [0, 1]]), 3)
        assert np.all(v == EMPTY_VALUE[metric])
        assert to_score(metric, v[0]) == 0.0  # no diversity


def test_score_is_higher_when_more_diverse():
    same = _hand_stats([1, 0, 1, 0, 1, 1], [1, 0, 1, 0, 1, 1], preds=[[0, 1, 0, 1, 0, 0]] * 2)
    diff = _hand_stats([1, 0, 1, 0, 1, 1], [0, 1, 1, 1, 0, 0],
                       preds=[[0, 1, 0, 1, 0, 0], [1, 0, 0, 0, 1, 1]])
    b = np.ones((1, 2))
    from secateurs.ensembles import team_raw_matrix

    for metric in METRICS:
        s_same = to_score(metric, team_raw_matrix(metric, same, b)[0])
        s_diff = to_score(metric, team_raw_matrix(metric, diff, b)[0])
        assert s_diff > s_same, metric
        assert score(metric, team_raw_matrix(metric, diff, b)[0]) == s_diff
