"""Ensemble-pruning baselines: random, rank, greedy forward selection and cluster pruning.

Definitions follow reference/ensemble-baselines.md (not PyPruning's code, which has bugs listed
there). Every method reads the selection split only and returns K model indices in increasing
order. Criteria use the soft vote (argmax of the members' summed probabilities, ties to the lowest
class) as defined; ties between models go to the lowest index.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..errors import ConfigError
from .pool import Split
from .ties import tie_tolerance, vote_argmax

BASELINES = {
    "random": ("uniform",),
    "rank": ("error", "kappa", "margin-diversity", "contribution"),
    "greedy": ("reduced-error", "complementariness", "margin-distance", "drep"),
    "cluster": ("accuracy", "centroid"),
}
DEFAULT_CRITERION = {"random": "uniform", "rank": "error", "greedy": "reduced-error",
                     "cluster": "accuracy"}
MARGIN_ALPHA = 0.2
MARGIN_DISTANCE_P = 0.075
DREP_RHO = 0.25
#: k-means restarts: 10, or 1 when the models' probabilities exceed this many numbers.
CLUSTER_FULL_INIT = 10_000_000
_BLOCK = 1 << 23


def check_baseline(method: str, criterion: str | None) -> tuple[str, str]:
    method = str(method).lower()
    if method not in BASELINES:
        raise ConfigError(f"unknown baseline {method!r}; choose from {list(BASELINES)}")
    crit = DEFAULT_CRITERION[method] if criterion is None else str(criterion).lower()
    if crit not in BASELINES[method]:
        raise ConfigError(
            f"unknown criterion {criterion!r} for {method}; choose from {list(BASELINES[method])}")
    return method, crit


def check_size(size, num_models: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= num_models:
        raise ConfigError(
            f"team size must be an integer from 1 to {num_models} (the pool size), got {size!r}")
    return int(size)


def describe(method: str, criterion: str, size: int, seed: int) -> str:
    """The rule in words (printed with every result)."""
    text = {
        ("random", "uniform"): f"{size} models drawn uniformly without replacement (seed {seed})",
        ("rank", "error"): f"the {size} models of lowest individual selection error",
        ("rank", "kappa"): f"the {size} models whose minimum Cohen's kappa with any other model "
        "is lowest (undefined kappa counts 0)",
        ("rank", "margin-diversity"): f"the {size} models of highest margin-and-diversity score "
        f"(Guo et al. 2018, alpha {MARGIN_ALPHA}, margins over the M voters)",
        ("rank", "contribution"): f"the {size} models of highest individual contribution "
        "(Lu et al. 2010)",
        ("greedy", "reduced-error"): f"greedy forward selection of {size} models, each step "
        "adding the model that gives the lowest soft-vote error",
        ("greedy", "complementariness"): f"greedy forward selection of {size} models, each step "
        "adding the model right on most samples the current team gets wrong",
        ("greedy", "margin-distance"): f"greedy forward selection of {size} models minimising the "
        f"per-sample squared distance of the mean signature 2c-1 to p = {MARGIN_DISTANCE_P}",
        ("greedy", "drep"): f"DREP (rho {DREP_RHO}): {size} models, each step among the "
        "ceil(rho x unselected) models agreeing least with the team, the one of lowest error",
        ("cluster", "accuracy"): f"k-means (seed {seed}) of the models' probabilities into {size} "
        "clusters, the most accurate model of each",
        ("cluster", "centroid"): f"k-means (seed {seed}) of the models' probabilities into {size} "
        "clusters, the model nearest each centre",
    }[(method, criterion)]
    return text + "; chosen on the selection split only, ties to the lowest model index."


# ----------------------------------------------------------------------------- shared pieces
def vote_counts(preds: np.ndarray, num_classes: int) -> np.ndarray:
    """[N, C] how many models predict each class on each sample."""
    m, n = preds.shape
    counts = np.zeros((n, num_classes), dtype=np.int64)
    rows = np.arange(n)
    for i in range(m):
        counts[rows, preds[i]] += 1
    return counts


def kappa_matrix(preds: np.ndarray, num_classes: int) -> np.ndarray:
    """[M, M] Cohen's kappa of every pair of models' predicted labels (0 where undefined)."""
    m, n = preds.shape
    agree = np.zeros((m, m))
    step = max(1, _BLOCK // max(m * num_classes, 1))
    for start in range(0, n, step):
        block = preds[:, start : start + step]
        k = block.shape[1]
        onehot = np.zeros((m, k, num_classes), dtype=np.float32)
        onehot[np.arange(m)[:, None], np.arange(k)[None, :], block] = 1.0
        flat = onehot.reshape(m, k * num_classes)
        agree += (flat @ flat.T).astype(np.float64)  # integer counts < 2^24: exact
    hist = np.stack([np.bincount(p, minlength=num_classes) for p in preds]).astype(np.float64)
    po = agree / n
    pe = (hist @ hist.T) / (n * n)
    defined = pe < 1.0
    return np.where(defined, (po - pe) / np.where(defined, 1.0 - pe, 1.0), 0.0)


def _top(score: np.ndarray, k: int, highest: bool) -> np.ndarray:
    """Indices of the k best scores, ties to the lowest index."""
    key = -score if highest else score
    return np.sort(np.lexsort((np.arange(score.size), key))[:k])


def _soft_right_with_each(
    split: Split, total: np.ndarray, candidates: np.ndarray, size: int
) -> np.ndarray:
    """[len(candidates)] samples right when each candidate is added to ``total`` ([N, C] sums),
    making a team of ``size``."""
    tol = tie_tolerance(split.probs.dtype, size)
    n, c = split.num_samples, split.num_classes
    out = np.zeros(candidates.size, dtype=np.int64)
    step = max(1, _BLOCK // max(n * c, 1))
    for start in range(0, candidates.size, step):
        block = candidates[start : start + step]
        scores = total[None] + split.probs[block].astype(np.float64)
        pred = vote_argmax(scores, tol)
        out[start : start + step] = (pred == split.labels[None]).sum(axis=1)
    return out


def _soft_pred(split: Split, total: np.ndarray, size: int) -> np.ndarray:
    return vote_argmax(total, tie_tolerance(split.probs.dtype, size))


# ----------------------------------------------------------------------------- rank pruning
def rank_scores(split: Split, criterion: str) -> tuple[np.ndarray, bool]:
    """Each model's score and whether higher is better."""
    m = split.probs.shape[0]
    preds, correct, y = split.preds, split.correct, split.labels
    if criterion == "error":
        return 1.0 - split.accuracy, False
    if criterion == "kappa":
        if m < 2:
            return np.zeros(m), False
        k = kappa_matrix(preds, split.num_classes)
        np.fill_diagonal(k, np.inf)
        return k.min(axis=1), False
    votes = vote_counts(preds, split.num_classes)  # [N, C]
    rows = np.arange(split.num_samples)
    v_y = votes[rows, y]
    if criterion == "margin-diversity":
        other = votes.copy()
        other[rows, y] = -1
        v_2 = other.max(axis=1)
        margin = (v_y - v_2) / m
        margin = np.where(margin == 0, 0.01, margin)
        with np.errstate(divide="ignore"):
            term = MARGIN_ALPHA * np.log(np.abs(margin)) + (1 - MARGIN_ALPHA) * np.log(v_y / m)
        # a model counts only samples it gets right, where v_y >= 1 so the log is finite
        return (correct * np.where(v_y > 0, term, 0.0)[None]).sum(axis=1), True
    # contribution
    srt = np.sort(votes, axis=1)
    v_max, v_sec = srt[:, -1], srt[:, -2]
    v_pred = votes[rows[None, :], preds]  # [M, N]
    minority = v_pred < v_max[None]
    gain = np.where(correct & minority, 2 * v_max[None] - v_pred,
                    np.where(correct, v_sec[None], v_y[None] - v_pred - v_max[None]))
    return gain.sum(axis=1).astype(np.float64), True


