"""Slow, obviously-correct implementations written from the definitions in
/work/shared/reference/ensemble-pruning.md: plain Python loops over samples, pairs and teams.
They share no code with secateurs.ensembles and are only used to check it."""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import combinations

import numpy as np

LOWER = {"qs", "cc", "ck", "fk"}


# ----------------------------------------------------------------------------- random pools
def random_pool(seed: int, m: int, n: int, c: int, copies: bool = True):
    """Probabilities [m, n, c], labels [n]: models of varied skill, some exact copies of model 0."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, n)
    probs = rng.dirichlet(np.full(c, 0.7), size=(m, n))
    skill = rng.uniform(0.0, 0.9, m)
    for i in range(m):
        boost = rng.random(n) < skill[i]
        probs[i, boost, labels[boost]] += 1.5
        if copies and i > 0 and rng.random() < 0.2:
            probs[i] = probs[0]
    probs /= probs.sum(axis=2, keepdims=True)
    return probs, labels


def preds_correct(probs, labels):
    preds = [[int(np.argmax(probs[i][k])) for k in range(len(labels))] for i in range(len(probs))]
    correct = [[preds[i][k] == int(labels[k]) for k in range(len(labels))] for i in range(len(probs))]
    return preds, correct


# ----------------------------------------------------------------------------- metrics
def pair_counts(ci, cj):
    n11 = n10 = n01 = n00 = 0
    for a, b in zip(ci, cj, strict=True):
        if a and b:
            n11 += 1
        elif a:
            n10 += 1
        elif b:
            n01 += 1
        else:
            n00 += 1
    return n11, n10, n01, n00


def _fallback(n11, n10, n01, n00):
    if n01 + n10 == 0:
        return 1.0
    if n11 + n00 == 0:
        return -1.0
    return 0.0


def qs(ci, cj):
    n11, n10, n01, n00 = pair_counts(ci, cj)
    den = n11 * n00 + n01 * n10
    return (n11 * n00 - n01 * n10) / den if den else _fallback(n11, n10, n01, n00)


def cc(ci, cj):
    n11, n10, n01, n00 = pair_counts(ci, cj)
    den = math.sqrt((n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00))
    return (n11 * n00 - n01 * n10) / den if den else _fallback(n11, n10, n01, n00)


def bd(ci, cj):
    n11, n10, n01, n00 = pair_counts(ci, cj)
    n = n11 + n10 + n01 + n00
    return (n01 + n10) / n if n else 0.0


def ck(pi, pj, c):
    n = len(pi)
    if n == 0:
        return 1.0
    po = sum(1 for a, b in zip(pi, pj, strict=True) if a == b) / n
    pe = sum((list(pi).count(k) / n) * (list(pj).count(k) / n) for k in range(c))
    if pe == 1.0:
        return 1.0
    return (po - pe) / (1 - pe)


def fk(team_preds, c):
    big_l = len(team_preds)
    n = len(team_preds[0])
    if n == 0:
        return 1.0
    pbar = 0.0
    totals = [0] * c
    for k in range(n):
        counts = [0] * c
        for i in range(big_l):
            counts[team_preds[i][k]] += 1
        pbar += (sum(x * x for x in counts) - big_l) / (big_l * (big_l - 1))
        for j in range(c):
            totals[j] += counts[j]
    pbar /= n
    pe = sum((x / (n * big_l)) ** 2 for x in totals)
    if pe == 1.0:
        return 1.0
    return (pbar - pe) / (1 - pe)


def _l(team_correct):
    return [sum(1 for row in team_correct if row[k]) for k in range(len(team_correct[0]))]


def kw(team_correct):
    big_l, n = len(team_correct), len(team_correct[0])
    if n == 0:
        return 0.0
    return sum(x * (big_l - x) for x in _l(team_correct)) / (n * big_l * big_l)


def gd(team_correct):
    big_l, n = len(team_correct), len(team_correct[0])
    if n == 0:
        return 0.0
    p = [0.0] * (big_l + 1)
    for x in _l(team_correct):
        p[big_l - x] += 1 / n  # exactly big_l - x members fail
    p1 = sum(i / big_l * p[i] for i in range(big_l + 1))
    p2 = sum(i * (i - 1) / (big_l * (big_l - 1)) * p[i] for i in range(big_l + 1))
    return 0.0 if p1 == 0 else 1 - p2 / p1


def en(team_correct):
    big_l, n = len(team_correct), len(team_correct[0])
    if n == 0:
        return 0.0
    return sum(min(x, big_l - x) for x in _l(team_correct)) / (n * (big_l - math.ceil(big_l / 2)))


def team_metric(metric, correct, preds, c, team, samples=None):
    """Raw metric of ``team`` (model indices) on ``samples`` (indices, repeats allowed)."""
    samples = range(len(correct[0])) if samples is None else samples
    tc = [[correct[i][k] for k in samples] for i in team]
    tp = [[preds[i][k] for k in samples] for i in team]
    if metric in ("qs", "cc", "bd", "ck"):
        vals = []
        for a, b in combinations(range(len(team)), 2):
            if metric == "ck":
                vals.append(ck(tp[a], tp[b], c))
            else:
                vals.append({"qs": qs, "cc": cc, "bd": bd}[metric](tc[a], tc[b]))
        return sum(vals) / len(vals)
    if metric == "fk":
        return fk(tp, c)
    return {"kw": kw, "gd": gd, "en": en}[metric](tc)


def score(metric, raw):
    return 1 - raw if metric in LOWER else raw


# ----------------------------------------------------------------------------- focal diversity
def rank_in_team(team, acc):
    out = []
    for m in team:
        lower = sum(1 for o in team if acc[o] < acc[m])
        equal = sum(1 for o in team if acc[o] == acc[m] and o != m)
        out.append(1 + lower + 0.5 * equal)
    return out


def focal_slow(metric, correct, preds, c, teams, acc, weighting="rank", negatives=None):
    """Focal diversity of each team; normalisation per (focal, size) over the given teams.

    ``negatives[f]`` optionally replaces model f's negatives by a list of sample sets whose raw
    values are averaged (the resampling variant)."""
    n = len(correct[0])
    raw = {}
    for t in teams:
        for f in t:
            if negatives is None:
                sets = [[k for k in range(n) if not correct[f][k]]]
            else:
                sets = negatives[f]
            vals = [team_metric(metric, correct, preds, c, t, s) for s in sets]
            raw[(t, f)] = float(np.round(score(metric, sum(vals) / len(vals)), 12))
    out = []
    for t in teams:
        w = rank_in_team(t, acc) if weighting == "rank" else [1.0] * len(t)
        total = 0.0
        for wf, f in zip(w, t, strict=True):
            group = [raw[(u, f)] for u in teams if f in u and len(u) == len(t)]
            lo, hi = min(group), max(group)
            norm = (raw[(t, f)] - lo) / (hi - lo) if hi > lo else 0.5
            total += wf * norm
        out.append(float(np.round(total / sum(w), 12)))
    return out


# ----------------------------------------------------------------------------- voting
def vote_slow(probs, labels, team, vote="soft", weights=None):
    n, c = len(labels), len(probs[0][0])
    right = 0
    for k in range(n):
        if vote in ("soft", "weighted"):
            w = [1.0] * len(team) if vote == "soft" else [weights[i] for i in team]
            s = [sum(wi * probs[i][k][j] for wi, i in zip(w, team, strict=True)) for j in range(c)]
            pred = s.index(max(s))
        else:
            votes = [0] * c
            for i in team:
                votes[int(np.argmax(probs[i][k]))] += 1
            if vote == "plurality":
                pred = votes.index(max(votes))
            else:
                best = max(votes)
                pred = votes.index(best) if 2 * best > len(team) else -1
        right += pred == labels[k]
    return right / n


# ----------------------------------------------------------------------------- HQ
def hq_slow(m, beta, max_size, div_fn, acc_fn):
    """HQ exactly as the reference's pseudo-code; returns [(size, candidates, pruned, kept)]."""
    pruned_all = []
    levels = []
    for size in range(2, max_size + 1):
        cands = [
            t for t in combinations(range(m), size)
            if not any(set(p) <= set(t) for p in pruned_all)
        ]
        if not cands:
            break
        div = div_fn(cands)
        acc = [acc_fn(t) for t in cands]
        order = sorted(range(len(cands)), key=lambda k: (div[k], acc[k], cands[k]))
        n_prune = math.floor(Fraction(str(beta)) * len(cands))
        pruned = sorted(cands[k] for k in order[:n_prune])
        kept = sorted(cands[k] for k in order[n_prune:])
        pruned_all += pruned
        levels.append((size, cands, pruned, kept))
    return levels


