"""Ensemble predictions and the accuracy of many teams at once.

Rules: ``soft`` averages the members' probability vectors and takes the argmax (ties, within the
inputs' precision (``ties``), to the lowest class); ``weighted`` does the same with per-model
weights (default: selection accuracy);
``plurality`` takes the class with most member votes (ties to the lowest class); ``majority``
needs more than half of the votes, otherwise the sample counts as wrong.

Samples every pool member gets right are right for every team under every rule (each member's
argmax is the label, so every sum and count favours it), so team accuracies are computed on the
remaining samples only and the others added as a constant.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from .pool import Split
from .teams import chunks, members_to_matrix
from .ties import tie_tolerance, vote_argmax

VOTES = ("soft", "plurality", "majority", "weighted")
_CHUNK_ELEMENTS = 1 << 23


def check_vote(vote: str) -> str:
    v = str(vote).lower()
    if v not in VOTES:
        raise ConfigError(f"unknown voting rule {vote!r}; choose from {list(VOTES)}")
    return v


def check_weights(weights: Sequence[float] | np.ndarray, num_models: int) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (num_models,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ConfigError(f"voting weights must be {num_models} finite numbers > 0, got {weights!r}")
    return w


def predict(split: Split, team: Sequence[int], vote: str = "soft", weights=None) -> np.ndarray:
    """[N] ensemble prediction of one team (-1 where majority voting finds no majority)."""
    vote = check_vote(vote)
    idx = np.asarray(sorted(team))
    c = split.num_classes
    if vote in ("soft", "weighted"):
        w = np.ones(len(idx)) if vote == "soft" else check_weights(weights, len(split.probs))[idx]
        total = np.tensordot(w, split.probs[idx].astype(np.float64), axes=1)
        return vote_argmax(total, tie_tolerance(split.probs.dtype, w.sum()))
    counts = np.zeros((split.num_samples, c), dtype=np.int64)
    for i in idx:
        counts[np.arange(split.num_samples), split.preds[i]] += 1
    if vote == "plurality":
        return counts.argmax(axis=1)
    top = counts.argmax(axis=1)
    return np.where(2 * counts.max(axis=1) > len(idx), top, -1)


class TeamAccuracy:
    """Accuracy of many teams on one split under one voting rule, by chunked matrix products.

    A team is right on a sample when the label's total (probability, weighted probability or
    votes) beats every other class's, ties going to the lower class. Only classes that can ever
    compete matter: for soft voting a class some member scores at least as high as the label,
    for plurality a class some member votes for. Each (sample, competing class) pair becomes one
    column of margins ``label - class`` per model, so a team's margins are one matrix product
    and the work scales with the number of competing pairs rather than samples x classes.
    """

    def __init__(self, split: Split, vote: str = "soft", weights=None) -> None:
        self.vote = check_vote(vote)
        self.num_models = split.probs.shape[0]
        self.n = split.num_samples
        hard = np.flatnonzero(~split.correct.all(axis=0))
        self.n_easy = int(self.n - hard.size)
        if self.vote == "majority":
            self.table = split.correct[:, hard].astype(np.float32)
            return
        w = None
        if self.vote == "weighted":
            w = check_weights(weights, self.num_models)
        self.weights = w
        # totals this close are a tie (``ties``): per unit of vote weight; votes are exact counts
        self.unit_tol = 0.0 if self.vote == "plurality" else float(tie_tolerance(split.probs.dtype))
        tables = [np.zeros((self.num_models, 0), dtype=split.probs.dtype)]
        stricts, owners = [np.zeros(0, dtype=bool)], [np.zeros(0, dtype=np.int64)]
        step = max(1, _CHUNK_ELEMENTS // max(self.num_models * split.num_classes, 1))
        for sl in chunks(hard.size, step):
            t, strict, owner = _margins(split, hard[sl], self.vote, w)
            tables.append(t)
            stricts.append(strict)
            owners.append(owner + sl.start)
        self.table = np.concatenate(tables, axis=1)
        self.strict = np.concatenate(stricts)  # the class is below the label: it wins a tie
        owner = np.concatenate(owners)
        # columns are grouped by sample: where each sample's group starts
        self.starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]) if owner.size else owner
        # hard samples with no competing class are right for every team
        self.n_easy += int(hard.size - self.starts.size)

    def correct_counts(self, members: np.ndarray) -> np.ndarray:
        """[T] number of samples each team gets right."""
        members = np.asarray(members, dtype=np.int64)
        t = members.shape[0]
        out = np.full(t, self.n_easy, dtype=np.int64)
        if self.table.shape[1] == 0 or t == 0:
            return out
        step = max(1, _CHUNK_ELEMENTS // self.table.shape[1])
        for sl in chunks(t, step):
            b = members_to_matrix(members[sl], self.num_models, dtype=self.table.dtype)
            margin = b @ self.table
            if self.vote == "majority":
                out[sl] += (2 * margin > members.shape[1]).sum(axis=1)
                continue
            fail = self._fails(margin, members[sl])
            wrong = np.logical_or.reduceat(fail, self.starts, axis=1).sum(axis=1)
            out[sl] += self.starts.size - wrong
        return out

    def _fails(self, margin: np.ndarray, members: np.ndarray) -> np.ndarray:
        """Where a team's margin loses: below -tol, or at most +tol where the class is the lower
        one and wins the tie."""
        dtype = self.table.dtype
        if self.weights is None:  # one tolerance for every team of this size
            tol = np.asarray(self.unit_tol * members.shape[1], dtype=dtype)
            limit = np.where(self.strict, np.nextafter(tol, np.asarray(np.inf, dtype)), -tol)
            return margin < limit.astype(dtype)
        tol = (self.unit_tol * self.weights[members].sum(axis=1))[:, None].astype(dtype)
        return np.where(self.strict, margin <= tol, margin < -tol)

    def accuracy(self, members: np.ndarray) -> np.ndarray:
        return self.correct_counts(members) / self.n


def _margins(split: Split, samples: np.ndarray, vote: str, w: np.ndarray | None):
    """Margin columns for some samples: [M, J] label-minus-class, strict flags, owning sample."""
    m = split.probs.shape[0]
    k = samples.size
    y = split.labels[samples]
    rows = np.arange(k)
    if vote == "plurality":
        score = np.zeros((m, k, split.num_classes), dtype=np.float32)
        score[np.arange(m)[:, None], rows[None, :], split.preds[:, samples]] = 1.0
        compete = score.any(axis=0)
    else:
        score = split.probs[:, samples, :]
        # a class competes where some member scores it within a tie of the label (``ties``)
        slack = tie_tolerance(score.dtype, 1.0 if w is None else w)
        if w is not None:
            score = score * w.astype(score.dtype)[:, None, None]
        slack = np.reshape(slack, (-1, 1, 1))
        compete = (score >= score[:, rows, y][:, :, None] - slack).any(axis=0)
    compete[rows, y] = False
    owner, cls = np.nonzero(compete)
    table = score[:, owner, y[owner]] - score[:, owner, cls]
    return table, cls < y[owner], owner


def _vote_scores(split: Split, vote: str, weights) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per-model per-sample class scores for direct voting: probabilities (soft), weighted
    probabilities (weights returned separately), or None for plurality/majority (use preds)."""
    if vote in ("soft", "weighted"):
        w = None if vote == "soft" else check_weights(weights, split.probs.shape[0])
        return split.probs, w
    return None, None


