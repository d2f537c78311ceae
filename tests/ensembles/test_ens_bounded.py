"""Bounded HQ against a set-and-loop implementation of its rule, against exact HQ where the width
cap never binds, and on pools far beyond the old 62-model limit."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest
from ens_slow import bounded_slow, draw, focal_slow, preds_correct, random_pool, vote_slow
from hypothesis import given, settings
from hypothesis import strategies as st

from secateurs.ensembles import HQ, PredictionPool, select_team
from secateurs.errors import ConfigError


def _pool(seed, m, n, c, copies=True):
    probs, labels = random_pool(seed, m, n, c, copies=copies)
    return PredictionPool.from_arrays([f"m{i}" for i in range(m)], probs, labels)


def _levels(result):
    return [(lv.size, lv.candidates, [tuple(t) for t in lv.teams.tolist()]) for lv in result.levels]


@settings(max_examples=30, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1))
def test_bounded_matches_the_rule_written_with_loops(seed):
    m, n, beta, width, metric, focal, weighting = draw(
        seed, m=(4, 8), n=(10, 50), beta=[0.1, 0.2, 0.3, 0.5], width=(1, 12),
        metric=["gd", "kw", "bd", "en", "ck", "qs", "fk", "cc"], focal=[True, True, False],
        weighting=["rank", "mean"],
    ).values()
    pool = _pool(seed, m, n, 3)
    result = select_team(pool, "hq", metric, beta=beta, variant="bounded", width=width,
                         max_size=m - 1, focal=focal, weighting=weighting)
    probs, labels = pool.selection.probs, pool.selection.labels
    preds, correct = preds_correct(probs, labels)
    acc = [sum(r) / n for r in correct]

    def div_fn(cands):
        if focal:
            return focal_slow(metric, correct, preds, 3, cands, acc, weighting)
        from ens_slow import score, team_metric

        return [float(np.round(score(metric, team_metric(metric, correct, preds, 3, t)), 12))
                for t in cands]

    def acc_fn(t):
        return vote_slow(probs, labels, t)

    pool_acc = acc_fn(tuple(range(m)))
    slow = bounded_slow(m, beta, m - 1, width, div_fn, acc_fn, pool_acc)
    assert [(s, len(c), k) for s, c, _, k in slow] == _levels(result)
    assert [len(p) for _, _, p, _ in slow] == [lv.pruned for lv in result.levels]
    for lv in result.levels:
        assert lv.kept <= width
        np.testing.assert_allclose(lv.accuracy, [acc_fn(tuple(t)) for t in lv.teams.tolist()])
    assert result.variant == "bounded" and result.width == width


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1))
def test_bounded_equals_exact_hq_while_the_cap_never_binds(seed):
    m, n, beta, metric, focal, vote = draw(
        seed, m=(3, 8), n=(8, 60), beta=[0.05, 0.1, 0.2, 0.3], metric=["gd", "kw", "bd", "en",
        "ck", "fk", "qs", "cc"], focal=[True, False], vote=["soft", "plurality", "majority"],
    ).values()
    pool = _pool(seed, m, n, 4)
    exact = select_team(pool, "hq", metric, beta=beta, variant="exact", focal=focal, vote=vote)
    wide = select_team(pool, "hq", metric, beta=beta, variant="bounded", width=10**6,
                       max_size=m - 1, focal=focal, vote=vote)
    assert exact.variant == "exact"
    got = _levels(wide)
    assert got == _levels(exact)[: len(got)]  # bounded stops early once a team reaches the pool
    for a, b in zip(exact.levels, wide.levels, strict=False):
        np.testing.assert_allclose(a.diversity, b.diversity, atol=1e-9)
        assert b.dropped == 0
    assert wide.recommended.indices == exact.recommended.indices
    assert any("never bound" in note for note in wide.notes)


def test_auto_runs_exact_where_it_fits_and_bounded_beyond():
    small = _pool(1, 8, 80, 4)
    assert select_team(small, "hq", "gd").variant == "exact"
    assert HQ(metric="kw").fit(small).variant_ == "exact"
    big = _pool(2, 70, 200, 4, copies=False)  # beyond the old 62-model limit
    r = select_team(big, "hq", "gd", beta=0.1)
    assert r.variant == "bounded" and r.max_size <= 16
    assert r.to_dict()["variant"] == "bounded"
    assert all(lv.kept <= 100 for lv in r.levels)
    with pytest.raises(ConfigError, match="bounded HQ"):
        select_team(big, "hq", "gd", variant="exact", max_teams=20_000)  # size 3 exceeds it
    with pytest.raises(ConfigError, match="width"):
        select_team(big, "hq", "gd", variant="bounded", width=0)
    with pytest.raises(ConfigError, match="HQ variant"):
        select_team(big, "hq", "gd", variant="greedy")
    with pytest.raises(ConfigError, match="--resample"):
        select_team(big, "hq", "gd", resample=True)


def test_bounded_computes_diversity_only_for_the_candidates_of_each_level(monkeypatch):
    from secateurs.ensembles import hq_bounded

    seen = []
    orig = hq_bounded.BoundedContext.diversity

    def wrapped(self, parents, cand, par, add):
        seen.append((cand.shape[0], parents.shape[0]))
        return orig(self, parents, cand, par, add)

    monkeypatch.setattr(hq_bounded.BoundedContext, "diversity", wrapped)
    pool = _pool(5, 40, 100, 4, copies=False)
    r = select_team(pool, "hq", "gd", variant="bounded", width=7, max_size=6)
    assert [c for c, _ in seen] == [lv.candidates for lv in r.levels]
    for cands, parents in seen[1:]:
        assert parents <= 7 and cands <= parents * 40  # children of kept teams, never C(M, S)


def _realistic(m, n, c, seed):
    """Models in families that share errors (see benchmarks/bench_ensembles.py)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    diff = rng.beta(1.2, 4.0, n)
    conf = (labels + rng.integers(1, c, n)) % c
    fam = rng.standard_normal((8, n, c), dtype=np.float32)
    family = rng.integers(0, 8, m)
    skill = rng.uniform(1.2, 2.2, m).astype(np.float32)
    z = rng.standard_normal((m, n, c), dtype=np.float32) + 0.9 * fam[family]
    z[:, np.arange(n), labels] += skill[:, None] * 2.2 * (1 - diff[None]).astype(np.float32)
    z[:, np.arange(n), conf] += 2.2 * diff[None].astype(np.float32)
    z -= z.max(axis=2, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=2, keepdims=True)
    return PredictionPool.from_arrays([f"net{i:03d}" for i in range(m)], z, labels)


