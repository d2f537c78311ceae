"""One interface for every team selection: functions over a PredictionPool, and scikit-learn
style estimators (settings in the constructor, ``fit(probs, labels)`` does the work, results in
trailing-underscore attributes).

    HQ(metric="gd", beta=0.1).fit(P, y).team_
    GreedySelection(criterion="reduced-error", size=3).fit(P, y).team_names_
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from .baselines import BASELINES, baseline_team, check_baseline, check_size, describe
from .consensus import ConsensusResult, consensus_from
from .hq_bounded import DEFAULT_WIDTH
from .pool import PredictionPool
from .results import SelectionResult
from .selection import check_metrics, check_vote_weights, report_team, select_team
from .teams import DEFAULT_MAX_TEAMS
from .voting import direct_correct_counts


def select_baseline(pool: PredictionPool, method: str, criterion: str | None = None,
                    size: int | None = None, seed: int = 0, vote: str = "soft",
                    weights: Sequence[float] | None = None) -> SelectionResult:
    """A baseline's team of ``size`` models (random, rank, greedy, cluster; see docs)."""
    if not isinstance(pool, PredictionPool):
        raise ConfigError(f"expected a PredictionPool, got {type(pool).__name__}")
    method, criterion = check_baseline(method, criterion)
    if size is None:
        raise ConfigError(f"the {method} baseline needs a team size (--size K / size=K)")
    size = check_size(size, pool.num_models)
    vote, weights = check_vote_weights(pool, vote, weights)
    start = time.perf_counter()
    team = baseline_team(pool.selection, method, criterion, size, int(seed))
    # --- chosen on the selection split; the test split is read for reporting only ---
    sel_acc = direct_correct_counts(pool.selection, team[None], vote, weights)[0] / (
        pool.selection.num_samples)
    everyone = np.arange(pool.num_models)
    pool_acc = direct_correct_counts(pool.selection, everyone[None], vote, weights)[0] / (
        pool.selection.num_samples)
    best = int(np.argmax(pool.selection.accuracy))
    return SelectionResult(
        method=method, metric=None, focal=False, weighting="rank", resample=False, beta=None,
        max_size=size, vote=vote, seed=int(seed), names=pool.names,
        rule=describe(method, criterion, size, int(seed)),
        recommended=report_team(pool, team, sel_acc, vote, weights),
        pool=report_team(pool, everyone, pool_acc, vote, weights),
        best_single=report_team(pool, [best], pool.selection.accuracy[best], vote, weights),
        levels=[], notes=[], seconds=time.perf_counter() - start, criterion=criterion,
    )


def select_consensus(pool: PredictionPool, metrics: Sequence[str] = ("gd", "kw", "ck", "bd"),
                     quorum: int | None = None, **hq: Any) -> ConsensusResult:
    """Run HQ once per focal metric and combine the kept sets by metric voting (our rule)."""
    metrics = check_metrics(metrics)  # a string is one metric, not its letters
    hq.pop("method", None)
    per = select_team(pool, "hq", list(metrics), **hq)
    q, q_req, levels, choice = consensus_from(per, quorum)
    notes = []
    if q < q_req:
        notes.append(f"no team reached the quorum {q_req}; lowered it to {q}")
    recommended = None
    if choice is not None:
        lv, i = choice
        r0 = next(iter(per.values()))
        recommended = report_team(pool, lv.teams[i], lv.accuracy[i], r0.vote,
                                  _weights_of(pool, r0.vote, hq.get("weights")),
                                  float(lv.diversity[i]))
    else:
        notes.append("no HQ run kept any team, so there is no recommendation")
    return ConsensusResult(tuple(metrics), q, q_req, levels, recommended, per, notes=notes)


def _weights_of(pool: PredictionPool, vote: str, weights):
    return check_vote_weights(pool, vote, weights)[1]


#: Every baseline the comparison runs: (method, criterion).
COMPARE_BASELINES = tuple((m, c) for m, crits in BASELINES.items() for c in crits)