def direct_correct_counts(split: Split, members: np.ndarray, vote: str = "soft",
                          weights=None) -> np.ndarray:
    """[T] samples each team gets right, by summing its members' scores directly.

    For a few teams of a large pool, cheaper than :class:`TeamAccuracy` (no [M, J] table). The
    rules are the same: argmax ties (``ties``) go to the lowest class; majority needs more than
    half.
    """
    vote = check_vote(vote)
    members = np.asarray(members, dtype=np.int64)
    t, size = members.shape
    n, c = split.num_samples, split.num_classes
    out = np.zeros(t, dtype=np.int64)
    if t == 0:
        return out
    probs, w = _vote_scores(split, vote, weights)
    step = max(1, _CHUNK_ELEMENTS // max(n * c, 1))
    labels = split.labels
    rows = np.arange(n)
    for sl in chunks(t, step):
        block = members[sl]
        if vote == "majority":
            right = split.correct[block].sum(axis=1)  # [k, N]
            out[sl] = (2 * right > size).sum(axis=1)
            continue
        total = np.zeros((block.shape[0], n, c), dtype=np.float64)
        for p in range(size):
            if probs is None:  # plurality: one vote per member
                # one vote per (team, sample) for this member: no repeated index
                total[np.arange(block.shape[0])[:, None], rows[None, :],
                      split.preds[block[:, p]]] += 1.0
            elif w is None:
                total += probs[block[:, p]]
            else:
                total += w[block[:, p]][:, None, None] * probs[block[:, p]]
        if probs is None:
            pred = total.argmax(axis=2)  # exact counts
        else:
            weight = size if w is None else w[block].sum(axis=1)
            pred = vote_argmax(total, np.reshape(tie_tolerance(probs.dtype, weight), (-1, 1)))
        out[sl] = (pred == labels[None, :]).sum(axis=1)
    return out
