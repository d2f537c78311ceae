"""Focal-diversity consensus (our rule): against a dict-and-loop tally of the HQ runs, and its
properties (one metric = HQ's kept set, q = 1 = union, independent of metric order)."""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pytest
from ens_slow import draw, random_pool
from hypothesis import given, settings
from hypothesis import strategies as st

from secateurs.ensembles import Consensus, PredictionPool, select_consensus, select_team
from secateurs.errors import ConfigError


def _pool(seed, m, n, c):
    probs, labels = random_pool(seed, m, n, c)
    return PredictionPool.from_arrays([f"m{i}" for i in range(m)], probs, labels)


def _slow(per, q):
    """Votes and the recommendation from the per-metric kept sets, with dicts and loops."""
    votes, div, acc = {}, {}, {}
    for r in per.values():
        for lv in r.levels:
            for t, a, d in zip(lv.teams.tolist(), lv.accuracy, lv.diversity, strict=True):
                t = tuple(t)
                votes[t] = votes.get(t, 0) + 1
                div.setdefault(t, []).append(d)
                acc[t] = a
    pool_acc = next(iter(per.values())).pool.selection_accuracy
    while True:
        chosen = {t for t, v in votes.items() if v >= q}
        if chosen or q == 1:
            break
        q -= 1
    mean = {t: sum(div[t]) / len(div[t]) for t in chosen}
    ok = [t for t in chosen if acc[t] >= pool_acc]
    if ok:
        small = min(len(t) for t in ok)
        rec = min((t for t in ok if len(t) == small), key=lambda t: (-mean[t], -acc[t], t))
    else:
        rec = min(chosen, key=lambda t: (-acc[t], len(t), -mean[t], t)) if chosen else None
    return chosen, q, rec


def _set(result):
    return {tuple(t) for lv in result.levels for t in lv.teams.tolist()}


@settings(max_examples=20, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1))
def test_consensus_matches_a_loop_tally(seed):
    m, k, q, beta = draw(seed, m=(4, 7), k=(1, 4), q=(1, 4), beta=[0.1, 0.3, 0.5]).values()
    metrics = ["gd", "kw", "ck", "bd"][:k]
    q = min(q, k)
    pool = _pool(seed, m, 50, 3)
    c = select_consensus(pool, metrics, quorum=q, beta=beta)
    chosen, q_used, rec = _slow(c.per_metric, q)
    assert _set(c) == chosen and c.quorum == q_used and c.quorum_requested == q
    assert (c.recommended.indices if c.recommended else None) == rec
    for lv in c.levels:
        assert (lv.votes >= c.quorum).all()


def test_one_metric_is_hq_and_q1_is_the_union_and_order_does_not_matter():
    pool = _pool(7, 7, 80, 4)
    hq = select_team(pool, "hq", "gd", beta=0.3)
    one = select_consensus(pool, ["gd"], beta=0.3)
    assert _set(one) == _set(hq)  # the consensus set of one metric is HQ's kept set
    assert one.recommended.size == hq.recommended.size
    same_size = [tuple(t) for lv in hq.levels if lv.size == hq.recommended.size
                 for t, a in zip(lv.teams.tolist(), lv.accuracy, strict=True)
                 if a >= hq.pool.selection_accuracy]
    assert one.recommended.indices in same_size
    metrics = ["gd", "kw", "ck"]
    union = select_consensus(pool, metrics, quorum=1, beta=0.3)
    assert _set(union) == set().union(*(_set(r) for r in union.per_metric.values()))
    every = select_consensus(pool, metrics, quorum=3, beta=0.3)
    inter = set.intersection(*(_set(r) for r in every.per_metric.values()))
    assert inter  # every metric keeps the teams of most models here
    assert every.quorum == 3 and _set(every) == inter  # q = |metrics| is the intersection
    ref = select_consensus(pool, metrics, beta=0.3)
    assert ref.quorum_requested == 2
    for perm in permutations(metrics):
        other = select_consensus(pool, list(perm), beta=0.3)
        assert _set(other) == _set(ref)
        assert other.recommended.indices == ref.recommended.indices
    est = Consensus(metrics=metrics, beta=0.3).fit(pool)
    assert est.team_ == ref.recommended.indices and est.quorum_ == 2
    d = ref.to_dict()
    assert d["method"] == "consensus" and "our rule" in d["rule"]
    assert d["recommended"]["names"] == [pool.names[i] for i in d["recommended"]["indices"]]


def test_empty_quorum_is_lowered_and_bad_quorum_refused():
    pool = _pool(8, 6, 40, 3)
    # beta 0.9 with three metrics: the kept sets rarely overlap fully
    c = select_consensus(pool, ["gd", "ck", "qs"], quorum=3, beta=0.9)
    chosen, q_used, rec = _slow(c.per_metric, 3)
    assert c.quorum == q_used and _set(c) == chosen
    if c.quorum < 3:
        assert any("lowered" in n for n in c.notes)
    for bad in (0, 4, 1.5, True):
        with pytest.raises(ConfigError, match="quorum must be an integer from 1 to 3"):
            select_consensus(pool, ["gd", "ck", "qs"], quorum=bad)
    with pytest.raises(ConfigError, match="metric listed twice"):
        select_consensus(pool, ["gd", "gd"])
    assert np.isfinite(c.recommended.selection_accuracy)