def compare_selections(pool: PredictionPool, reference: SelectionResult | ConsensusResult,
                       seed: int = 0, vote: str | None = None,
                       baselines: Sequence[tuple[str, str]] = COMPARE_BASELINES
                       ) -> dict[str, Any]:
    """HQ's (or the consensus's) recommended team next to every baseline at the same size.

    Rows give selection and test accuracy (test only when the pool has a test split) and cost:
    size / M and, when costs give them, the MACs (and parameters) fraction of the whole pool.
    """
    rec = reference.recommended
    if rec is None:
        raise ConfigError("the selection made no recommendation, so there is nothing to compare")
    vote = vote or (reference.vote if isinstance(reference, SelectionResult)
                    else next(iter(reference.per_metric.values())).vote)
    size = rec.size
    if isinstance(reference, ConsensusResult):
        label, method = f"consensus ({', '.join(reference.metrics)}; q={reference.quorum})", "consensus"
    elif reference.criterion is not None:
        label, method = f"{reference.method} ({reference.criterion})", reference.method
    else:
        detail = ", ".join(x for x in (reference.metric, reference.variant) if x)
        label, method = f"{reference.method} ({detail})", reference.method
    rows = [_row(label, method, reference.criterion if isinstance(reference, SelectionResult)
                 else None, rec)]
    for method, criterion in baselines:
        res = select_baseline(pool, method, criterion, size, seed=seed, vote=vote)
        rows.append(_row(f"{method} ({criterion})", method, criterion, res.recommended))
    return {"size": size, "num_models": pool.num_models, "vote": vote,
            "has_test": pool.test is not None, "rows": rows,
            "pool": _row("whole pool", "pool", None, reference.pool)}


def _row(label: str, method: str, criterion: str | None, rep) -> dict[str, Any]:
    return {
        "label": label, "method": method, "criterion": criterion,
        "indices": list(rep.indices), "names": list(rep.names), "size": rep.size,
        "selection_accuracy": rep.selection_accuracy, "test_accuracy": rep.test_accuracy,
        "size_fraction": rep.cost["size_fraction"],
        "macs_fraction": rep.cost.get("macs_fraction"),
        "params_fraction": rep.cost.get("params_fraction"),
    }


# ----------------------------------------------------------------------------- estimators
def as_pool(probs: Any, labels: Any = None, names: Sequence[str] | None = None,
            test_probs: Any = None, test_labels: Any = None,
            costs: Mapping[str, Mapping[str, float]] | None = None) -> PredictionPool:
    """A PredictionPool as is, or arrays [M, N, C] + labels [N] (names default model-0, ...)."""
    if isinstance(probs, PredictionPool):
        if labels is not None or test_probs is not None:
            raise ConfigError("fit(pool): labels and test arrays come with the PredictionPool")
        return probs
    if labels is None:
        raise ConfigError("fit(probs, labels): labels are required with a probability array")
    m = len(probs)
    width = len(str(max(m - 1, 0)))
    names = [f"model-{i:0{width}d}" for i in range(m)] if names is None else list(names)
    return PredictionPool.from_arrays(names, probs, labels, test_probs, test_labels, costs=costs)


