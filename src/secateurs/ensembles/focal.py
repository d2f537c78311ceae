"""Focal diversity: each team's diversity measured where its members fail.

For each focal model F, its negatives are the selection samples F gets wrong. The metric of a
team T containing F is computed on F's negatives only; for each (F, team size) those values are
min-max normalised over the given set of teams that contain F; a team's focal diversity is the
average over its members F of the normalised values, weighted by the members' accuracy ranks
within the team (1 = least accurate, ties share the average rank) or a plain mean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .metrics import (
    DECIMALS,
    NEEDS_LABELS,
    SampleStats,
    check_metric,
    sample_stats,
    team_raw,
    to_score,
)

WEIGHTINGS = ("rank", "mean")
#: Reference resampling: 3 draws of 100 negatives (with replacement, as the released code does).
RESAMPLE_SIZE = 100
RESAMPLE_TIMES = 3


@dataclass(frozen=True)
class FocalStats:
    """For each focal model, the statistics of all M models on that model's negatives.

    ``draws[f]`` holds one SampleStats (all negatives) or RESAMPLE_TIMES of them (resampling).
    """

    draws: tuple[tuple[SampleStats, ...], ...]
    num_negatives: np.ndarray  # [M]

    @property
    def num_models(self) -> int:
        return len(self.draws)


def focal_stats(
    correct: np.ndarray,
    preds: np.ndarray,
    num_classes: int,
    metrics: tuple[str, ...] | list[str] = ("gd",),
    resample: bool = False,
    seed: int = 0,
    on_model: Callable[[], None] | None = None,
) -> FocalStats:
    """Per-focal-model statistics on the selection split (never the test split);
    ``on_model()`` after each focal model's (progress)."""
    correct = np.asarray(correct, dtype=bool)
    m = correct.shape[0]
    labels = any(check_metric(x) in NEEDS_LABELS for x in metrics)
    patterns = "en" in [check_metric(x) for x in metrics]
    rng = np.random.default_rng(seed)
    draws = []
    negs = np.zeros(m, dtype=np.int64)
    for f in range(m):
        neg = np.flatnonzero(~correct[f])
        negs[f] = neg.size
        sub_c, sub_p = correct[:, neg], preds[:, neg]
        if not resample or neg.size == 0:
            draws.append((sample_stats(sub_c, sub_p, num_classes, labels=labels, patterns=patterns),))
        else:
            draws.append(tuple(
                sample_stats(sub_c, sub_p, num_classes, weights=w, labels=labels, patterns=patterns)
                for w in _resample_weights(rng, neg.size)
            ))
        if on_model is not None:
            on_model()
    return FocalStats(tuple(draws), negs)


def _resample_weights(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """The reference's draws: RESAMPLE_TIMES draws of RESAMPLE_SIZE negatives, as counts."""
    return [
        np.bincount(rng.integers(0, n, size=RESAMPLE_SIZE), minlength=n).astype(np.float64)
        for _ in range(RESAMPLE_TIMES)
    ]


def member_weights(members: np.ndarray, accuracy: np.ndarray, weighting: str) -> np.ndarray:
    """[T, S] weight of each member: its accuracy rank within the team, or 1 (plain mean)."""
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"unknown focal weighting {weighting!r}; choose from {list(WEIGHTINGS)}")
    if weighting == "mean":
        return np.ones(members.shape, dtype=np.float64)
    a = np.asarray(accuracy, dtype=np.float64)[members]  # [T, S]
    below = (a[:, None, :] < a[:, :, None]).sum(axis=2)
    equal = (a[:, None, :] == a[:, :, None]).sum(axis=2)  # includes the member itself
    return 1.0 + below + 0.5 * (equal - 1)  # average ranks, as scipy's rankdata(method="average")


def focal_raw(
    metric: str, fstats: FocalStats, members: np.ndarray, focal: int
) -> np.ndarray:
    """Raw metric of teams (all containing ``focal``) on the focal model's negatives."""
    draws = fstats.draws[focal]
    total = np.zeros(members.shape[0])
    for st in draws:
        total += team_raw(metric, st, members, fstats.num_models)
    return total / len(draws)


def focal_diversity(
    metric: str,
    fstats: FocalStats,
    members: np.ndarray,
    accuracy: np.ndarray,
    weighting: str = "rank",
) -> np.ndarray:
    """Focal diversity of teams of one size ([T, S] members), normalised over exactly these teams.

    ``accuracy`` is every model's selection accuracy (for the rank weights). Values are in [0, 1],
    higher = more diverse, rounded to DECIMALS places. When all teams containing F share one value,
    their normalised value for F is 0.5.
    """
    metric = check_metric(metric)
    members = np.asarray(members, dtype=np.int64)
    if members.shape[0] == 0:
        return np.zeros(0)
    scores = np.empty(members.shape)
    for f in range(fstats.num_models):
        rows, pos = np.nonzero(members == f)
        if rows.size:
            scores[rows, pos] = to_score(metric, focal_raw(metric, fstats, members[rows], f))
    return normalise_focal(members, scores, accuracy, weighting)


def normalise_focal(
    members: np.ndarray, scores: np.ndarray, accuracy: np.ndarray, weighting: str = "rank"
) -> np.ndarray:
    """Steps 3-4 of focal diversity, from ``scores[t, p]``: the diversity score of team t on the
    negatives of its member at position p. Min-max per focal model over these teams, then the
    (rank-)weighted mean over each team's members."""
    members = np.asarray(members, dtype=np.int64)
    if members.shape[0] == 0:
        return np.zeros(0)
    scores = np.round(np.asarray(scores, dtype=np.float64), DECIMALS)
    flat_m, flat_s = members.ravel(), scores.ravel()
    m = int(flat_m.max()) + 1
    lo = np.full(m, np.inf)
    hi = np.full(m, -np.inf)
    np.minimum.at(lo, flat_m, flat_s)
    np.maximum.at(hi, flat_m, flat_s)
    lo_t, hi_t = lo[members], hi[members]
    span = hi_t - lo_t
    norm = np.where(span > 0, (scores - lo_t) / np.where(span > 0, span, 1.0), 0.5)
    w = member_weights(members, accuracy, weighting)
    return np.round((w * norm).sum(axis=1) / w.sum(axis=1), DECIMALS)


def plain_diversity(metric: str, stats: SampleStats, members: np.ndarray, num_models: int) -> np.ndarray:
    """Diversity score (higher = more diverse) of teams on all selection samples, not normalised."""
    metric = check_metric(metric)
    return np.round(to_score(metric, team_raw(metric, stats, members, num_models)), DECIMALS)
