"""Which units go: given scores (lower goes first) and the units still alive, pick the units to drop
this round. Knows nothing of how scores were made or how units are removed."""

from __future__ import annotations

import math

import torch


def _order(scores: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Indices sorted by score, ties in a seeded random order (shuffle, then stable sort)."""
    perm = torch.randperm(len(scores), generator=generator)
    return perm[torch.sort(scores[perm], stable=True).indices]


def select_units(
    scores: dict[str, torch.Tensor],
    alive: dict[str, torch.Tensor],
    fraction: float,
    *,
    scope: str = "global",
    one_per_round: bool = False,
    generator: torch.Generator | None = None,
) -> dict[str, list[int]]:
    """Units to drop, per layer.

    ``global``: rank every alive unit of every layer together, drop max(1, floor(p * all alive)).
    ``layer``: each layer drops max(1, floor(p * its alive)). A layer never loses its last unit.
    ``one_per_round``: exactly one unit; for ``layer`` scope, from the layer with the largest
    remaining fraction (the earliest such layer on ties).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    generator = generator or torch.Generator().manual_seed(0)
    drop: dict[str, list[int]] = {k: [] for k in alive}
    if scope == "layer":
        layers = list(alive)
        if one_per_round:
            candidates = [k for k in layers if int(alive[k].sum()) > 1]
            if not candidates:
                return drop
            layers = [max(candidates, key=lambda k: float(alive[k].float().mean()))]
        for layer in layers:
            idx = alive[layer].nonzero().flatten()
            n = len(idx)
            budget = 1 if one_per_round else max(1, math.floor(fraction * n))
            budget = min(budget, n - 1)
            if budget <= 0:
                continue
            order = _order(scores[layer][idx].float(), generator)
            drop[layer] = sorted(idx[order[:budget]].tolist())
        return drop

    names, units, values = [], [], []
    for i, layer in enumerate(alive):
        idx = alive[layer].nonzero().flatten()
        names.append(torch.full((len(idx),), i))
        units.append(idx)
        values.append(scores[layer][idx].float())
    layer_of, unit_of, flat = torch.cat(names), torch.cat(units), torch.cat(values)
    total = len(flat)
    budget = 1 if one_per_round else max(1, math.floor(fraction * total))
    left = {k: int(alive[k].sum()) for k in alive}
    keys = list(alive)
    for j in _order(flat, generator).tolist():
        if budget == 0:
            break
        layer = keys[int(layer_of[j])]
        if left[layer] <= 1:
            continue  # never cut the network in two
        drop[layer].append(int(unit_of[j]))
        left[layer] -= 1
        budget -= 1
    return {k: sorted(v) for k, v in drop.items()}
