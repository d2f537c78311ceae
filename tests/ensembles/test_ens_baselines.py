"""The baselines (random, rank, greedy, cluster) against slow loops written from
reference/ensemble-baselines.md, and the estimator interface they share with HQ."""

from __future__ import annotations

import numpy as np
import pytest
from ens_slow import draw, greedy_slow, random_pool, rank_slow, vote_slow
from hypothesis import given, settings
from hypothesis import strategies as st

from secateurs.ensembles import (
    HQ,
    ClusterSelection,
    GreedySelection,
    PredictionPool,
    RandomSelection,
    RankSelection,
    select_baseline,
    select_team,
)
from secateurs.errors import ConfigError

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


def _pool(seed, m, n, c, test=False):
    probs, labels = random_pool(seed, m, n, c)
    kw = {}
    if test:
        tp, tl = random_pool(seed + 1, m, n, c)
        kw = dict(test_probs=tp, test_labels=tl)
    return PredictionPool.from_arrays([f"m{i}" for i in range(m)], probs, labels, **kw)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_rank_pruning_matches_loops(seed):
    m, n, c, size, criterion = draw(
        seed, m=(2, 9), n=(5, 40), c=(2, 5), size=(1, 9),
        criterion=["error", "kappa", "margin-diversity", "contribution"]).values()
    size = min(size, m)
    pool = _pool(seed, m, n, c)
    got = select_baseline(pool, "rank", criterion, size).recommended.indices
    assert got == rank_slow(pool.selection.probs, pool.selection.labels, criterion, size)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_greedy_forward_selection_matches_loops(seed):
    m, n, c, size, criterion = draw(
        seed, m=(2, 8), n=(5, 40), c=(2, 5), size=(1, 8),
        criterion=["reduced-error", "complementariness", "margin-distance", "drep"]).values()
    size = min(size, m)
    pool = _pool(seed, m, n, c)
    got = select_baseline(pool, "greedy", criterion, size).recommended.indices
    assert got == greedy_slow(pool.selection.probs, pool.selection.labels, criterion, size)


def test_drep_uses_agreement_then_error_not_the_first_unselected_model():
    # PyPruning's DREP adds the first unselected model after round one; ours must not.
    pool = _pool(3, 8, 60, 4)
    team = select_baseline(pool, "greedy", "drep", 4).recommended.indices
    assert team == greedy_slow(pool.selection.probs, pool.selection.labels, "drep", 4)
    first = int(np.argmax(pool.selection.accuracy))
    assert first in team
    assert team != tuple(sorted({first, *[i for i in range(8) if i != first][:3]}))


def test_random_is_seeded_and_without_replacement():
    pool = _pool(4, 12, 20, 3)
    for seed in range(20):
        team = select_baseline(pool, "random", size=7, seed=seed).recommended.indices
        assert len(set(team)) == 7 and list(team) == sorted(team)
        want = tuple(sorted(np.random.default_rng(seed).choice(12, 7, replace=False).tolist()))
        assert team == want
    assert select_baseline(pool, "random", size=12).recommended.indices == tuple(range(12))


def test_cluster_takes_the_most_accurate_model_of_each_cluster_by_pool_index():
    # three families of near-identical models; the best of each family must be picked, by its
    # index in the pool (PyPruning returned the index inside the cluster)
    rng = np.random.default_rng(0)
    n, c = 200, 4
    labels = rng.integers(0, c, n)
    base = rng.dirichlet(np.ones(c), size=(3, n))
    probs = []
    order = [2, 0, 1, 2, 1, 0, 0, 2, 1]  # family of each model
    for k, fam in enumerate(order):
        p = base[fam] * 0.9 + 0.1 * rng.dirichlet(np.ones(c), size=n)
        right = rng.random(n) < 0.3 + 0.05 * k
        p[right, labels[right]] += 2.0
        probs.append(p / p.sum(axis=1, keepdims=True))
    probs = np.stack(probs)
    pool = PredictionPool.from_arrays([f"m{i}" for i in range(9)], probs, labels)
    acc = pool.selection.accuracy
    want = tuple(sorted(max((i for i in range(9) if order[i] == f), key=lambda i: (acc[i], -i))
                        for f in range(3)))
    assert select_baseline(pool, "cluster", "accuracy", 3, seed=1).recommended.indices == want
    cen = select_baseline(pool, "cluster", "centroid", 3, seed=1).recommended.indices
    assert sorted(order[i] for i in cen) == [0, 1, 2]  # one per family
    # identical models: k-means cannot fill every cluster; the rest go to the most accurate
    same = PredictionPool.from_arrays(list("abcd"), np.repeat(probs[:1], 4, axis=0), labels)
    assert select_baseline(same, "cluster", size=3).recommended.indices == (0, 1, 2)


def test_one_interface_functions_and_estimators():
    pool = _pool(5, 7, 80, 4, test=True)
    probs, labels = pool.selection.probs, pool.selection.labels
    g = GreedySelection(criterion="reduced-error", size=3).fit(probs, labels)
    assert g.team_ == greedy_slow(probs, labels, "reduced-error", 3)
    assert g.team_names_ == tuple(f"model-{i}" for i in g.team_)
    assert g.selection_accuracy_ == pytest.approx(vote_slow(probs, labels, g.team_))
    assert select_team(pool, "greedy", criterion="reduced-error", size=3).recommended.indices == g.team_
    assert RankSelection(criterion="kappa", size=2).fit(pool).team_ == rank_slow(probs, labels, "kappa", 2)
    assert len(RandomSelection(size=4, seed=3).fit(pool).team_) == 4
    assert len(ClusterSelection(size=3).fit(pool).team_) == 3
    hq = HQ(metric="gd", beta=0.1).fit(probs, labels)
    assert hq.team_ == select_team(pool, "hq", "gd", beta=0.1).recommended.indices
    assert hq.variant_ == "exact" and hq.levels_
    r = select_baseline(pool, "rank", "error", 3)
    assert r.recommended.test_accuracy == pytest.approx(
        vote_slow(pool.test.probs, pool.test.labels, r.recommended.indices))
    d = r.to_dict()
    assert d["method"] == "rank" and d["criterion"] == "error" and d["levels"] == []
    assert "selection split only" in d["rule"]
    assert "HQ(metric='gd'" in repr(HQ())


@pytest.mark.parametrize("kw, message", [
    (dict(method="greedy"), "needs a team size"),
    (dict(method="greedy", size=0), "team size must be an integer from 1 to 5"),
    (dict(method="greedy", size=6), "team size must be an integer from 1 to 5"),
    (dict(method="rank", criterion="drep", size=2), "unknown criterion 'drep' for rank"),
    (dict(method="cluster", size=2, vote="mean"), "unknown voting rule"),
    (dict(method="hq", size=2), "criterion and size are for the baselines"),
])
def test_baseline_bad_input(kw, message):
    pool = _pool(6, 5, 20, 3)
    with pytest.raises(ConfigError, match=message):
        select_team(pool, **kw)
    with pytest.raises(ConfigError, match="labels are required"):
        GreedySelection(size=2).fit(pool.selection.probs)
