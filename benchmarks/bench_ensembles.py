"""Ensemble pruning: all-team focal diversity against reference-style loops; exhaustive and HQ;
HQ on pools of 10 to 1,000 models (exact against bounded where both run).

The reference-style implementation below is written the way the released HQ / EnsembleBench code
computes focal diversity: negatives found by a Python loop over samples, then for every team and
each of its members, the metric on that member's negatives with one sklearn ``cohen_kappa_score``
call per pair (CK), four numpy sums per pair (BD), and Python loops over samples (KW, GD); then
min-max normalisation per (focal model, size) and the accuracy-rank-weighted mean (with real ranks,
not the released code's argsort indices).
"""

from __future__ import annotations

import math
import time
import tracemalloc
from itertools import combinations

import numpy as np

from secateurs.ensembles import (
    DEFAULT_WIDTH,
    PredictionPool,
    TeamAccuracy,
    focal_diversity,
    focal_raw,
    focal_stats,
    sample_stats,
    select_team,
    softmax,
)

METRICS = ("ck", "bd", "kw", "gd")


def synthetic_pool(m: int, n: int, c: int, seed: int = 0, acc=(0.70, 0.93)) -> PredictionPool:
    """Random pool with shared sample difficulty and confusable classes (CIFAR-like accuracies)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    hardness = rng.beta(0.5, 2.0, n)
    confuser = (labels + rng.integers(1, c, n)) % c
    target = rng.uniform(*acc, m)
    probs = np.empty((m, n, c), dtype=np.float32)
    for i in range(m):
        score = hardness + 0.35 * rng.random(n)
        correct = score <= np.quantile(score, target[i])
        other = (labels + rng.integers(1, c, n)) % c
        pred = np.where(correct, labels, np.where(rng.random(n) < 0.6, confuser, other))
        logits = rng.normal(0.0, 0.7, (n, c))
        logits[np.arange(n), pred] += rng.uniform(3.0, 6.0, n)
        probs[i] = softmax(logits)
    return PredictionPool.from_arrays([f"model-{i:02d}" for i in range(m)], probs, labels)


# ----------------------------------------------------------------------------- reference style
def _negatives(preds, labels, focal):
    out = []
    for k in range(len(labels)):  # the released code: a Python loop with .item() per sample
        if preds[focal][k] != labels[k]:
            out.append(k)
    return np.array(out, dtype=np.int64)


def _ref_metric(metric, team_preds, y):
    """team_preds: [L, n] predicted labels of the team on the focal negatives; y: their labels."""
    from sklearn.metrics import cohen_kappa_score

    big_l, n = team_preds.shape
    if metric == "ck":
        vals = [cohen_kappa_score(team_preds[i], team_preds[j])
                for i in range(big_l) for j in range(i + 1, big_l)]
        return float(np.mean(vals))
    if metric == "bd":
        vals = []
        for i in range(big_l):
            for j in range(i + 1, big_l):
                n11 = np.sum(np.logical_and(y == team_preds[i], y == team_preds[j]))
                n00 = np.sum(np.logical_and(y != team_preds[i], y != team_preds[j]))
                n01 = np.sum(np.logical_and(y != team_preds[i], y == team_preds[j]))
                n10 = np.sum(np.logical_and(y == team_preds[i], y != team_preds[j]))
                vals.append((n01 + n10) / (n11 + n10 + n01 + n00))
        return float(np.mean(vals))
    if metric == "kw":
        kw = 0.0
        for k in range(n):
            lz = list(team_preds[:, k]).count(y[k])
            kw += lz * (big_l - lz)
        return kw / (n * big_l * big_l)
    # gd
    p = np.zeros(big_l + 1)
    for k in range(n):
        fails = 0
        for i in range(big_l):
            if team_preds[i][k] != y[k]:
                fails += 1
        p[fails] += 1
    p /= n
    p1 = sum(i * p[i] / big_l for i in range(big_l + 1))
    p2 = sum(i * (i - 1) * p[i] / (big_l * (big_l - 1)) for i in range(big_l + 1))
    return 1.0 - p2 / p1


def reference_raw(metric, preds, labels, teams):
    """{(team, focal): raw metric on the focal model's negatives} by per-team, per-pair loops."""
    negs = {f: _negatives(preds, labels, f) for f in range(len(preds))}
    out = {}
    for team in teams:
        for f in team:
            idx = negs[f]
            out[(team, f)] = _ref_metric(metric, preds[list(team)][:, idx], labels[idx])
    return out


def reference_focal(metric, raw, teams, acc):
    """Normalise per (focal, size) over ``teams`` and take the accuracy-rank-weighted mean."""
    score = {k: (1 - v if metric == "ck" else v) for k, v in raw.items()}
    groups: dict[tuple[int, int], list[float]] = {}
    for (team, f), v in score.items():
        groups.setdefault((f, len(team)), []).append(round(v, 12))
    out = []
    for team in teams:
        ranks = [1 + sum(acc[o] < acc[m] for o in team)
                 + 0.5 * sum(acc[o] == acc[m] for o in team if o != m) for m in team]
        total = 0.0
        for r, f in zip(ranks, team, strict=True):
            g = groups[(f, len(team))]
            lo, hi = min(g), max(g)
            v = round(score[(team, f)], 12)
            total += r * ((v - lo) / (hi - lo) if hi > lo else 0.5)
        out.append(total / sum(ranks))
    return np.array(out)


# ----------------------------------------------------------------------------- ours
def ours_all_teams(metric, pool, teams_by_size):
    sel = pool.selection
    fs = focal_stats(sel.correct, sel.preds, sel.num_classes, [metric])
    return {size: focal_diversity(metric, fs, members, sel.accuracy)
            for size, members in teams_by_size.items()}, fs


def _subset(teams_by_size, fraction, rng):
    """A stratified random subset: ceil(fraction * count) teams of each size."""
    out = {}
    for size, members in teams_by_size.items():
        k = max(1, math.ceil(fraction * len(members)))
        pick = np.sort(rng.choice(len(members), k, replace=False))
        out[size] = [tuple(int(x) for x in members[i]) for i in pick]
    return out


def _focal_section(quick: bool) -> tuple[list[str], str]:
    m, n, c = (8, 2000, 10) if quick else (10, 10_000, 10)
    pool = synthetic_pool(m, n, c, seed=0)
    sel = pool.selection
    preds, labels = sel.preds, sel.labels
    teams_by_size = {s: np.array(list(combinations(range(m), s))) for s in range(2, m + 1)}
    total = sum(len(v) for v in teams_by_size.values())
    fraction = 0.25 if quick else 0.08
    rows = []
    for metric in METRICS:
        start = time.perf_counter()
        ours, fs = ours_all_teams(metric, pool, teams_by_size)
        t_ours = time.perf_counter() - start
        rng = np.random.default_rng(1)
        if metric == "bd":  # cheap enough to run on every team: compare the final focal values too
            subset = {s: [tuple(int(x) for x in t) for t in v] for s, v in teams_by_size.items()}
        else:
            subset = _subset(teams_by_size, fraction, rng)
        t_ref = 0.0
        timed = 0
        checked = 0
        for size, teams in subset.items():
            start = time.perf_counter()
            raw = reference_raw(metric, preds, labels, teams)
            took = time.perf_counter() - start
            t_ref += took * len(teams_by_size[size]) / len(teams)  # extrapolate per size
            timed += len(teams)
            members = np.array(teams)
            for f in range(m):
                rows_f = np.flatnonzero((members == f).any(axis=1))
                if rows_f.size == 0:
                    continue
                mine = focal_raw(metric, fs, members[rows_f], f)
                want = [raw[(teams[r], f)] for r in rows_f]
                np.testing.assert_allclose(mine, want, rtol=1e-9, atol=1e-12)
                checked += rows_f.size
            if metric == "bd":
                ref = reference_focal(metric, raw, teams, sel.accuracy)
                np.testing.assert_allclose(ours[size], ref, rtol=0, atol=1e-9)
        ratio = t_ref / t_ours
        assert ratio >= 100 or quick, f"{metric}: only {ratio:.0f}x faster than the loops"
        how = "all teams" if timed == total else f"{timed} of {total} teams, extrapolated per size"
        equal = (f"final focal diversity of all {total} teams and {checked} raw values equal"
                 if metric == "bd" else f"{checked} raw (team, focal) values equal")
        rows.append(f"| {metric.upper()} | {1000 * t_ours:.1f} ms | {t_ref:.1f} s ({how}) | "
                    f"**{ratio:,.0f}x** | {equal} |")
    head = (f"Pool: {m} models, {n:,} selection samples, {c} classes (synthetic, accuracies "
            f"{100 * sel.accuracy.min():.0f}-{100 * sel.accuracy.max():.0f}%); all {total} teams of "
            f"size 2..{m}, focal diversity on all negatives, rank-weighted.")
    table = [
        "| metric | ours: all teams, vectorised | reference-style loops | speed-up | values "
        "(asserted, rtol 1e-9) |",
        "|---|---|---|---|---|",
        *rows,
    ]
    return table, head


def _search_section(quick: bool) -> list[str]:
    n, c = (2000, 10) if quick else (10_000, 10)
    m16, m24 = (10, 14) if quick else (16, 24)
    rows = []
    pool16 = synthetic_pool(m16, n, c, seed=16)
    start = time.perf_counter()
    ex = select_team(pool16, "exhaustive", "gd")
    t_ex = time.perf_counter() - start
    # per-team baseline, as the reference computes each team's soft-vote accuracy
    rng = np.random.default_rng(2)
    every = [t for lv in ex.levels for t in lv.teams.tolist()]
    sample = [every[i] for i in rng.choice(len(every), 300 if not quick else 100, replace=False)]
    probs, labels = pool16.selection.probs, pool16.selection.labels
    start = time.perf_counter()
    slow_acc = [float((probs[t].mean(axis=0).argmax(axis=1) == labels).mean()) for t in sample]
    t_loop = (time.perf_counter() - start) * len(every) / len(sample)
    fast_acc = TeamAccuracy(pool16.selection).accuracy
    # float32 sums in another order may flip a near-tie: allow one sample in a thousand
    fast = [fast_acc(np.array([t]))[0] for t in sample]
    np.testing.assert_allclose(fast, slow_acc, rtol=0, atol=1e-3)
    per_team_ex = t_ex / ex.teams_evaluated
    rows.append(
        f"| exhaustive, sizes 2..{m16 - 1}, soft vote + focal GD | {m16} | {ex.teams_evaluated:,} | "
        f"{t_ex:.1f} s | per-team numpy loop for accuracy alone: {t_loop:.1f} s "
        f"(300 teams timed, extrapolated): **{t_loop / t_ex:.1f}x** |"
    )
    pool24 = synthetic_pool(m24, n, c, seed=24)
    start = time.perf_counter()
    hq = select_team(pool24, "hq", "gd", beta=0.1)
    t_hq = time.perf_counter() - start
    all24 = 2**m24 - m24 - 2
    levels = ", ".join(f"{lv.size}:{lv.candidates}" for lv in hq.levels)
    rec = hq.recommended
    rows.append(
        f"| HQ, beta 0.1, focal GD, sizes 2..{m24 - 1} | {m24} | {hq.teams_evaluated:,} "
        f"(per size {levels}) | {t_hq:.1f} s | exhaustive would evaluate {all24:,} teams: "
        f"~{all24 * per_team_ex / 3600:.1f} h at the 16-model rate; recommended "
        f"{rec.size} models, selection acc {100 * rec.selection_accuracy:.2f}% vs pool "
        f"{100 * hq.pool.selection_accuracy:.2f}% |"
    )
    return [
        f"Selection on synthetic pools of {n:,} selection samples, {c} classes:",
        "",
        "| search | models | teams evaluated | time | baseline / note |",
        "|---|---|---|---|---|",
        *rows,
    ]


def family_pool(m: int, n: int, c: int, seed: int = 0, families: int = 8) -> PredictionPool:
    """Pool with realistic structure: shared sample difficulty and a per-sample confusable class,
    models in families that share part of their noise (so errors are correlated within a family),
    skills spread so single models reach about 50-80% and the whole pool about 95%."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    diff = rng.beta(1.2, 4.0, n).astype(np.float32)
    conf = (labels + rng.integers(1, c, n)) % c
    fam = rng.standard_normal((families, n, c), dtype=np.float32)
    family = rng.integers(0, families, m)
    skill = rng.uniform(1.2, 2.2, m).astype(np.float32)
    probs = np.empty((m, n, c), dtype=np.float32)
    rows = np.arange(n)
    for start in range(0, m, 50):  # 50 models at a time bounds the temporaries
        sl = slice(start, min(m, start + 50))
        z = rng.standard_normal((sl.stop - sl.start, n, c), dtype=np.float32)
        z += 0.9 * fam[family[sl]]
        z[:, rows, labels] += skill[sl, None] * 2.2 * (1 - diff)[None]
        z[:, rows, conf] += 2.2 * diff[None]
        z -= z.max(axis=2, keepdims=True)
        np.exp(z, out=z)
        z /= z.sum(axis=2, keepdims=True)
        probs[sl] = z
    width = len(str(m - 1))
    return PredictionPool.from_arrays([f"model-{i:0{width}d}" for i in range(m)], probs, labels)


def _measured(fn):
    tracemalloc.start()
    start = time.perf_counter()
    out = fn()
    took = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, took, peak


def _scale_row(m, label, r, took, peak) -> str:
    rec = r.recommended
    team = "-" if rec is None else "{" + ",".join(str(i) for i in rec.indices) + "}"
    acc = "-" if rec is None else f"{100 * rec.selection_accuracy:.2f}"
    return (f"| {m:,} | {label} | {r.max_size} | {len(r.levels)} | {r.teams_evaluated:,} | "
            f"{took:.1f} s | {peak / 2**20:,.0f} MiB | {team} ({0 if rec is None else rec.size}) | "
            f"{acc} | {100 * r.pool.selection_accuracy:.2f} |")


def _scaling_section(quick: bool) -> list[str]:
    n, c = (2000, 10) if quick else (10_000, 10)
    sizes = (10, 30, 100) if quick else (10, 62, 200, 1000)
    exact_size = {10: 9, 30: 3, 62: 3}  # exact HQ to these sizes: seconds, not minutes
    rows, made_notes = [], []
    for m in sizes:
        start = time.perf_counter()
        pool = family_pool(m, n, c, seed=m)
        made = time.perf_counter() - start
        pool_mib = pool.selection.probs.nbytes / 2**20
        runs = []
        if m in exact_size:
            s = exact_size[m]
            runs.append((f"exact HQ, sizes 2..{s}", dict(variant="exact", max_size=s)))
            if s < m - 1:
                runs.append((f"bounded HQ W={DEFAULT_WIDTH}, sizes 2..{s}",
                             dict(variant="bounded", max_size=s)))
        runs.append((f"bounded HQ W={DEFAULT_WIDTH} (default sizes)", dict(variant="bounded")))
        if m == sizes[0]:
            runs.append(("auto (default)", dict()))
        for label, kw in runs:
            r, took, peak = _measured(
                lambda kw=kw, pool=pool: select_team(pool, "hq", "gd", beta=0.1, **kw))
            rows.append(_scale_row(m, f"{label} -> ran {r.variant}", r, took, peak))
        made_notes.append(f"M = {m:,}: pool {pool_mib:,.0f} MiB, generated in {made:.1f} s")
    return [
        f"HQ by focal GD, beta 0.1, soft vote, on synthetic pools of {n:,} selection samples and "
        f"{c} classes (`family_pool`: models in 8 families sharing part of their noise, a shared "
        "per-sample difficulty and confusable class). Peak memory is what the search allocates "
        "(tracemalloc), on top of the pool's own M x N x C float32 probabilities (M = 1,000: "
        f"{1000 * n * c * 4 / 2**20:,.0f} MiB). Bounded HQ stops after the first size where a "
        "kept team reaches the whole pool; where both run to the same size, exact and bounded are "
        "side by side.",
        "",
        "| models | search | max size | sizes run | teams evaluated | time | peak memory | team "
        "(size) | selection acc % | pool acc % |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Pools: " + "; ".join(made_notes) + ".",
    ]


def _label_counts_before(preds: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """CK/FK's label statistics as sample_stats computed them before 2026-12-03: float64 one-hot
    rows built by fancy indexing (on the Fortran-ordered column subset the focal loop passes),
    then their Gram matrix, and one bincount per model."""
    m, k = preds.shape
    onehot = np.zeros((m, k, num_classes))
    onehot[np.arange(m)[:, None], np.arange(k)[None, :], preds] = 1.0
    flat = onehot.reshape(m, k * num_classes)
    agree = flat @ flat.T
    hist = np.stack([np.bincount(preds[i], minlength=num_classes) for i in range(m)]).astype(float)
    return agree, hist @ hist.T


def _label_stats_section(quick: bool) -> list[str]:
    """Focal statistics of the label metrics (CK, FK) on a large pool: one per focal model."""
    m, n, c = (60, 2000, 10) if quick else (300, 2000, 10)
    pool = family_pool(m, n, c, seed=3)
    sel = pool.selection
    negatives = [np.flatnonzero(~sel.correct[f]) for f in range(m)]
    times: dict[str, list[float]] = {"before": [], "now": []}
    for _ in range(3):  # interleaved repeats, medians
        start = time.perf_counter()
        before = [_label_counts_before(sel.preds[:, neg], c) for neg in negatives]
        times["before"].append(time.perf_counter() - start)
        start = time.perf_counter()
        now = [sample_stats(sel.correct[:, neg], sel.preds[:, neg], c, patterns=False)
               for neg in negatives]
        times["now"].append(time.perf_counter() - start)
    for (agree, gram), st in zip(before, now, strict=True):
        assert np.array_equal(agree, st.agree) and np.array_equal(gram, st.class_gram)
    t_before, t_now = (float(np.median(times[k])) for k in ("before", "now"))
    _, took, _ = _measured(lambda: select_team(pool, "hq", "ck", beta=0.1))
    # agreement counts are a Gram matrix of one-hot rows: 2 x M^2 x (negatives x classes) FLOPs
    flops = sum(2 * m * m * neg.size * c for neg in negatives)
    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    a @ a
    start = time.perf_counter()
    a @ a
    rate = 2 * 2048**3 / (time.perf_counter() - start)  # float32 FLOP/s, measured now
    floor = flops / rate
    return [
        f"CK and FK need each pair's agreement on predicted labels over every focal model's "
        f"negatives: {m} focal models of a {m}-model pool (`family_pool`, {n:,} selection "
        f"samples, {c} classes), {flops / 1e9:.0f} GFLOP of one-hot Gram products. Median of 3 "
        "interleaved repeats; both give the same counts (asserted).",
        "",
        "| label statistics of every focal model | time | vs before | x FLOP floor |",
        "|---|---|---|---|",
        f"| before: float64 one-hot rows, Fortran-ordered subset | {t_before:.2f} s | 1.00x | "
        f"{t_before / floor:.1f}x |",
        f"| now: float32 (exact for whole-number weights up to 2^24), C-ordered | {t_now:.2f} s | "
        f"**{t_before / t_now:.1f}x** | {t_now / floor:.1f}x |",
        f"| FLOP floor ({flops / 1e9:.0f} GFLOP at {rate / 1e9:.0f} GFLOP/s, a float32 2048^2 "
        f"matmul measured now) | {floor:.2f} s | | 1x |",
        "",
        f"`select_team(pool, 'hq', 'ck')` on this pool, end to end (bounded HQ, statistics "
        f"computed as levels reach each focal model): {took:.1f} s.",
    ]


def run(quick: bool = False) -> str:
    table, head = _focal_section(quick)
    search = _search_section(quick)
    scaling = _scaling_section(quick)
    labels = _label_stats_section(quick)
    return "\n".join([
        "## Ensemble pruning: focal diversity, exhaustive search and HQ",
        "",
        head,
        "",
        *table,
        "",
        "The reference-style column times per-team, per-pair loops written as the released "
        "code computes them (sklearn `cohen_kappa_score` per pair for CK, Python loops over "
        "samples for KW and GD); where it would take minutes it is timed on a stratified random "
        "subset of teams and extrapolated per team size, as stated in the row.",
        "",
        *search,
        "",
        "### HQ on large pools: exact and bounded",
        "",
        *scaling,
        "",
        "### Label statistics for CK and FK on large pools",
        "",
        *labels,
        "",
        "Command: `python -m benchmarks ensembles` (`--quick`: smaller sizes, a smoke test)",
    ])
