"""What a team selection returns, and the statistics reported for any set of teams."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TeamStats:
    """Summary of a set of teams' ensemble accuracies (selection split)."""

    count: int
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    beat_best_member: int  # ensemble accuracy strictly above its best member's
    reach_best_single: int  # at least the pool's best single model
    reach_pool: int  # at least the whole pool's ensemble

    @classmethod
    def of(
        cls,
        members: np.ndarray,
        accuracy: np.ndarray,
        model_accuracy: np.ndarray,
        pool_accuracy: float,
    ) -> TeamStats:
        if len(accuracy) == 0:
            return cls(0, None, None, None, None, 0, 0, 0)
        best_member = np.asarray(model_accuracy)[members].max(axis=1)
        return cls(
            count=int(len(accuracy)),
            min=float(accuracy.min()),
            max=float(accuracy.max()),
            mean=float(accuracy.mean()),
            std=float(accuracy.std()),
            beat_best_member=int((accuracy > best_member).sum()),
            reach_best_single=int((accuracy >= np.max(model_accuracy)).sum()),
            reach_pool=int((accuracy >= pool_accuracy).sum()),
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Level:
    """Teams of one size: how many were candidates, pruned, and the kept (or selected) ones."""

    size: int
    candidates: int
    pruned: int
    teams: np.ndarray  # [K, size] kept/selected teams, in team index order
    accuracy: np.ndarray  # [K] selection accuracy
    diversity: np.ndarray | None  # [K] (focal) diversity score, None when not computed
    stats: TeamStats  # of the kept teams
    pruned_stats: TeamStats | None = None  # of the pruned teams (HQ) or the unselected ones
    dropped: int = 0  # bounded HQ: survivors of the beta cut beyond the width cap
    refused: int = 0  # bounded HQ: children refused for containing a pruned team

    @property
    def kept(self) -> int:
        return int(self.teams.shape[0])

    def to_dict(self, max_teams: int | None = None) -> dict[str, Any]:
        k = self.kept if max_teams is None else min(self.kept, max_teams)
        out: dict[str, Any] = {
            "size": self.size,
            "candidates": self.candidates,
            "pruned": self.pruned,
            "kept": self.kept,
            "dropped": self.dropped,
            "refused": self.refused,
            "stats": self.stats.to_dict(),
            "pruned_stats": None if self.pruned_stats is None else self.pruned_stats.to_dict(),
            "teams": self.teams[:k].tolist(),
            "accuracy": self.accuracy[:k].tolist(),
            "diversity": None if self.diversity is None else self.diversity[:k].tolist(),
        }
        if k < self.kept:
            out["teams_truncated"] = True
        return out


@dataclass(frozen=True)
class TeamReport:
    """One team with its accuracies and cost."""

    indices: tuple[int, ...]
    names: tuple[str, ...]
    selection_accuracy: float
    test_accuracy: float | None
    cost: dict[str, float]
    diversity: float | None = None

    @property
    def size(self) -> int:
        return len(self.indices)

    def to_dict(self) -> dict[str, Any]:
        return {
            "indices": list(self.indices),
            "names": list(self.names),
            "size": self.size,
            "selection_accuracy": self.selection_accuracy,
            "test_accuracy": self.test_accuracy,
            "diversity": self.diversity,
            "cost": dict(self.cost),
        }


@dataclass
class SelectionResult:
    """The answer of one selection run (one metric): the recommended team and what led to it."""

    method: str
    metric: str | None
    focal: bool
    weighting: str
    resample: bool
    beta: float | None
    max_size: int
    vote: str
    seed: int
    names: tuple[str, ...]
    rule: str
    recommended: TeamReport | None
    pool: TeamReport
    best_single: TeamReport
    levels: list[Level]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    variant: str | None = None  # HQ: "exact" or "bounded", the search that ran
    criterion: str | None = None  # baselines: the ranking / greedy / cluster criterion
    width: int | None = None  # bounded HQ: the width cap W

    @property
    def teams_evaluated(self) -> int:
        return sum(lv.candidates for lv in self.levels)

    def to_dict(self, max_teams_per_level: int | None = None) -> dict[str, Any]:
        """JSON-serialisable summary; ``max_teams_per_level`` caps the listed kept teams."""
        return {
            "method": self.method,
            "metric": self.metric,
            "criterion": self.criterion,
            "focal": self.focal,
            "weighting": self.weighting,
            "resample": self.resample,
            "beta": self.beta,
            "variant": self.variant,
            "width": self.width,
            "max_size": self.max_size,
            "vote": self.vote,
            "seed": self.seed,
            "models": list(self.names),
            "rule": self.rule,
            "recommended": None if self.recommended is None else self.recommended.to_dict(),
            "pool": self.pool.to_dict(),
            "best_single": self.best_single.to_dict(),
            "teams_evaluated": self.teams_evaluated,
            "levels": [lv.to_dict(max_teams_per_level) for lv in self.levels],
            "notes": list(self.notes),
            "seconds": self.seconds,
        }
