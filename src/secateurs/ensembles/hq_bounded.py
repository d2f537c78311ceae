"""Bounded HQ: hierarchical pruning that keeps at most W teams per size, for pools of any size.

The rule (also in docs/ensembles.md and every result's notes)::

    kept_1 = all single models; pruned = {}
    for S in 2 .. S_max:
        candidates = teams U + {j} (U in kept_{S-1}, j not in U), without those that contain a
                     pruned pair or an (S-1)-sub-team pruned or refused at size S-1
        rank by focal diversity (least diverse first; ties: lower selection accuracy, team index)
        prune the first floor(beta * |candidates|)                      (exactly as HQ)
        kept_S = the W most diverse of the rest (ties: higher selection accuracy, team index);
                 the others are dropped (neither kept nor pruned)
        stop after the first size where a kept team reaches the whole pool's selection accuracy

While no level holds more than W survivors this is exactly HQ (the candidate sets coincide), so the
result equals exact HQ up to the level where it stops. Each level holds at most W * M candidates,
and focal diversity is computed only for them.

For the metrics whose team value is a sum over samples of a function of l(n), the number of members
right on sample n (KW, GD, BD, EN), the sum for U + {j} on any sample set is
``sum g(l_U) + c_j . (g(l_U + 1) - g(l_U))`` with c_j model j's 0/1 correctness: linear in c_j, so
one matrix product per block of parent teams gives every child's value at once. The other metrics
(QS, CC, CK, FK) use per-focal-model statistics over all M models, computed when a level needs them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import ConfigError
from .focal import normalise_focal
from .metrics import (
    DECIMALS,
    EMPTY_VALUE,
    NEEDS_LABELS,
    PAIRWISE,
    pair_matrix,
    pair_team_raw,
    sample_stats,
    team_raw,
    to_score,
)
from .pool import PredictionPool
from .results import Level, TeamStats
from .teams import TooManyTeams, contains, drop_column, team_keys
from .voting import direct_correct_counts

#: Metrics computed by the linear update (see the module docstring); others are slower.
FAST_METRICS = ("kw", "gd", "bd", "en")
#: The focal statistics cached across levels (see ``BoundedContext._focal_entry``).
_FOCAL_CACHE_BYTES = 1 << 30
#: Default beam width W: teams kept per size.
DEFAULT_WIDTH = 100
#: Default largest team size of bounded HQ when none is given: min(M - 1, this).
BOUNDED_MAX_SIZE = 16
_BLOCK = 1 << 23


def bounded_rule(width: int) -> str:
    return (
        f"bounded HQ (width W={width}): at each size, candidates are kept teams plus one model, "
        "without teams containing a pruned pair or an (S-1)-sub-team pruned or refused at the "
        "previous size; after HQ's beta cut at most W teams are kept (the most diverse; ties: "
        "higher selection accuracy, then team index order); stops after the first size where a "
        "kept team reaches the whole pool's selection accuracy"
    )


def _g_functions(metric: str, size: int):
    """Per-sample functions of l (members right) whose sums give the metric, for team size L."""
    L = size
    if metric in ("kw", "bd"):
        return [lambda r: r * (L - r)]
    if metric == "gd":
        return [lambda r: L - r, lambda r: (L - r) * (L - r - 1)]
    return [lambda r: np.minimum(r, L - r)]  # en


def _raw_from_sums(metric: str, sums: list[np.ndarray], n: np.ndarray, size: int) -> np.ndarray:
    L = float(size)
    n = np.broadcast_to(np.asarray(n, dtype=np.float64), sums[0].shape)
    safe = np.where(n > 0, n, 1.0)
    if metric == "kw":
        raw = sums[0] / (safe * L * L)
    elif metric == "bd":
        raw = 2.0 * sums[0] / (safe * L * (L - 1))
    elif metric == "gd":
        f1, f21 = sums
        p1 = f1 / (safe * L)
        p2 = f21 / (safe * L * (L - 1))
        raw = np.where(f1 > 0, 1.0 - p2 / np.where(p1 > 0, p1, 1.0), 0.0)
    else:
        raw = sums[0] / (safe * (L - np.ceil(L / 2)))
    return np.where(n > 0, raw, EMPTY_VALUE[metric])


class BoundedContext:
    """What bounded HQ reads from the selection split: correctness, predictions, voting."""

    def __init__(self, pool: PredictionPool, metric: str, vote: str, weights, focal: bool,
                 weighting: str) -> None:
        sel = pool.selection
        self.split = sel
        self.num_models = pool.num_models
        self.n = sel.num_samples
        self.metric = metric
        self.focal = focal
        self.weighting = weighting
        self.vote = vote
        self.weights = weights
        self.correct = sel.correct
        self.model_accuracy = sel.accuracy
        self.n_neg = (~self.correct).sum(axis=1).astype(np.float64)
        everyone = np.arange(self.num_models)[None]
        self.pool_accuracy = float(self.correct_counts(everyone)[0] / self.n)
        self._cor = {}
        self._stats: dict[int, object] = {}
        self._cached_bytes = 0
        self.on_level: Callable[[int, int], None] = lambda size, teams: None  # progress
        self.on_model: Callable[[], None] | None = None  # progress: a focal model's first stats
        self._seen: set[int] = set()

    def correct_counts(self, members: np.ndarray) -> np.ndarray:
        return direct_correct_counts(self.split, members, self.vote, self.weights)

    def stats(self, members: np.ndarray, accuracy: np.ndarray) -> TeamStats:
        return TeamStats.of(members, accuracy, self.model_accuracy, self.pool_accuracy)

    def _cor_t(self, dtype) -> np.ndarray:
        key = np.dtype(dtype).name
        if key not in self._cor:
            self._cor[key] = np.ascontiguousarray(self.correct.T, dtype=dtype)  # [N, M]
        return self._cor[key]

    # ------------------------------------------------------------------ diversity of children
    def diversity(self, parents: np.ndarray, cand: np.ndarray, par: np.ndarray,
                  add: np.ndarray) -> np.ndarray:
        """Focal (or plain) diversity of candidates ``cand`` (= parents[par] + add), normalised
        over exactly these candidates."""
        if self.metric in FAST_METRICS:
            scores = self._fast_scores(parents, cand, par, add)
        else:
            scores = self._generic_scores(cand)
        if not self.focal:
            return np.round(scores, DECIMALS)
        return normalise_focal(cand, scores, self.model_accuracy, self.weighting)

    def _fast_scores(self, parents, cand, par, add) -> np.ndarray:
        m, n = self.num_models, self.n
        s = parents.shape[1]
        size = s + 1
        gs = _g_functions(self.metric, size)
        ng = len(gs)
        bound = n * float(size * size)
        dtype = np.float32 if bound < 2**24 else np.float64  # integer sums stay exact
        cor_t = self._cor_t(dtype)
        focal = self.focal
        t = cand.shape[0]
        out = np.empty((t, size) if focal else (t,))
        order = np.argsort(par, kind="stable")
        bounds = np.searchsorted(par[order], np.arange(parents.shape[0] + 1))
        per_parent = (s + 1) * ng * n if focal else ng * n
        step = max(1, _BLOCK // max(per_parent, 1))
        neg = ~self.correct
        for p0 in range(0, parents.shape[0], step):
            p1 = min(parents.shape[0], p0 + step)
            rows_t = order[bounds[p0] : bounds[p1]]
            if rows_t.size == 0:
                continue
            block = parents[p0:p1]
            k = block.shape[0]
            l_u = self.correct[block].sum(axis=1)  # [k, N]
            g_now = np.stack([g(l_u) for g in gs], axis=1).astype(np.float64)  # [k, ng, N]
            g_delta = np.stack([g(l_u + 1) - g(l_u) for g in gs], axis=1).astype(np.float64)
            u_loc = par[rows_t] - p0
            j = add[rows_t]
            if not focal:
                lin = (g_delta.reshape(k * ng, n).astype(dtype) @ cor_t).reshape(k, ng, m)
                const = g_now.sum(axis=2)  # [k, ng]
                sums = [const[u_loc, g] + lin[u_loc, g, j] for g in range(ng)]
                out[rows_t] = to_score(self.metric, _raw_from_sums(self.metric, sums, n, size))
                continue
            mask = neg[block].astype(np.float64)  # [k, s, N] negatives of each member
            rows_in = g_delta[:, None, :, :] * mask[:, :, None, :]  # [k, s, ng, N]
            const_in = np.einsum("kgn,ksn->ksg", g_now, mask)
            lin_in = (rows_in.reshape(k * s * ng, n).astype(dtype) @ cor_t).reshape(k, s, ng, m)
            # focal = the added model j: on its negatives c_j = 0, so l = l_U there
            tot_j = g_now.sum(axis=2)  # [k, ng]
            right_j = (g_now.reshape(k * ng, n).astype(dtype) @ cor_t).reshape(k, ng, m)
            r_i, s_i = u_loc[:, None], np.arange(s)[None, :]
            sums_in = [const_in[u_loc, :, g] + lin_in[r_i, s_i, g, j[:, None]] for g in range(ng)]
            n_in = self.n_neg[block[u_loc]]  # [r, s]
            raw_in = _raw_from_sums(self.metric, sums_in, n_in, size)
            sums_j = [tot_j[u_loc, g] - right_j[u_loc, g, j] for g in range(ng)]
            raw_j = _raw_from_sums(self.metric, sums_j, self.n_neg[j], size)
            # place values at each member's position in the sorted candidate row
            pu = block[u_loc]  # [r, s]
            pos_j = (pu < j[:, None]).sum(axis=1)
            pos_u = np.arange(s)[None, :] + (np.arange(s)[None, :] >= pos_j[:, None])
            vals = np.empty((rows_t.size, size))
            vals[np.arange(rows_t.size)[:, None], pos_u] = to_score(self.metric, raw_in)
            vals[np.arange(rows_t.size), pos_j] = to_score(self.metric, raw_j)
            out[rows_t] = vals
        return out

    def _focal_entry(self, f: int):
        """Focal model ``f``'s statistics over its negative samples: for a pairwise metric the
        [M, M] pair matrix itself (one array, not three, and not recomputed per call).

        Levels visit the focal models in index order, so the cache keeps the first entries that
        fit in about 1 GiB and computes the rest each time: clearing it when full made every
        lookup of every level miss once the pool's statistics outgrew it (M > ~360)."""
        entry = self._stats.get(f)
        if entry is not None:
            return entry
        neg = np.flatnonzero(~self.correct[f])
        st = sample_stats(
            self.correct[:, neg], self.split.preds[:, neg], self.split.num_classes,
            labels=self.metric in NEEDS_LABELS, patterns=self.metric == "en",
        )
        entry = pair_matrix(self.metric, st) if self.metric in PAIRWISE else st
        if self.on_model is not None and f not in self._seen:
            self._seen.add(f)
            self.on_model()
        size = _nbytes(entry)
        if self._cached_bytes + size <= _FOCAL_CACHE_BYTES:
            self._stats[f] = entry
            self._cached_bytes += size
        return entry

    def _generic_scores(self, cand: np.ndarray) -> np.ndarray:
        m = self.num_models
        if not self.focal:
            if -1 not in self._stats:
                self._stats[-1] = sample_stats(
                    self.correct, self.split.preds, self.split.num_classes,
                    labels=self.metric in NEEDS_LABELS, patterns=self.metric == "en",
                )
            return to_score(self.metric, team_raw(self.metric, self._stats[-1], cand, m))
        scores = np.empty(cand.shape)
        for f in np.unique(cand):
            rows, pos = np.nonzero(cand == f)
            entry = self._focal_entry(int(f))
            raw = (pair_team_raw(entry, cand[rows]) if isinstance(entry, np.ndarray)
                   else team_raw(self.metric, entry, cand[rows], m))
            scores[rows, pos] = to_score(self.metric, raw)
        return scores