def recommend_slow(levels_kept, acc_fn, pool_acc, cost_fn):
    for kept in levels_kept:
        ok = [t for t in kept if acc_fn(t) >= pool_acc]
        if ok:
            return min(ok, key=lambda t: (-acc_fn(t), cost_fn(t), t))
    every = [t for kept in levels_kept for t in kept]
    if not every:
        return None
    return min(every, key=lambda t: (-acc_fn(t), len(t), cost_fn(t), t))


def draw(seed: int, **choices):
    """Sizes and options for one test case, drawn from the hypothesis-given seed so that every
    case has varied sizes (hypothesis alone favours the smallest values first).
    ``choices``: name=(lo, hi) for an integer range, or name=[options]."""
    rng = np.random.default_rng([seed, 12345])
    out = {}
    for name, spec in choices.items():
        if isinstance(spec, tuple):
            out[name] = int(rng.integers(spec[0], spec[1] + 1))
        else:
            out[name] = spec[int(rng.integers(len(spec)))]
    return out


# ----------------------------------------------------------------------------- bounded HQ
def bounded_slow(m, beta, max_size, width, div_fn, acc_fn, pool_acc):
    """The bounded-HQ rule of docs/ensembles.md with sets and loops: [(size, cands, pruned, kept)]."""
    kept = [(i,) for i in range(m)]
    pruned_pairs: set = set()
    blocked: set = set()
    levels = []
    for size in range(2, max_size + 1):
        children = sorted({tuple(sorted(set(u) | {j})) for u in kept for j in range(m) if j not in u})
        cands, refused = [], []
        for t in children:
            bad = any(p in pruned_pairs for p in combinations(t, 2)) or any(
                s in blocked for s in combinations(t, size - 1))
            (refused if bad else cands).append(t)
        if not cands:
            break
        div = dict(zip(cands, div_fn(cands), strict=True))
        acc = {t: acc_fn(t) for t in cands}
        order = sorted(cands, key=lambda t: (div[t], acc[t], t))
        n_prune = math.floor(Fraction(str(beta)) * len(cands))
        pruned, surv = order[:n_prune], order[n_prune:]
        keep = sorted(sorted(surv, key=lambda t: (-div[t], -acc[t], t))[:width])
        if size == 2:
            pruned_pairs = set(pruned)
        blocked = set(pruned) | set(refused)
        levels.append((size, cands, sorted(pruned), keep))
        kept = keep
        if any(acc[t] >= pool_acc for t in keep):
            break
    return levels


