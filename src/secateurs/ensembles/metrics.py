"""Diversity metrics of many teams at once, from per-pair counts computed by matrix products.

Every metric is a function of a few sufficient statistics of the M models on a (weighted) set of
samples: how often each pair is right together (``Cor @ Cor.T``), how often each pair predicts the
same label (one-hot products), each pair's product of class histograms, and, for the entropy
measure only, the distinct correctness patterns across models. A team's value then follows from
quadratic forms ``b.T @ X @ b`` of its 0/1 membership row ``b``, so thousands of teams cost a
handful of small matrix products and no loop over samples or pairs.

Raw definitions (pairwise ones averaged over the team's pairs) follow the reference exactly;
degenerate denominators get the defined values listed in ``DEGENERATE`` (see docs/ensembles.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .teams import chunks

METRICS = ("qs", "cc", "bd", "ck", "fk", "kw", "gd", "en")
PAIRWISE = ("qs", "cc", "bd", "ck")
#: Metrics where a *lower* raw value means more diverse; their diversity score is 1 - raw.
LOWER_IS_DIVERSE = ("qs", "cc", "ck", "fk")
NEEDS_LABELS = ("ck", "fk")
METRIC_NAMES = {
    "qs": "Q statistic",
    "cc": "correlation coefficient",
    "bd": "binary disagreement",
    "ck": "Cohen's kappa",
    "fk": "Fleiss' kappa",
    "kw": "Kohavi-Wolpert variance",
    "gd": "generalized diversity",
    "en": "entropy measure",
}
#: Raw value on an empty sample set: no diversity observed.
EMPTY_VALUE = {"qs": 1.0, "cc": 1.0, "bd": 0.0, "ck": 1.0, "fk": 1.0, "kw": 0.0, "gd": 0.0, "en": 0.0}
DEGENERATE = {
    "qs": "denominator 0: 1 if the pair never disagrees on correctness, -1 if it always does, "
    "else 0",
    "cc": "denominator 0 (a model always right or always wrong): same rule as QS",
    "bd": "no samples: 0",
    "ck": "p_e = 1 (both predict one same class everywhere): 1",
    "fk": "P_e = 1 (all members predict one same class everywhere): 1",
    "kw": "no samples: 0",
    "gd": "p(1) = 0 (no member ever fails): 0",
    "en": "no samples: 0",
}
#: Values are rounded to this many decimals so that mathematically equal values compare equal.
DECIMALS = 12
_CHUNK_ELEMENTS = 1 << 22


def check_metric(metric: str) -> str:
    m = str(metric).lower()
    if m not in METRICS:
        raise ConfigError(f"unknown diversity metric {metric!r}; choose from {list(METRICS)}")
    return m


def to_score(metric: str, raw: np.ndarray | float) -> np.ndarray | float:
    """Raw metric -> diversity score where higher means more diverse."""
    return 1.0 - raw if metric in LOWER_IS_DIVERSE else raw


@dataclass(frozen=True)
class SampleStats:
    """Sufficient statistics of M models on a weighted sample set (weights are multiplicities)."""

    n: float  # total weight (number of samples)
    n_correct: np.ndarray  # [M] weighted count of samples each model gets right
    both_correct: np.ndarray  # [M, M] weighted count right together (diagonal = n_correct)
    agree: np.ndarray | None  # [M, M] weighted count of equal predicted labels (diagonal = n)
    class_gram: np.ndarray | None  # [M, M] H @ H.T with H[i, c] = weighted count of i predicting c
    patterns: np.ndarray | None  # [U, M] distinct correctness patterns (0/1)
    pattern_weights: np.ndarray | None  # [U]


def sample_stats(
    correct: np.ndarray,
    preds: np.ndarray | None,
    num_classes: int,
    weights: np.ndarray | None = None,
    labels: bool = True,
    patterns: bool = True,
) -> SampleStats:
    """Statistics of models ``correct``/``preds`` ([M, N]) over samples with optional weights."""
    correct = np.asarray(correct, dtype=bool)
    m, n = correct.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    # Counts are sums of weights: with whole-number weights totalling at most 2**24, every partial
    # sum is an integer float32 holds exactly, so the products run in float32 (2-3x faster than
    # float64 on CPU, same results); other weights are summed in float64.
    exact32 = bool(np.all(w == np.round(w))) and float(np.abs(w).sum()) <= 2.0**24
    dtype = np.float32 if exact32 else np.float64
    unit = weights is None or bool(np.all(w == 1))
    wd = w.astype(dtype)
    cw = correct.astype(dtype)
    n_correct = correct.astype(np.float64) @ w
    both = np.zeros((m, m))
    for sl in chunks(n, max(1, _CHUNK_ELEMENTS // max(m, 1))):
        part = cw[:, sl]
        both += (part if unit else part * wd[sl]) @ part.T
    agree = gram = None
    if labels:
        if preds is None:
            raise ValueError("label statistics need predictions")
        preds = np.ascontiguousarray(preds)  # a column subset is Fortran-ordered: copies below
        agree = np.zeros((m, m))
        classes = np.arange(num_classes)
        step = max(1, _CHUNK_ELEMENTS // max(m * num_classes, 1))
        for sl in chunks(n, step):
            k = sl.stop - sl.start
            # each model's one-hot predictions, (m, k * classes): agreement counts are their Gram
            flat = (preds[:, sl, None] == classes).astype(dtype).reshape(m, k * num_classes)
            agree += (flat if unit else flat * np.repeat(wd[sl], num_classes)) @ flat.T
        codes = (preds + num_classes * np.arange(m)[:, None]).ravel()
        hist = np.bincount(codes, weights=np.tile(w, m), minlength=m * num_classes)
        hist = hist.reshape(m, num_classes)
        gram = hist @ hist.T
    pats = pat_w = None
    if patterns:
        # Each sample's pattern of right and wrong models, as bytes (8 models a byte: any M).
        codes = np.packbits(correct, axis=0).T  # (N, ceil(M / 8))
        uniq, inverse = np.unique(codes, axis=0, return_inverse=True)
        pat_w = np.bincount(inverse.ravel(), weights=w, minlength=len(uniq))
        keep = pat_w > 0
        uniq, pat_w = uniq[keep], pat_w[keep]
        pats = np.unpackbits(uniq, axis=1, count=m).astype(np.float64)
    return SampleStats(float(w.sum()), n_correct, both, agree, gram, pats, pat_w)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def pair_matrix(metric: str, st: SampleStats) -> np.ndarray:
    """[M, M] raw pairwise metric for every pair (diagonal meaningless, set to 0)."""
    n = st.n
    k = st.both_correct
    ni = st.n_correct[:, None]
    nj = st.n_correct[None, :]
    n11, n10, n01 = k, ni - k, nj - k
    n00 = n - ni - nj + k
    if metric in ("qs", "cc"):
        num = n11 * n00 - n01 * n10
        if metric == "qs":
            den = n11 * n00 + n01 * n10
        else:
            den = np.sqrt(np.maximum((n11 + n10) * (n01 + n00) * (n11 + n01) * (n10 + n00), 0.0))
        fallback = np.where(n01 + n10 == 0, 1.0, np.where(n11 + n00 == 0, -1.0, 0.0))
        v = np.where(den > 0, _safe_div(num, den), fallback)
    elif metric == "bd":
        v = (n01 + n10) / n if n > 0 else np.zeros_like(k)
    elif metric == "ck":
        assert st.agree is not None and st.class_gram is not None
        n2 = n * n
        full = st.class_gram >= n2  # p_e = 1 (integer counts: exact)
        po = st.agree / n if n > 0 else np.ones_like(k)
        pe = st.class_gram / n2 if n > 0 else np.ones_like(k)
        v = np.where(full, 1.0, _safe_div(po - pe, np.where(full, 1.0, 1.0 - pe)))
    else:
        raise ValueError(f"{metric} is not pairwise")
    v = np.array(v, dtype=np.float64)
    np.fill_diagonal(v, 0.0)
    return v


def _quad(b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Row-wise b.T @ x @ b for a [T, M] 0/1 matrix."""
    return np.einsum("tm,tm->t", b @ x, b)