def _nbytes(entry) -> int:
    if isinstance(entry, np.ndarray):
        return entry.nbytes
    return sum(v.nbytes for v in vars(entry).values() if isinstance(v, np.ndarray))


def _prune_order(div: np.ndarray, acc_of, n_prune: int) -> np.ndarray:
    """HQ's ranking (least diverse, then lower accuracy, then team index), reading accuracy only
    for the teams tied in diversity at the cut."""
    t = div.size
    acc = np.zeros(t)
    if 0 < n_prune < t:
        srt = np.sort(div)
        if srt[n_prune - 1] == srt[n_prune]:
            tie = np.flatnonzero(div == srt[n_prune])
            acc[tie] = acc_of(tie)
    return np.lexsort((np.arange(t), acc, div))


def bounded_hq_levels(ctx: BoundedContext, beta: float, max_size: int, width: int,
                      prune_count, notes: list[str], max_teams: int | None = None) -> list[Level]:
    m = ctx.num_models
    kept = np.arange(m, dtype=np.int64)[:, None]
    blocked = team_keys(np.zeros((0, 1), dtype=np.int64))
    pair_pruned = np.zeros((m, m), dtype=bool)
    levels: list[Level] = []
    capped_at: list[int] = []
    for size in range(2, max_size + 1):
        k = kept.shape[0]
        par = np.repeat(np.arange(k), m)
        add = np.tile(np.arange(m), k)
        fresh = ~(kept[par] == add[:, None]).any(axis=1)
        par, add = par[fresh], add[fresh]
        cand = np.sort(np.concatenate([kept[par], add[:, None]], axis=1), axis=1)
        _, first = np.unique(team_keys(cand), return_index=True)  # team index order
        cand, par, add = cand[first], par[first], add[first]
        bad = pair_pruned[kept[par], add[:, None]].any(axis=1)
        if size > 2 and blocked.size:
            for col in range(size):
                bad |= contains(blocked, team_keys(drop_column(cand, col)))
        refused = cand[bad]
        cand, par, add = cand[~bad], par[~bad], add[~bad]
        t = cand.shape[0]
        if max_teams is not None and t > max_teams:
            raise TooManyTeams(
                f"bounded HQ: teams of size {size} number {t:,} candidates, more than the limit "
                f"of {max_teams:,}; "
                + ("raise --max-teams (max_teams in Python): every pair is a candidate at size 2"
                   if size == 2 else
                   "use a smaller --width or raise --max-teams (max_teams in Python)"))
        if t == 0:
            notes.append(f"bounded HQ stopped at size {size}: no candidate is left")
            break
        div = ctx.diversity(kept, cand, par, add)
        acc = np.full(t, np.nan)

        def acc_of(idx, cand=cand, acc=acc):
            need = idx[np.isnan(acc[idx])]
            if need.size:
                acc[need] = ctx.correct_counts(cand[need]) / ctx.n
            return acc[idx]

        n_prune = prune_count(beta, t)
        order = _prune_order(div, acc_of, n_prune)
        pruned, surv = order[:n_prune], order[n_prune:]
        dropped = 0
        if surv.size > width:
            sd = np.sort(div[surv])[::-1]
            a = np.zeros(surv.size)
            if sd[width - 1] == sd[width]:
                tie = np.flatnonzero(div[surv] == sd[width])
                a[tie] = acc_of(surv[tie])
            top = np.lexsort((surv, -a, -div[surv]))[:width]
            dropped = surv.size - width
            surv = surv[top]
            capped_at.append(size)
        keep = np.sort(surv)
        acc_keep = acc_of(keep)
        levels.append(Level(
            size, t, n_prune, cand[keep], acc_keep, div[keep], ctx.stats(cand[keep], acc_keep),
            None, dropped=dropped, refused=int(refused.shape[0]),
        ))
        if size == 2 and n_prune:
            pp = cand[pruned]
            pair_pruned[pp[:, 0], pp[:, 1]] = pair_pruned[pp[:, 1], pp[:, 0]] = True
        blocked = np.sort(team_keys(np.concatenate([cand[pruned], refused])))
        kept = cand[keep]
        ctx.on_level(size, t)
        if acc_keep.size and acc_keep.max() >= ctx.pool_accuracy:
            if size < max_size:
                notes.append(f"bounded HQ stopped after size {size}: a kept team reaches the whole "
                             "pool's selection accuracy, so larger sizes cannot change the answer")
            break
    if capped_at:
        notes.append(f"the width cap W={width} dropped teams at sizes {capped_at}")
    else:
        notes.append(f"the width cap W={width} never bound: the levels equal exact HQ's")
    return levels


def check_width(width) -> int:
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 1:
        raise ConfigError(f"bounded HQ width must be an integer >= 1, got {width!r}")
    return int(width)
