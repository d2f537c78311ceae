"""Focal-diversity consensus: one recommendation from the HQ runs of several focal metrics.

HQ's papers name a consensus step without publishing its rule; this rule is ours
(reference/ensemble-baselines.md, docs/ensembles.md):

1. Run HQ once per focal metric m, giving the kept set H_m (teams of sizes 2 .. S_max).
2. Votes v(T) = number of metrics whose HQ kept T. Consensus set: v(T) >= q (default: the
   majority ceil(|metrics| / 2); q = |metrics| is the intersection, q = 1 the union).
3. Recommended: among consensus teams whose selection accuracy reaches the whole pool's, the
   smallest; ties by mean normalised focal diversity over the metrics that kept it (higher first),
   then selection accuracy (higher), then team index order. If none reaches the pool: the highest
   selection accuracy, then the fewest members, the higher mean diversity, team index order.
   If the consensus set is empty, q is lowered by one until it is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from .metrics import DECIMALS
from .results import SelectionResult, TeamReport
from .teams import keys_to_members, team_keys

CONSENSUS_RULE = (
    "Focal-diversity consensus (our rule): teams kept by the HQ runs of at least q of the metrics "
    "(default q = ceil(metrics / 2)); recommended: the smallest such team whose selection accuracy "
    "reaches the whole pool's, ties by mean normalised focal diversity over the metrics that kept "
    "it (higher first), then selection accuracy, then team index order; if none reaches the pool, "
    "the highest selection accuracy, then the fewest members, then diversity, then team index "
    "order; an empty consensus set lowers q by one until it is not empty. Chosen on the "
    "selection split only."
)


@dataclass
class ConsensusLevel:
    size: int
    teams: np.ndarray  # [K, size] in team index order
    votes: np.ndarray  # [K]
    accuracy: np.ndarray  # [K] selection accuracy
    diversity: np.ndarray  # [K] mean normalised focal diversity over the metrics that kept it

    def to_dict(self, max_teams: int | None = None) -> dict[str, Any]:
        k = len(self.teams) if max_teams is None else min(len(self.teams), max_teams)
        out = {"size": self.size, "teams": self.teams[:k].tolist(),
               "votes": self.votes[:k].tolist(), "accuracy": self.accuracy[:k].tolist(),
               "diversity": self.diversity[:k].tolist(), "count": int(len(self.teams))}
        if k < len(self.teams):
            out["teams_truncated"] = True
        return out


@dataclass
class ConsensusResult:
    metrics: tuple[str, ...]
    quorum: int  # the q used (after any lowering)
    quorum_requested: int
    levels: list[ConsensusLevel]
    recommended: TeamReport | None
    per_metric: dict[str, SelectionResult]
    rule: str = CONSENSUS_RULE
    notes: list[str] = field(default_factory=list)

    @property
    def pool(self) -> TeamReport:
        return next(iter(self.per_metric.values())).pool

    def to_dict(self, max_teams_per_level: int | None = None,
                include_per_metric: bool = True) -> dict[str, Any]:
        out = {
            "method": "consensus",
            "metrics": list(self.metrics),
            "quorum": self.quorum,
            "quorum_requested": self.quorum_requested,
            "rule": self.rule,
            "recommended": None if self.recommended is None else self.recommended.to_dict(),
            "pool": self.pool.to_dict(),
            "levels": [lv.to_dict(max_teams_per_level) for lv in self.levels],
            "notes": list(self.notes),
        }
        if include_per_metric:
            out["per_metric"] = [r.to_dict(max_teams_per_level) for r in self.per_metric.values()]
        return out


def check_quorum(quorum, num_metrics: int) -> int:
    if quorum is None:
        return math.ceil(num_metrics / 2)
    if isinstance(quorum, bool) or not isinstance(quorum, (int, np.integer)) or not (
            1 <= quorum <= num_metrics):
        raise ConfigError(f"quorum must be an integer from 1 to {num_metrics} (the number of "
                          f"metrics), got {quorum!r}")
    return int(quorum)


def _tally(results: dict[str, SelectionResult]) -> dict[int, tuple]:
    """Per size: unique keys, votes, accuracy, mean diversity (over the metrics that kept it)."""
    by_size: dict[int, list] = {}
    for res in results.values():
        for lv in res.levels:
            if lv.kept:
                by_size.setdefault(lv.size, []).append(lv)
    out = {}
    for size, lvs in by_size.items():
        keys = np.concatenate([team_keys(lv.teams) for lv in lvs])
        acc = np.concatenate([lv.accuracy for lv in lvs])
        div = np.concatenate([lv.diversity if lv.diversity is not None
                              else np.full(lv.kept, np.nan) for lv in lvs])
        uniq, inv = np.unique(keys, return_inverse=True)
        inv = inv.ravel()
        votes = np.bincount(inv, minlength=uniq.size)
        dsum = np.bincount(inv, weights=np.nan_to_num(div), minlength=uniq.size)
        best_acc = np.full(uniq.size, -np.inf)
        np.maximum.at(best_acc, inv, acc)  # equal across metrics; max keeps it order-free
        out[size] = (uniq, votes, best_acc, np.round(dsum / votes, DECIMALS))
    return out


def consensus_from(results: dict[str, SelectionResult], quorum: int | None = None,
                   recommend=None) -> tuple[int, int, list[ConsensusLevel], tuple | None]:
    """The consensus levels and the chosen (size, row) from per-metric HQ results.

    ``recommend`` is unused hook space; the rule is fixed (see module docstring).
    """
    if not results:
        raise ConfigError("consensus needs at least one metric")
    q_req = check_quorum(quorum, len(results))
    tally = _tally(results)
    pool_acc = next(iter(results.values())).pool.selection_accuracy
    q = q_req
    while True:
        levels = []
        for size in sorted(tally):
            uniq, votes, acc, div = tally[size]
            sel = votes >= q
            if sel.any():
                levels.append(ConsensusLevel(size, keys_to_members(uniq[sel], size), votes[sel],
                                             acc[sel], div[sel]))
        if levels or q == 1:
            break
        q -= 1
    choice = None
    for lv in levels:  # ascending size
        ok = np.flatnonzero(lv.accuracy >= pool_acc)
        if ok.size:
            i = ok[np.lexsort((ok, -lv.accuracy[ok], -lv.diversity[ok]))[0]]
            choice = (lv, int(i))
            break
    if choice is None and levels:
        best = None
        for lv in levels:
            i = int(np.lexsort((np.arange(len(lv.teams)), -lv.diversity, -lv.accuracy))[0])
            key = (-lv.accuracy[i], lv.size, -lv.diversity[i])
            if best is None or key < best[0]:
                best = (key, lv, i)
        choice = (best[1], best[2])
    return q, q_req, levels, choice