def test_large_pool_300_models_is_fast_and_memory_bounded():
    pool = _realistic(300, 2000, 10, seed=3)
    tracemalloc.start()
    start = time.perf_counter()
    r = select_team(pool, "hq", "gd", beta=0.1)  # auto: exact does not fit, bounded runs
    took = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert r.variant == "bounded"
    assert took < 30  # a few seconds on an idle machine; generous for a shared CI runner
    # the pool itself is 300 x 2000 x 10 float32 = 24 MB; the search adds a bounded amount
    assert peak < 400 * 2**20
    assert r.recommended is not None and r.recommended.size >= 2
    assert r.recommended.names == tuple(pool.names[i] for i in r.recommended.indices)
    assert r.levels[0].candidates == 300 * 299 // 2
    assert all(lv.candidates <= 100 * 300 for lv in r.levels[1:])
    want = vote_slow(pool.selection.probs, pool.selection.labels, r.recommended.indices)
    assert r.recommended.selection_accuracy == pytest.approx(want)


@pytest.mark.parametrize("metric", ["ck", "qs", "fk"])
def test_a_full_focal_cache_keeps_what_it_holds_and_gives_the_same_teams(monkeypatch, metric):
    """Levels visit focal models in index order: a cache that cleared itself when full missed
    every lookup of every level (hundreds of models); one that keeps its first entries misses
    only the others, and the teams are the same whatever it holds."""
    from secateurs.ensembles import hq_bounded

    calls = []
    orig = hq_bounded.sample_stats

    def counting(*args, **kwargs):
        calls.append(1)
        return orig(*args, **kwargs)

    monkeypatch.setattr(hq_bounded, "sample_stats", counting)
    m, max_size = 12, 4
    pool = _pool(8, m, 80, 4, copies=False)

    def run(cache_bytes):
        monkeypatch.setattr(hq_bounded, "_FOCAL_CACHE_BYTES", cache_bytes)
        calls.clear()
        result = select_team(pool, "hq", metric, variant="bounded", width=20, max_size=max_size)
        return _levels(result), len(calls)

    roomy, roomy_calls = run(1 << 30)
    assert roomy_calls == m  # each focal model's statistics once
    entry = m * m * 8 if metric in ("ck", "qs") else None  # the pair matrix alone
    if entry is not None:
        tight, tight_calls = run(5 * entry)  # room for 5 of the 12
        assert tight == roomy
        levels = len(roomy)
        assert tight_calls == m + (levels - 1) * (m - 5)
    none, _ = run(0)
    assert none == roomy
