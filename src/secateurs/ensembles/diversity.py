"""Every metric's raw value for one team: on all selection samples, or on each member's negatives."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from .metrics import METRICS, check_metric, sample_stats, team_raw_matrix
from .pool import PredictionPool


def _team(pool: PredictionPool, team: Sequence[str | int]) -> np.ndarray:
    idx = np.asarray(pool.index_of(team), dtype=np.int64)
    if len(idx) < 2:
        raise ConfigError(f"a team needs at least 2 models, got {list(team)}")
    return idx


def team_diversity(
    pool: PredictionPool, team: Sequence[str | int], metrics: Sequence[str] = METRICS
) -> dict[str, float]:
    """Raw value of each metric for ``team`` on the whole selection split."""
    idx = _team(pool, team)
    metrics = [check_metric(m) for m in metrics]
    sel = pool.selection
    st = sample_stats(sel.correct[idx], sel.preds[idx], sel.num_classes)
    b = np.ones((1, len(idx)))
    return {m: float(team_raw_matrix(m, st, b)[0]) for m in metrics}


def team_focal_diversity(
    pool: PredictionPool, team: Sequence[str | int], metrics: Sequence[str] = METRICS
) -> dict[str, dict[str, float]]:
    """For each member as focal model: raw metrics of ``team`` on that member's negatives
    (selection samples it gets wrong), before any normalisation. Adds ``negatives`` (count)."""
    idx = _team(pool, team)
    metrics = [check_metric(m) for m in metrics]
    sel = pool.selection
    c, p = sel.correct[idx], sel.preds[idx]
    b = np.ones((1, len(idx)))
    out: dict[str, dict[str, float]] = {}
    for k, i in enumerate(idx):
        neg = ~c[k]
        st = sample_stats(c[:, neg], p[:, neg], sel.num_classes)
        row = {m: float(team_raw_matrix(m, st, b)[0]) for m in metrics}
        row["negatives"] = int(neg.sum())
        out[pool.names[i]] = row
    return out