# ----------------------------------------------------------------------------- baselines
def kappa0(pi, pj, c):
    """Cohen's kappa of two label lists; 0 where undefined (p_e = 1)."""
    n = len(pi)
    po = sum(1 for a, b in zip(pi, pj, strict=True) if a == b) / n
    pe = sum((list(pi).count(k) / n) * (list(pj).count(k) / n) for k in range(c))
    return 0.0 if pe == 1.0 else (po - pe) / (1 - pe)


def votes_slow(preds, c, k):
    v = [0] * c
    for p in preds:
        v[p[k]] += 1
    return v


def rank_slow(probs, labels, criterion, size):
    preds, correct = preds_correct(probs, labels)
    m, n, c = len(probs), len(labels), len(probs[0][0])
    score = []
    for i in range(m):
        if criterion == "error":
            score.append(sum(1 for x in correct[i] if not x) / n)
        elif criterion == "kappa":
            score.append(min(kappa0(preds[i], preds[j], c) for j in range(m) if j != i))
        elif criterion == "margin-diversity":
            total = 0.0
            for k in range(n):
                if not correct[i][k]:
                    continue
                v = votes_slow(preds, c, k)
                vy = v[labels[k]]
                v2 = max(v[j] for j in range(c) if j != labels[k])
                margin = (vy - v2) / m
                if margin == 0:
                    margin = 0.01
                total += 0.2 * math.log(abs(margin)) + 0.8 * math.log(vy / m)
            score.append(total)
        else:  # contribution
            total = 0
            for k in range(n):
                v = votes_slow(preds, c, k)
                srt = sorted(v, reverse=True)
                vmax, vsec, vpred, vy = srt[0], srt[1], v[preds[i][k]], v[labels[k]]
                if correct[i][k] and vpred < vmax:
                    total += 2 * vmax - vpred
                elif correct[i][k]:
                    total += vsec
                else:
                    total += vy - vpred - vmax
            score.append(total)
    sign = 1 if criterion in ("error", "kappa") else -1
    return tuple(sorted(sorted(range(m), key=lambda i: (sign * score[i], i))[:size]))


def soft_pred_slow(probs, team, k):
    c = len(probs[0][0])
    s = [sum(probs[i][k][j] for i in team) for j in range(c)]
    return s.index(max(s))


def greedy_slow(probs, labels, criterion, size, p=0.075, rho=0.25):
    preds, correct = preds_correct(probs, labels)
    m, n = len(probs), len(labels)
    chosen = []

    def err(team):
        return sum(1 for k in range(n) if soft_pred_slow(probs, team, k) != labels[k]) / n

    for _ in range(size):
        rest = [i for i in range(m) if i not in chosen]
        if criterion == "reduced-error":
            pick = min(rest, key=lambda i: (err(chosen + [i]), i))
        elif criterion == "complementariness":
            def gain(i):
                return sum(1 for k in range(n) if correct[i][k] and (
                    not chosen or soft_pred_slow(probs, chosen, k) != labels[k]))
            pick = min(rest, key=lambda i: (-gain(i), i))
        elif criterion == "margin-distance":
            def dist(i):
                team = chosen + [i]
                tot = 0.0
                for k in range(n):
                    cs = sum(2 * correct[t][k] - 1 for t in team) / len(team)
                    tot += (cs - p) ** 2
                return tot / n
            pick = min(rest, key=lambda i: (dist(i), i))
        else:  # drep
            if not chosen:
                pick = min(rest, key=lambda i: (-sum(correct[i]), i))
            else:
                team_pred = [soft_pred_slow(probs, chosen, k) for k in range(n)]
                agree = {i: sum(1 for k in range(n) if preds[i][k] == team_pred[k]) / n
                         for i in rest}
                few = sorted(rest, key=lambda i: (agree[i], i))[: math.ceil(rho * len(rest))]
                pick = min(few, key=lambda i: (err(chosen + [i]), i))
        chosen.append(pick)
    return tuple(sorted(chosen))