def rank_select(split: Split, criterion: str, size: int) -> np.ndarray:
    score, highest = rank_scores(split, criterion)
    return _top(score, size, highest)


# ----------------------------------------------------------------------------- greedy
def greedy_select(split: Split, criterion: str, size: int) -> np.ndarray:
    m = split.probs.shape[0]
    correct = split.correct
    chosen: list[int] = []
    total = np.zeros((split.num_samples, split.num_classes))
    signature = np.zeros(split.num_samples)
    sig = 2.0 * correct - 1.0  # [M, N]
    acc = split.accuracy
    for _ in range(size):
        rest = np.array([i for i in range(m) if i not in chosen], dtype=np.int64)
        if criterion == "reduced-error":
            crit = -_soft_right_with_each(split, total, rest, len(chosen) + 1).astype(np.float64)
        elif criterion == "complementariness":
            team_wrong = (np.ones(split.num_samples, dtype=bool) if not chosen
                          else _soft_pred(split, total, len(chosen)) != split.labels)
            crit = -(correct[rest] & team_wrong[None]).sum(axis=1).astype(np.float64)
        elif criterion == "margin-distance":
            mean = (signature[None] + sig[rest]) / (len(chosen) + 1)
            crit = ((mean - MARGIN_DISTANCE_P) ** 2).mean(axis=1)
        else:  # drep
            if not chosen:
                crit = -acc[rest]
            else:
                team_pred = _soft_pred(split, total, len(chosen))
                agreement = (split.preds[rest] == team_pred[None]).mean(axis=1)
                k = math.ceil(DREP_RHO * rest.size)
                pool = rest[_top(agreement, k, highest=False)]
                right = _soft_right_with_each(split, total, pool, len(chosen) + 1)
                pick = int(pool[np.lexsort((pool, -right))[0]])
                chosen.append(pick)
                total += split.probs[pick]
                signature += sig[pick]
                continue
        pick = int(rest[np.lexsort((rest, crit))[0]])
        chosen.append(pick)
        total += split.probs[pick]
        signature += sig[pick]
    return np.sort(np.asarray(chosen, dtype=np.int64))