class _Selector:
    """fit(probs, labels) -> self; the chosen team in ``team_`` (indices) and ``team_names_``."""

    def fit(self, probs: Any, labels: Any = None, *, names: Sequence[str] | None = None,
            test_probs: Any = None, test_labels: Any = None,
            costs: Mapping[str, Mapping[str, float]] | None = None) -> _Selector:
        pool = as_pool(probs, labels, names, test_probs, test_labels, costs)
        self.result_ = self._run(pool)
        rec = self.result_.recommended
        self.team_ = None if rec is None else tuple(rec.indices)
        self.team_names_ = None if rec is None else tuple(rec.names)
        self.selection_accuracy_ = None if rec is None else rec.selection_accuracy
        self.test_accuracy_ = None if rec is None else rec.test_accuracy
        self.pool_accuracy_ = self.result_.pool.selection_accuracy
        self.names_ = pool.names
        return self

    def _run(self, pool: PredictionPool):  # pragma: no cover - abstract
        raise NotImplementedError

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.endswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class HQ(_Selector):
    """Hierarchical pruning by focal diversity (exact where it fits, else bounded; see docs).

    After fit: ``team_``, ``team_names_``, ``selection_accuracy_``, ``test_accuracy_``,
    ``variant_`` ("exact" or "bounded"), ``levels_``, ``result_`` (a SelectionResult).
    """

    def __init__(self, metric: str = "gd", beta: float = 0.1, max_size: int | None = None,
                 vote: str = "soft", focal: bool = True, weighting: str = "rank",
                 resample: bool = False, weights: Sequence[float] | None = None,
                 max_teams: int = DEFAULT_MAX_TEAMS, variant: str = "auto",
                 width: int = DEFAULT_WIDTH, seed: int = 0) -> None:
        self.metric, self.beta, self.max_size, self.vote = metric, beta, max_size, vote
        self.focal, self.weighting, self.resample, self.weights = focal, weighting, resample, weights
        self.max_teams, self.variant, self.width, self.seed = max_teams, variant, width, seed

    def _run(self, pool: PredictionPool) -> SelectionResult:
        if not isinstance(self.metric, str):
            raise ConfigError("HQ takes one metric; use Consensus(metrics=[...]) for several")
        r = select_team(pool, "hq", self.metric, beta=self.beta, max_size=self.max_size,
                        vote=self.vote, focal=self.focal, seed=self.seed,
                        weighting=self.weighting, resample=self.resample, weights=self.weights,
                        max_teams=self.max_teams, variant=self.variant, width=self.width)
        self.variant_ = r.variant
        self.levels_ = r.levels
        return r


class Consensus(_Selector):
    """Focal-diversity consensus of HQ runs over several metrics (our rule; see docs).

    After fit: ``team_``..., ``quorum_`` (the q used), ``levels_`` (consensus teams per size),
    ``result_`` (a ConsensusResult with each metric's SelectionResult in ``per_metric``).
    """

    def __init__(self, metrics: Sequence[str] = ("gd", "kw", "ck", "bd"),
                 quorum: int | None = None, beta: float = 0.1, max_size: int | None = None,
                 vote: str = "soft", weighting: str = "rank", variant: str = "auto",
                 width: int = DEFAULT_WIDTH, max_teams: int = DEFAULT_MAX_TEAMS,
                 seed: int = 0) -> None:
        self.metrics, self.quorum, self.beta, self.max_size = metrics, quorum, beta, max_size
        self.vote, self.weighting, self.variant, self.width = vote, weighting, variant, width
        self.max_teams, self.seed = max_teams, seed

    def _run(self, pool: PredictionPool) -> ConsensusResult:
        r = select_consensus(pool, self.metrics, self.quorum, beta=self.beta,
                             max_size=self.max_size, vote=self.vote, weighting=self.weighting,
                             variant=self.variant, width=self.width, max_teams=self.max_teams,
                             seed=self.seed)
        self.quorum_ = r.quorum
        self.levels_ = r.levels
        return r


class _Baseline(_Selector):
    method = ""

    def __init__(self, criterion: str | None = None, size: int | None = None,
                 seed: int = 0, vote: str = "soft") -> None:
        self.criterion, self.size, self.seed, self.vote = criterion, size, seed, vote

    def _run(self, pool: PredictionPool) -> SelectionResult:
        return select_baseline(pool, self.method, self.criterion, self.size, self.seed, self.vote)


class RandomSelection(_Baseline):
    """``size`` models drawn uniformly without replacement (seeded)."""

    method = "random"

    def __init__(self, size: int | None = None, seed: int = 0, vote: str = "soft") -> None:
        super().__init__("uniform", size, seed, vote)


class RankSelection(_Baseline):
    """Rank pruning: criterion error, kappa, margin-diversity or contribution."""

    method = "rank"


class GreedySelection(_Baseline):
    """Greedy forward selection: reduced-error, complementariness, margin-distance or drep."""

    method = "greedy"


class ClusterSelection(_Baseline):
    """k-means of the models' probabilities; criterion accuracy (default) or centroid."""

    method = "cluster"