def team_raw_matrix(metric: str, st: SampleStats, b: np.ndarray) -> np.ndarray:
    """Raw metric for teams given as a [T, M] 0/1 matrix (each row 2 or more members)."""
    metric = check_metric(metric)
    t = b.shape[0]
    size = b.sum(axis=1)
    if st.n <= 0:
        return np.full(t, EMPTY_VALUE[metric])
    n = st.n
    if metric in PAIRWISE:
        return _quad(b, pair_matrix(metric, st)) / (size * (size - 1))
    if metric in ("kw", "gd"):
        s1 = b @ st.n_correct  # sum over samples of l(n)
        s2 = _quad(b, st.both_correct)  # sum over samples of l(n)^2
        if metric == "kw":
            return (size * s1 - s2) / (n * size * size)
        f1 = size * n - s1  # sum of failures
        f2 = size * size * n - 2 * size * s1 + s2  # sum of failures squared
        p1 = f1 / (n * size)
        p2 = (f2 - f1) / (n * size * (size - 1))
        return np.where(f1 > 0, 1.0 - _safe_div(p2, p1), 0.0)
    if metric == "fk":
        assert st.agree is not None and st.class_gram is not None
        sa = _quad(b, st.agree)
        sg = _quad(b, st.class_gram)
        pbar = (sa - size * n) / (n * size * (size - 1))
        pe_den = n * n * size * size
        pe = sg / pe_den
        full = sg >= pe_den
        return np.where(full, 1.0, _safe_div(pbar - pe, np.where(full, 1.0, 1.0 - pe)))
    # en: needs the distribution of l(n), from the distinct correctness patterns
    assert st.patterns is not None and st.pattern_weights is not None
    out = np.empty(t)
    step = max(1, _CHUNK_ELEMENTS // max(len(st.pattern_weights), 1))
    for sl in chunks(t, step):
        lvec = b[sl] @ st.patterns.T  # [t, U] members right on each pattern
        sz = size[sl][:, None]
        out[sl] = (np.minimum(lvec, sz - lvec) @ st.pattern_weights) / (
            n * (size[sl] - np.ceil(size[sl] / 2))
        )
    return out


def _pair_sum(x: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Row-wise sum of x[i, k] over all ordered (i, k) in each team (diagonal included)."""
    return x[members[:, :, None], members[:, None, :]].sum(axis=(1, 2))


def team_raw_members(metric: str, st: SampleStats, members: np.ndarray) -> np.ndarray:
    """Raw metric for teams given as [T, S] member arrays, by gathers: O(T S^2), not O(T M^2)."""
    metric = check_metric(metric)
    members = np.asarray(members, dtype=np.int64)
    t, size = members.shape
    if st.n <= 0:
        return np.full(t, EMPTY_VALUE[metric])
    n = st.n
    if metric in PAIRWISE:
        return _pair_sum(pair_matrix(metric, st), members) / (size * (size - 1))
    if metric in ("kw", "gd"):
        s1 = st.n_correct[members].sum(axis=1)
        s2 = _pair_sum(st.both_correct, members)
        if metric == "kw":
            return (size * s1 - s2) / (n * size * size)
        f1 = size * n - s1
        f2 = size * size * n - 2 * size * s1 + s2
        p1 = f1 / (n * size)
        p2 = (f2 - f1) / (n * size * (size - 1))
        return np.where(f1 > 0, 1.0 - _safe_div(p2, p1), 0.0)
    if metric == "fk":
        assert st.agree is not None and st.class_gram is not None
        sa = _pair_sum(st.agree, members)
        sg = _pair_sum(st.class_gram, members)
        pbar = (sa - size * n) / (n * size * (size - 1))
        pe_den = n * n * size * size
        pe = sg / pe_den
        full = sg >= pe_den
        return np.where(full, 1.0, _safe_div(pbar - pe, np.where(full, 1.0, 1.0 - pe)))
    assert st.patterns is not None and st.pattern_weights is not None
    lvec = st.patterns[:, members].sum(axis=2).T  # [T, U] members right on each pattern
    return (np.minimum(lvec, size - lvec) @ st.pattern_weights) / (n * (size - np.ceil(size / 2)))


def pair_team_raw(pairs: np.ndarray, members: np.ndarray, chunk: int = 1 << 14) -> np.ndarray:
    """A pairwise metric's raw value for teams given as [T, S] member arrays, from its
    ``pair_matrix`` (what ``team_raw_members`` computes, for a matrix kept between calls)."""
    members = np.asarray(members, dtype=np.int64)
    size = members.shape[1]
    out = np.empty(members.shape[0])
    for sl in chunks(members.shape[0], max(1, min(chunk, _CHUNK_ELEMENTS // max(size**2, 1)))):
        out[sl] = _pair_sum(pairs, members[sl]) / (size * (size - 1))
    return out


def team_raw(
    metric: str, st: SampleStats, members: np.ndarray, num_models: int, chunk: int = 1 << 14
) -> np.ndarray:
    """Raw metric for teams given as [T, S] member arrays, chunked to bound memory."""
    members = np.asarray(members, dtype=np.int64)
    out = np.empty(members.shape[0])
    if members.shape[0] == 0:
        return out
    per_team = members.shape[1] ** 2 + (
        members.shape[1] * len(st.pattern_weights) if st.patterns is not None else 0
    )
    chunk = max(1, min(chunk, _CHUNK_ELEMENTS // max(per_team, 1)))
    for sl in chunks(members.shape[0], chunk):
        out[sl] = team_raw_members(metric, st, members[sl])
    return out


def team_metrics(
    correct: np.ndarray,
    preds: np.ndarray,
    num_classes: int,
    team: Sequence[int],
    metrics: Sequence[str] = METRICS,
) -> dict[str, float]:
    """Every requested raw metric of one team (indices into the rows of correct/preds)."""
    idx = np.asarray(sorted(team))
    st = sample_stats(correct[idx], preds[idx], num_classes)
    b = np.ones((1, len(idx)))
    return {m: float(team_raw_matrix(check_metric(m), st, b)[0]) for m in metrics}