# ----------------------------------------------------------------------------- cluster
def cluster_select(split: Split, criterion: str, size: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    m = split.probs.shape[0]
    x = split.probs.reshape(m, -1).astype(np.float32)
    acc = split.accuracy
    if size == m:
        return np.arange(m)
    n_init = 10 if x.size <= CLUSTER_FULL_INIT else 1
    with warnings.catch_warnings():  # fewer distinct models than clusters: handled below
        warnings.simplefilter("ignore", category=UserWarning)
        km = KMeans(n_clusters=size, n_init=n_init, random_state=seed).fit(x)
    chosen: list[int] = []
    for k in range(size):
        members = np.flatnonzero(km.labels_ == k)
        if members.size == 0:
            continue
        if criterion == "accuracy":
            pick = members[np.lexsort((members, -acc[members]))[0]]
        else:
            d = ((x[members] - km.cluster_centers_[k]) ** 2).sum(axis=1)
            pick = members[np.lexsort((members, d))[0]]
        chosen.append(int(pick))
    # identical models can leave a cluster empty: fill with the most accurate unchosen models
    for i in np.lexsort((np.arange(m), -acc)):
        if len(chosen) >= size:
            break
        if int(i) not in chosen:
            chosen.append(int(i))
    return np.sort(np.asarray(chosen, dtype=np.int64))


def random_select(num_models: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_models, size=size, replace=False)).astype(np.int64)


def baseline_team(split: Split, method: str, criterion: str, size: int, seed: int = 0) -> np.ndarray:
    """K model indices (increasing) chosen by one baseline on ``split`` (the selection split)."""
    if method == "random":
        return random_select(split.probs.shape[0], size, seed)
    if method == "rank":
        return rank_select(split, criterion, size)
    if method == "greedy":
        return greedy_select(split, criterion, size)
    return cluster_select(split, criterion, size, seed)
