"""Choose a team from a pool: HQ (hierarchical pruning), exhaustive search, and the EnsembleBench
mean-threshold and k-means selections, each ending in one recommended team.

Everything that decides the team reads the selection split only (``pool.selection``); the test
split is read afterwards, to report the accuracy of the recommended team, the whole pool and the
best single model.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from math import comb
from typing import overload

import numpy as np

from ..errors import ConfigError
from ..progress import progress_bar
from .baselines import BASELINES as _BASELINES
from .focal import WEIGHTINGS, focal_diversity, focal_stats, plain_diversity
from .hq_bounded import (
    BOUNDED_MAX_SIZE,
    DEFAULT_WIDTH,
    BoundedContext,
    bounded_hq_levels,
    bounded_rule,
    check_width,
)
from .metrics import check_metric, sample_stats
from .pool import PredictionPool
from .results import Level, SelectionResult, TeamReport, TeamStats
from .teams import (
    DEFAULT_MAX_TEAMS,
    TooManyTeams,
    count_all_teams,
    next_level_candidates,
)
from .voting import TeamAccuracy, check_vote, check_weights, direct_correct_counts

METHODS = ("hq", "exhaustive", "mean-threshold", "kmeans")
HQ_VARIANTS = ("auto", "exact", "bounded")
BASELINE_METHODS = tuple(_BASELINES)
#: Every method ``select_team`` and ``secateurs select --method`` accept.
ALL_METHODS = METHODS + BASELINE_METHODS
#: Exact HQ holds M x M x M focal statistics; beyond this many bytes "auto" runs bounded HQ.
EXACT_MEMORY = 1 << 30
_WHAT = {
    "hq": "teams HQ kept",
    "exhaustive": "teams of every size from 2 to the maximum size",
    "mean-threshold": "teams whose diversity is above the mean over all teams",
    "kmeans": "teams whose diversity is above the k-means threshold",
}


def recommendation_rule(method: str) -> str:
    """The rule that picks the recommended team, in words (printed with every result)."""
    return (
        f"Among the {_WHAT[method]}: the smallest team whose selection accuracy is at least the "
        "whole pool's; among teams of that size, the highest selection accuracy, then the lowest "
        "cost (MACs, else parameters), then the first in team index order. If no team reaches "
        "the whole pool: the highest selection accuracy, then the fewest members, the lowest "
        "cost, team index order. Chosen on the selection split only; test accuracy is reported, "
        "never used."
    )


def _prune_count(beta: float, n: int) -> int:
    """floor(beta * n), exact for the decimal beta the user typed (0.29 * 100 is 29, not 28)."""
    return int(Fraction(repr(float(beta))) * n)


class _Evaluator:
    """Accuracy and diversity of teams on the selection split. It never sees the test split."""

    def __init__(self, pool: PredictionPool, metric: str | None, vote: str, weights, focal: bool,
                 weighting: str, resample: bool, seed: int,
                 on_model: Callable[[], None] | None = None) -> None:
        sel = pool.selection
        self.num_models = pool.num_models
        self.model_accuracy = sel.accuracy
        self.team_accuracy = TeamAccuracy(sel, vote, weights)
        self.pool_accuracy = float(self.team_accuracy.accuracy(np.arange(self.num_models)[None])[0])
        self.metric = metric
        self.focal = focal
        self.weighting = weighting
        self._fstats = self._stats = None
        self.on_level: Callable[[int, int], None] = lambda size, teams: None  # progress
        if metric is not None and focal:
            self._fstats = focal_stats(
                sel.correct, sel.preds, sel.num_classes, [metric], resample=resample, seed=seed,
                on_model=on_model,
            )
        elif metric is not None:
            self._stats = sample_stats(
                sel.correct, sel.preds, sel.num_classes,
                labels=metric in ("ck", "fk"), patterns=metric == "en",
            )

    def accuracy(self, members: np.ndarray) -> np.ndarray:
        return self.team_accuracy.accuracy(members)

    def diversity(self, members: np.ndarray) -> np.ndarray:
        """Focal diversity normalised over exactly these teams (one size), or plain diversity."""
        assert self.metric is not None
        if self._fstats is not None:
            return focal_diversity(
                self.metric, self._fstats, members, self.model_accuracy, self.weighting
            )
        return plain_diversity(self.metric, self._stats, members, self.num_models)

    def stats(self, members: np.ndarray, accuracy: np.ndarray) -> TeamStats:
        return TeamStats.of(members, accuracy, self.model_accuracy, self.pool_accuracy)


def _hq_levels(ev: _Evaluator, beta: float, max_size: int, max_teams: int,
               notes: list[str]) -> list[Level]:
    m = ev.num_models
    kept = np.arange(m, dtype=np.int64)[:, None]  # kept_1: every single model
    levels = []
    for size in range(2, max_size + 1):
        members = next_level_candidates(kept, m, size, max_teams)
        if members.shape[0] == 0:
            notes.append(f"HQ stopped at size {size}: every team of that size contains a pruned team")
            break
        div = ev.diversity(members)
        acc = ev.accuracy(members)
        # least diverse first; ties: lower selection accuracy first, then team index order
        order = np.lexsort((np.arange(len(members)), acc, div))
        n_prune = _prune_count(beta, len(members))
        pruned = np.sort(order[:n_prune])
        keep = np.sort(order[n_prune:])
        levels.append(Level(
            size, len(members), n_prune, members[keep], acc[keep], div[keep],
            ev.stats(members[keep], acc[keep]), ev.stats(members[pruned], acc[pruned]),
        ))
        kept = members[keep]
        ev.on_level(size, len(members))
    return levels


def _all_levels(ev: _Evaluator, max_size: int, max_teams: int,
                with_diversity: bool) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    m = ev.num_models
    total = count_all_teams(m, max_size)
    if total > max_teams:
        feasible = max(
            (s for s in range(2, max_size + 1) if count_all_teams(m, s) <= max_teams), default=None
        )
        hint = f"--max-size {feasible}" if feasible else "a smaller pool"
        raise ConfigError(
            f"searching every team of size 2..{max_size} of {m} models means {total:,} teams, more "
            f"than the limit of {max_teams:,}; use {hint} (max_size in Python), or method 'hq'"
        )
    out = []
    members = np.arange(m, dtype=np.int64)[:, None]
    for size in range(2, max_size + 1):
        members = next_level_candidates(members, m, size)
        div = ev.diversity(members) if with_diversity else None
        out.append((members, ev.accuracy(members), div))
        ev.on_level(size, len(members))
    return out


def _exhaustive_levels(ev: _Evaluator, max_size: int, max_teams: int) -> list[Level]:
    levels = []
    for members, acc, div in _all_levels(ev, max_size, max_teams, ev.metric is not None):
        levels.append(Level(members.shape[1], len(members), 0, members, acc, div,
                            ev.stats(members, acc), None))
    return levels


def _kmeans_threshold(acc: np.ndarray, div: np.ndarray, seed: int, notes: list[str]) -> float:
    """EnsembleBench's k-means threshold, in the higher-is-more-diverse convention.

    2-means on standardised (accuracy, diversity), started from (best accuracy, most diverse) and
    (worst accuracy, least diverse); the threshold is the larger of the mean diversity and the
    highest diversity inside the cluster of lower mean accuracy.
    """
    from sklearn.cluster import KMeans

    mean = float(div.mean())
    x = np.column_stack([acc, div]).astype(np.float64)
    sd = x.std(axis=0)
    sd[sd == 0] = 1.0
    z = (x - x.mean(axis=0)) / sd
    if len(np.unique(z, axis=0)) < 2:
        notes.append("k-means: all teams have the same accuracy and diversity; using the mean")
        return mean
    init = np.array([[z[:, 0].max(), z[:, 1].max()], [z[:, 0].min(), z[:, 1].min()]])
    km = KMeans(n_clusters=2, init=init, n_init=1, random_state=seed).fit(z)
    centre_acc = [z[km.labels_ == k, 0].mean() if np.any(km.labels_ == k) else np.inf for k in (0, 1)]
    low = int(np.argmin(centre_acc))
    thr = max(mean, float(div[km.labels_ == low].max()))
    if not np.any(div > thr):
        notes.append(
            "k-means: no team is more diverse than every team of the lower-accuracy cluster; "
            "fell back to the mean threshold"
        )
        return mean
    return thr


def _threshold_levels(ev: _Evaluator, method: str, max_size: int, max_teams: int, seed: int,
                      notes: list[str]) -> list[Level]:
    found = _all_levels(ev, max_size, max_teams, True)
    acc_all = np.concatenate([a for _, a, _ in found])
    div_all = np.concatenate([d for _, _, d in found])
    if method == "mean-threshold":
        thr = float(div_all.mean())
    else:
        thr = _kmeans_threshold(acc_all, div_all, seed, notes)
    notes.append(f"diversity threshold {thr:.6g}: teams strictly above it are selected")
    levels = []
    for members, acc, div in found:
        sel = div > thr
        levels.append(Level(
            members.shape[1], len(members), int((~sel).sum()), members[sel], acc[sel], div[sel],
            ev.stats(members[sel], acc[sel]), ev.stats(members[~sel], acc[~sel]),
        ))
    return levels


def _team_cost(pool: PredictionPool, members: np.ndarray) -> np.ndarray:
    """Cost used to break ties: MACs if known, else parameters, else 0."""
    for kind in ("macs", "params"):
        if kind in pool.costs:
            return pool.costs[kind][members].sum(axis=1)
    return np.zeros(len(members))


def _recommend(pool: PredictionPool, levels: list[Level], pool_accuracy: float
               ) -> tuple[Level, int] | None:
    for lv in levels:  # ascending size
        ok = np.flatnonzero(lv.accuracy >= pool_accuracy)
        if ok.size:
            cost = _team_cost(pool, lv.teams[ok])
            i = np.lexsort((ok, cost, -lv.accuracy[ok]))[0]
            return lv, int(ok[i])
    best = None
    for lv in levels:
        if lv.kept == 0:
            continue
        cost = _team_cost(pool, lv.teams)
        i = int(np.lexsort((np.arange(lv.kept), cost, -lv.accuracy))[0])
        key = (-lv.accuracy[i], lv.size, cost[i])
        if best is None or key < best[0]:
            best = (key, lv, i)
    return None if best is None else (best[1], best[2])


def report_team(pool: PredictionPool, team: Sequence[int], sel_acc: float, vote: str = "soft",
                weights=None, diversity: float | None = None) -> TeamReport:
    """A team's report: names beside indices, selection accuracy (given), test accuracy (read
    here, for reporting only) and cost."""
    idx = tuple(int(i) for i in team)
    members = np.asarray(idx)[None]
    m = pool.num_models
    cost: dict[str, float] = {"size_fraction": len(idx) / m}
    for kind, values in pool.costs.items():
        cost[kind] = float(values[list(idx)].sum())
        cost[f"{kind}_fraction"] = float(values[list(idx)].sum() / values.sum())
    test_acc = None
    if pool.test is not None:
        right = direct_correct_counts(pool.test, members, vote, weights)[0]
        test_acc = float(right / pool.test.num_samples)
    return TeamReport(idx, tuple(pool.names[i] for i in idx), float(sel_acc), test_acc, cost,
                      None if diversity is None else float(diversity))


def _check_common(pool: PredictionPool, method: str, beta: float, max_size: int | None,
                  weighting: str) -> tuple[str, int | None]:
    if not isinstance(pool, PredictionPool):
        raise ConfigError(f"expected a PredictionPool, got {type(pool).__name__}")
    method = str(method).lower()
    if method not in METHODS:
        raise ConfigError(f"unknown selection method {method!r}; choose from {list(ALL_METHODS)}")
    if isinstance(beta, bool) or not (isinstance(beta, numbers.Real) and 0 <= beta < 1):
        raise ConfigError(f"beta must be in [0, 1), got {beta!r}")
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"unknown focal weighting {weighting!r}; choose from {list(WEIGHTINGS)}")
    m = pool.num_models
    if max_size is None:
        return method, None
    size = max_size
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 2 <= size <= m:
        raise ConfigError(f"max size must be an integer from 2 to {m} (the pool size), got {max_size!r}")
    return method, int(size)


def check_variant(variant: str) -> str:
    v = str(variant).lower()
    if v not in HQ_VARIANTS:
        raise ConfigError(f"unknown HQ variant {variant!r}; choose from {list(HQ_VARIANTS)}")
    return v


def exact_memory(num_models: int, metric: str | None) -> int:
    """Bytes of the per-focal-model statistics exact HQ holds (M x M x M numbers per kind)."""
    if metric is None:
        return 0
    kinds = 3 if metric in ("ck", "fk") else 1
    return num_models**3 * 8 * kinds


def estimated_hq_level(num_models: int, size: int, beta: float) -> float:
    """A deliberately high estimate of exact HQ's candidates at ``size``: C(M, S) (1 - beta)^C(S, 2)
    (each of a team's pairs survived; measured levels are smaller)."""
    return comb(num_models, size) * (1.0 - beta) ** comb(size, 2)


def _exact_fits_up_front(pool: PredictionPool, metric: str, focal: bool, beta: float,
                         max_size: int, max_teams: int) -> bool:
    m = pool.num_models
    if focal and exact_memory(m, metric) > EXACT_MEMORY:
        return False
    return all(estimated_hq_level(m, s, beta) <= max_teams for s in range(2, max_size + 1))


def _select_one(pool: PredictionPool, method: str, metric: str, beta: float,
                max_size: int | None, vote: str, focal: bool, seed: int, weighting: str,
                resample: bool, weights, max_teams: int, variant: str = "auto",
                width: int = DEFAULT_WIDTH, progress: bool = False) -> SelectionResult:
    with progress_bar(progress) as bar:
        return _select_with(bar, pool, method, metric, beta, max_size, vote, focal, seed,
                            weighting, resample, weights, max_teams, variant, width)


def _select_with(bar, pool: PredictionPool, method: str, metric: str, beta: float,
                 max_size: int | None, vote: str, focal: bool, seed: int, weighting: str,
                 resample: bool, weights, max_teams: int, variant: str,
                 width: int) -> SelectionResult:
    start = time.perf_counter()
    what = f"{method} {metric}" if metric else method
    level_task = None

    def levels_of(size: int):  # progress: one step per level (team size)
        nonlocal level_task
        level_task = bar.add_task(what, total=size - 1, info="")

        def on_level(n: int, teams: int) -> None:
            bar.update(level_task, advance=1, info=f"size {n}: {teams:,} teams")
        return on_level

    def focal_task() -> Callable[[], None] | None:
        if metric is None or not focal:
            return None
        task = bar.add_task(f"{metric} focal stats", total=pool.num_models, info="")
        return lambda: bar.update(task, advance=1)

    notes: list[str] = []
    m = pool.num_models
    # default max size: M - 1 (a team smaller than the pool); a pool of two has only itself
    default_size = max(2, m - 1)
    ran = None
    if method == "hq":
        run_exact = variant == "exact" or (variant == "auto" and _exact_fits_up_front(
            pool, metric, focal, beta, default_size if max_size is None else max_size, max_teams))
        if variant == "exact" and focal and exact_memory(m, metric) > EXACT_MEMORY:
            raise ConfigError(
                f"exact HQ on {m} models needs about {exact_memory(m, metric) / 2**30:.1f} GiB of "
                f"focal statistics (more than {EXACT_MEMORY / 2**30:.0f} GiB); use bounded HQ "
                "(--hq-variant bounded / variant='bounded')")
        if run_exact:
            size = default_size if max_size is None else max_size
            try:
                ev = _Evaluator(pool, metric, vote, weights, focal, weighting, resample, seed,
                                focal_task())
                ev.on_level = levels_of(size)
                levels = _hq_levels(ev, beta, size, max_teams, notes)
                ran = "exact"
            except TooManyTeams as e:
                if variant == "exact" or resample:
                    raise
                notes.clear()
                notes.append(f"exact HQ does not fit the budget ({e}); ran bounded HQ instead")
        if ran is None:
            if resample:
                raise ConfigError(
                    f"exact HQ does not fit the budget on {m} models and --resample is not "
                    "available with bounded HQ; drop --resample or use a smaller --max-size")
            size = min(default_size, BOUNDED_MAX_SIZE) if max_size is None else max_size
            ctx = BoundedContext(pool, metric, vote, weights, focal, weighting)
            ctx.on_model = focal_task()  # computed as levels first reach each focal model
            ctx.on_level = levels_of(size)
            levels = bounded_hq_levels(ctx, beta, size, width, _prune_count, notes, max_teams)
            notes.insert(0, "search rule: " + bounded_rule(width))
            ran = "bounded"
            model_accuracy, pool_accuracy = ctx.model_accuracy, ctx.pool_accuracy
        else:
            model_accuracy, pool_accuracy = ev.model_accuracy, ev.pool_accuracy
    else:
        size = default_size if max_size is None else max_size
        if metric is not None and focal and exact_memory(m, metric) > EXACT_MEMORY:
            raise ConfigError(
                f"method {method!r} with focal diversity on {m} models needs about "
                f"{exact_memory(m, metric) / 2**30:.1f} GiB of focal statistics (more than "
                f"{EXACT_MEMORY / 2**30:.0f} GiB); use method 'hq', which runs bounded HQ on "
                "pools this large, or plain diversity (--no-focal / focal=False)")
        ev = _Evaluator(pool, metric, vote, weights, focal, weighting, resample, seed,
                        focal_task())
        ev.on_level = levels_of(size)
        if method == "exhaustive":
            levels = _exhaustive_levels(ev, size, max_teams)
        else:
            levels = _threshold_levels(ev, method, size, max_teams, seed, notes)
        model_accuracy, pool_accuracy = ev.model_accuracy, ev.pool_accuracy
    if level_task is not None and levels and levels[-1].size < size:  # stopped early
        bar.update(level_task, total=len(levels), completed=len(levels),
                   info=f"stopped after size {levels[-1].size}")
    chosen = _recommend(pool, levels, pool_accuracy)
    # --- the team is chosen; from here on the test split may be read, for reporting only ---
    recommended = None
    if chosen is None:
        notes.append("no team was kept or selected, so there is no recommendation")
    else:
        lv, i = chosen
        recommended = report_team(pool, lv.teams[i], lv.accuracy[i], vote, weights,
                                  None if lv.diversity is None else lv.diversity[i])
    best = int(np.argmax(model_accuracy))
    return SelectionResult(
        method=method,
        metric=metric,
        focal=focal,
        weighting=weighting,
        resample=resample,
        beta=float(beta) if method == "hq" else None,
        max_size=size,
        vote=vote,
        seed=seed,
        names=pool.names,
        rule=recommendation_rule(method),
        recommended=recommended,
        pool=report_team(pool, range(m), pool_accuracy, vote, weights),
        best_single=report_team(pool, [best], model_accuracy[best], vote, weights),
        levels=levels,
        notes=notes,
        seconds=time.perf_counter() - start,
        variant=ran,
        width=width if ran == "bounded" else None,
    )


def check_vote_weights(pool: PredictionPool, vote: str, weights) -> tuple[str, np.ndarray | None]:
    vote = check_vote(vote)
    if vote == "weighted":
        return vote, check_weights(
            np.maximum(pool.selection.accuracy, 1e-6) if weights is None else weights,
            pool.num_models,
        )
    if weights is not None:
        raise ConfigError("voting weights are only used with vote='weighted'")
    return vote, None


def check_metrics(metric: str | Sequence[str]) -> list[str]:
    metrics = [metric] if isinstance(metric, str) else list(metric)
    if not metrics:
        raise ConfigError("give at least one diversity metric")
    metrics = [check_metric(m) for m in metrics]
    if len(set(metrics)) != len(metrics):
        raise ConfigError(f"metric listed twice: {metrics}")
    return metrics


@overload
def select_team(pool: PredictionPool, method: str = ..., metric: str = ..., **kw) -> SelectionResult:
    ...


@overload
def select_team(pool: PredictionPool, method: str = ..., metric: Sequence[str] = ...,
                **kw) -> dict[str, SelectionResult]:
    ...


def select_team(
    pool: PredictionPool,
    method: str = "hq",
    metric: str | Sequence[str] = "gd",
    beta: float = 0.1,
    max_size: int | None = None,
    vote: str = "soft",
    focal: bool = True,
    seed: int = 0,
    weighting: str = "rank",
    resample: bool = False,
    weights: Sequence[float] | None = None,
    max_teams: int = DEFAULT_MAX_TEAMS,
    variant: str = "auto",
    width: int = DEFAULT_WIDTH,
    criterion: str | None = None,
    size: int | None = None,
    progress: bool = False,
) -> SelectionResult | dict[str, SelectionResult]:
    """Choose a team on the selection split and report it (test accuracy only reported).

    ``method``: "hq" (hierarchical pruning with ``beta``), "exhaustive" (every team of size
    2..max_size), "mean-threshold" or "kmeans" (EnsembleBench selections by diversity).
    ``metric``: one of qs, cc, bd, ck, fk, kw, gd, en (a list gives one result per metric, as a
    dict keyed by metric). ``focal``: focal diversity (default) or plain diversity on all
    samples. ``weighting``: "rank" (members weighted by accuracy rank in the team) or "mean".
    ``resample``: the reference's 3 draws of 100 negatives per focal model (seeded by ``seed``).
    ``vote``: soft, plurality, majority, weighted (``weights`` per model; default each model's
    selection accuracy). ``max_size`` defaults to M - 1, at least 2 (bounded HQ: min(M - 1, 16)).
    ``max_teams`` bounds the teams held at once (per level for HQ, in total for the other
    methods); beyond it a ConfigError says what to change. ``variant`` (HQ only): "exact",
    "bounded" (at most ``width`` teams kept per size, see docs) or "auto" (exact where it fits
    ``max_teams`` and 1 GiB of focal statistics, else bounded); the result's ``variant`` says
    which ran. Baselines (``method`` random, rank, greedy, cluster) take ``criterion`` and a team
    ``size`` instead, ignore the metric, and return one SelectionResult.
    ``progress``: a bar on stderr per metric (focal statistics, then one step per team size);
    off by default, on in ``secateurs select`` on a terminal.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not (
            0 <= int(seed) < 2**32):
        raise ConfigError(f"seed (--seed) must be an integer in [0, 4294967295], got {seed!r}")
    if isinstance(max_teams, bool) or not isinstance(max_teams, (int, np.integer)) or max_teams < 1:
        raise ConfigError(f"max_teams (--max-teams) must be an integer of at least 1, got {max_teams!r}")
    for name, flag in (("focal", focal), ("resample", resample)):
        if not isinstance(flag, (bool, np.bool_)):  # "no" would be truthy
            raise ConfigError(f"{name} must be True or False, got {flag!r}")
    if resample and str(variant).lower() == "bounded":
        raise ConfigError("resample (--resample) is not available with bounded HQ "
                          "(--hq-variant bounded); use exact or auto")
    if str(method).lower() in BASELINE_METHODS:
        from .api import select_baseline

        return select_baseline(pool, method, criterion, size, seed=seed, vote=vote,
                               weights=weights)
    if criterion is not None or size is not None:
        raise ConfigError(f"criterion and size are for the baselines {list(BASELINE_METHODS)}; "
                          f"method {method!r} uses --max-size")
    method, size = _check_common(pool, method, beta, max_size, weighting)
    vote, weights = check_vote_weights(pool, vote, weights)
    variant = check_variant(variant)
    width = check_width(width)
    single = isinstance(metric, str)
    metrics = check_metrics(metric)
    results = {
        m: _select_one(pool, method, m, beta, size, vote, bool(focal), int(seed), weighting,
                       bool(resample), weights, int(max_teams), variant, width, bool(progress))
        for m in metrics
    }
    return results[metrics[0]] if single else results


def diversity_of_teams(
    pool: PredictionPool,
    teams: Sequence[Sequence[str | int]],
    metric: str = "gd",
    focal: bool = True,
    weighting: str = "rank",
    resample: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """Diversity score of each given team (selection split), higher = more diverse.

    With ``focal`` the min-max normalisation for each (focal model, size) runs over the given
    teams of that size, so pass the whole set of teams you want to compare.
    """
    metric = check_metric(metric)
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"unknown focal weighting {weighting!r}; choose from {list(WEIGHTINGS)}")
    idx = [pool.index_of(t) for t in teams]
    if any(len(t) < 2 for t in idx):
        raise ConfigError("every team needs at least 2 models")
    ev = _Evaluator(pool, metric, "soft", None, focal, weighting, resample, seed)
    out = np.empty(len(idx))
    for size in sorted({len(t) for t in idx}):
        rows = [i for i, t in enumerate(idx) if len(t) == size]
        out[rows] = ev.diversity(np.asarray([idx[i] for i in rows], dtype=np.int64))
    return out


def team_accuracy(pool: PredictionPool, team: Sequence[str | int], vote: str = "soft",
                  split: str = "selection", weights: Sequence[float] | None = None) -> float:
    """Ensemble accuracy of one team on the selection or test split."""
    vote = check_vote(vote)
    data = {"selection": pool.selection, "test": pool.test}.get(split, "bad")
    if data == "bad":
        raise ConfigError(f"split must be 'selection' or 'test', got {split!r}")
    if data is None:
        raise ConfigError("this pool has no test split")
    if vote == "weighted":
        weights = np.maximum(pool.selection.accuracy, 1e-6) if weights is None else weights
    members = np.asarray(pool.index_of(team))[None]
    return float(TeamAccuracy(data, vote, weights).accuracy(members)[0])

