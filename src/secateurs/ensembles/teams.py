"""Many teams at once, for pools of any size: sorted member-index arrays [T, S] and their keys.

A team of size S is a row of S model indices in increasing order. "Team index order" is the
lexicographic order of those rows (the order of ``itertools.combinations``). For set look-ups
("was this sub-team kept?") each row is turned into one fixed-width byte key (big-endian int32
indices), whose byte order is exactly team index order, so ``np.sort`` / ``np.searchsorted`` on
keys do the work and no 64-bit-mask limit on the number of models remains.
"""

from __future__ import annotations

from collections.abc import Iterator
from math import comb

import numpy as np

from ..errors import ConfigError

#: Default bound on how many teams one level (HQ) or one whole search (all-team methods) may hold.
DEFAULT_MAX_TEAMS = 1_000_000
_KEY_DTYPE = np.dtype(">i4")


class TooManyTeams(ConfigError):
    """A search would hold more teams than its budget (``max_teams``)."""


def team_keys(members: np.ndarray) -> np.ndarray:
    """[T, S] sorted member rows -> [T] byte keys whose order is team index order."""
    members = np.ascontiguousarray(np.asarray(members), dtype=_KEY_DTYPE)
    t, s = members.shape if members.ndim == 2 else (0, 0)
    if t == 0:
        return np.zeros(0, dtype=f"V{max(4 * s, 4)}")
    return members.view(f"V{4 * s}").ravel()


def keys_to_members(keys: np.ndarray, size: int) -> np.ndarray:
    keys = np.ascontiguousarray(keys)
    if keys.size == 0:
        return np.zeros((0, size), dtype=np.int64)
    return keys.view(_KEY_DTYPE).reshape(len(keys), size).astype(np.int64)


def contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """[K] bool: whether each key is in ``sorted_keys`` (a sorted key array)."""
    if sorted_keys.size == 0 or keys.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    pos = np.searchsorted(sorted_keys, keys)
    pos[pos == len(sorted_keys)] = 0
    return sorted_keys[pos] == keys


def members_to_matrix(members: np.ndarray, num_models: int, dtype=np.float64) -> np.ndarray:
    """[T, S] member indices -> [T, M] 0/1 matrix (one row per team)."""
    members = np.asarray(members)
    out = np.zeros((members.shape[0], num_models), dtype=dtype)
    out[np.arange(members.shape[0])[:, None], members] = 1
    return out


def lexicographic_order(members: np.ndarray) -> np.ndarray:
    """Permutation sorting teams of one size into team index order."""
    members = np.asarray(members)
    if members.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    return np.lexsort(members.T[::-1])


def all_teams(num_models: int, size: int) -> np.ndarray:
    """All C(M, size) teams as [T, size] member arrays, in team index order."""
    members = np.arange(num_models, dtype=np.int64)[:, None]
    for s in range(2, size + 1):
        members = next_level_candidates(members, num_models, s)
    return members


def drop_column(members: np.ndarray, col: int) -> np.ndarray:
    """Sub-teams without the member at position ``col`` (rows stay sorted)."""
    return np.delete(members, col, axis=1)


def next_level_candidates(
    kept: np.ndarray, num_models: int, size: int, max_teams: int | None = None
) -> np.ndarray:
    """Teams of ``size`` all of whose (size-1)-sub-teams are in ``kept`` ([K, size-1] members).

    This is exactly the set of size-``size`` teams that contain no pruned team (see docs): each
    candidate is generated once, as a kept team U plus a model above U's highest member, then
    every other sub-team is looked up among the kept keys. Returns [T, size] in team index order.
    Raises ConfigError beyond ``max_teams``.
    """
    kept = np.asarray(kept, dtype=np.int64).reshape(-1, size - 1)
    if kept.shape[0] == 0:
        return np.zeros((0, size), dtype=np.int64)
    kept = kept[lexicographic_order(kept)]
    keys = team_keys(kept)
    out: list[np.ndarray] = []
    total = 0
    top = kept[:, -1]
    # chunk by parents so that the children of one chunk stay near 2^22 rows
    step = max(1, (1 << 22) // max(num_models, 1))
    for start in range(0, kept.shape[0], step):
        base, hi = kept[start : start + step], top[start : start + step]
        extra = np.arange(num_models, dtype=np.int64)
        rows, cols = np.nonzero(extra[None, :] > hi[:, None])
        cand = np.concatenate([base[rows], extra[cols][:, None]], axis=1)
        ok = np.ones(cand.shape[0], dtype=bool)
        for col in range(size - 1):  # removing the last member gives the parent: kept
            if not ok.any():
                break
            ok &= contains(keys, team_keys(drop_column(cand, col)))
        cand = cand[ok]
        total += cand.shape[0]
        if max_teams is not None and total > max_teams:
            raise TooManyTeams(
                f"teams of size {size} number more than {max_teams:,} candidates; that is too "
                "many to hold in memory and evaluate in reasonable time. Use a smaller "
                "--max-size (max_size in Python), a larger --beta, bounded HQ (--hq-variant "
                "bounded), or raise --max-teams (max_teams)"
            )
        out.append(cand)
    # parents are in team index order and children extend them in order: already sorted
    return np.concatenate(out) if out else np.zeros((0, size), dtype=np.int64)


def count_all_teams(num_models: int, max_size: int) -> int:
    return sum(comb(num_models, s) for s in range(2, max_size + 1))


def chunks(total: int, chunk: int) -> Iterator[slice]:
    chunk = max(1, int(chunk))
    for start in range(0, total, chunk):
        yield slice(start, min(total, start + chunk))
