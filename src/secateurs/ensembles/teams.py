"""Many teams at once: as sorted member-index arrays [T, S], 0/1 matrices [T, M], or bit masks [T].

Teams of one size S are kept as an int64 array of bit masks (bit i = model i), which makes
"is this sub-team kept?" a binary search. Arrays of members list each team's model indices in
increasing order; "team index order" means the lexicographic order of those tuples (the order of
``itertools.combinations``).
"""

from __future__ import annotations

from collections.abc import Iterator
from math import comb

import numpy as np

from ..errors import ConfigError

#: Default bound on how many teams one level (HQ) or one whole search (all-team methods) may hold.
DEFAULT_MAX_TEAMS = 1_000_000
_GEN_CHUNK = 1 << 18


def members_to_masks(members: np.ndarray) -> np.ndarray:
    members = np.asarray(members, dtype=np.int64)
    return np.bitwise_or.reduce(np.left_shift(np.int64(1), members), axis=1)


def masks_to_members(masks: np.ndarray, num_models: int, size: int) -> np.ndarray:
    """[T] masks of teams of ``size`` members -> [T, size] sorted member indices."""
    masks = np.asarray(masks, dtype=np.int64)
    if masks.size == 0:
        return np.zeros((0, size), dtype=np.int64)
    bits = (masks[:, None] >> np.arange(num_models, dtype=np.int64)) & 1
    return np.nonzero(bits)[1].reshape(len(masks), size).astype(np.int64)


def members_to_matrix(members: np.ndarray, num_models: int, dtype=np.float64) -> np.ndarray:
    """[T, S] member indices -> [T, M] 0/1 matrix (one row per team)."""
    members = np.asarray(members)
    out = np.zeros((members.shape[0], num_models), dtype=dtype)
    out[np.arange(members.shape[0])[:, None], members] = 1
    return out


def lexicographic_order(members: np.ndarray) -> np.ndarray:
    """Permutation sorting teams of one size into team index order."""
    return np.lexsort(members.T[::-1])


def all_teams(num_models: int, size: int) -> np.ndarray:
    """All C(M, size) teams as [T, size] member arrays, in team index order."""
    masks = np.left_shift(np.int64(1), np.arange(num_models, dtype=np.int64))
    for s in range(2, size + 1):
        masks = next_level_candidates(masks, num_models, s)
    members = masks_to_members(masks, num_models, size)
    return members[lexicographic_order(members)]


def _highest_member(masks: np.ndarray, num_models: int) -> np.ndarray:
    hi = np.full(masks.shape, -1, dtype=np.int64)
    for i in range(num_models):
        hi[((masks >> i) & 1) == 1] = i
    return hi


def next_level_candidates(
    kept: np.ndarray, num_models: int, size: int, max_teams: int | None = None
) -> np.ndarray:
    """Teams of ``size`` all of whose (size-1)-sub-teams are in ``kept`` (sorted int64 masks).

    This is exactly the set of size-``size`` teams that contain no pruned team (see docs): each
    candidate is generated once, as a kept team U plus a model above U's highest member, then
    every other sub-team is looked up. Returns sorted masks. Raises ConfigError beyond max_teams.
    """
    kept = np.unique(np.asarray(kept, dtype=np.int64))
    out: list[np.ndarray] = []
    total = 0
    for start in range(0, len(kept), _GEN_CHUNK):
        base = kept[start : start + _GEN_CHUNK]
        hi = _highest_member(base, num_models)
        for j in range(1, num_models):
            grow = base[hi < j]
            if grow.size == 0:
                continue
            cand = grow | np.int64(1 << j)
            ok = np.ones(cand.shape, dtype=bool)
            for i in range(j):  # removing j gives ``grow``, which is kept by construction
                has = ((cand >> i) & 1) == 1
                sub = cand[has] ^ np.int64(1 << i)
                pos = np.searchsorted(kept, sub)
                pos[pos == len(kept)] = 0
                ok[np.flatnonzero(has)[kept[pos] != sub]] = False
            cand = cand[ok]
            total += cand.size
            if max_teams is not None and total > max_teams:
                raise ConfigError(
                    f"teams of size {size} number more than {max_teams:,} candidates; that is too "
                    "many to hold in memory and evaluate in reasonable time. Use a smaller "
                    "--max-size (max_size=...), a larger --beta, or raise --max-teams (max_teams=...)"
                )
            out.append(cand)
    if not out:
        return np.zeros(0, dtype=np.int64)
    return np.sort(np.concatenate(out))


def count_all_teams(num_models: int, max_size: int) -> int:
    return sum(comb(num_models, s) for s in range(2, max_size + 1))


def chunks(total: int, chunk: int) -> Iterator[slice]:
    chunk = max(1, int(chunk))
    for start in range(0, total, chunk):
        yield slice(start, min(total, start + chunk))
