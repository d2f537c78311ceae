"""The oracle: the unit whose removal (trained weights, no retraining) hurts training loss least.

Candidates are evaluated many at a time: ``torch.func.vmap`` runs one forward pass for a stack of
masks, each with a different single unit removed, so a round costs ceil(units / chunk) batched
passes over the training data instead of one Python-level pass per unit.
"""

from __future__ import annotations

import torch
from torch.func import functional_call, vmap
from torch.nn import functional as F

from .masks import MaskedNetwork


def _mask_buffer_names(masked: MaskedNetwork) -> dict[str, str]:
    names = {id(buf): name for name, buf in masked.named_buffers()}
    return {layer: names[id(m.mask)] for layer, m in masked.mask_modules().items()}


def candidates(masked: MaskedNetwork) -> list[tuple[str, int]]:
    """Every alive unit whose removal leaves its layer at least one unit."""
    out = []
    for layer, alive in masked.get_masks().items():
        idx = alive.nonzero().flatten().tolist()
        if len(idx) > 1:
            out += [(layer, i) for i in idx]
    return out


@torch.no_grad()
def removal_losses(
    masked: MaskedNetwork,
    x: torch.Tensor,
    y: torch.Tensor,
    units: list[tuple[str, int]] | None = None,
    *,
    chunk: int = 64,
    batch_size: int = 1024,
) -> torch.Tensor:
    """Mean training loss with each candidate unit removed alone, one entry per candidate.
    (Networks with masked recurrent layers take the one-pass-per-unit loop: ``vmap`` has no
    batching rule for PyTorch's fused recurrent kernels.)"""
    from .recurrent import RecurrentUnits

    units = candidates(masked) if units is None else units
    if any(isinstance(m, RecurrentUnits) for m in masked.modules()):
        return removal_losses_naive(masked, x, y, units).float()
    device = next(masked.parameters()).device
    was_training = masked.training
    masked.eval()
    state = {k: v for k, v in masked.named_parameters()}
    state.update({k: v for k, v in masked.named_buffers()})
    buffer_of = _mask_buffer_names(masked)
    current = {layer: m.mask for layer, m in masked.mask_modules().items()}

    def loss(mask_state: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor):
        logits = functional_call(masked, {**state, **mask_state}, (xb,))
        return F.cross_entropy(logits, yb, reduction="sum")

    batched = vmap(loss, in_dims=(0, None, None))
    totals = torch.zeros(len(units), dtype=torch.float64, device=device)
    try:
        for start in range(0, len(units), chunk):
            part = units[start : start + chunk]
            stacks = {}
            for layer, mask in current.items():
                stack = mask.unsqueeze(0).repeat(len(part), 1)
                for row, (lay, unit) in enumerate(part):
                    if lay == layer:
                        stack[row, unit] = 0.0
                stacks[buffer_of[layer]] = stack
            for i in range(0, len(y), batch_size):
                xb = x[i : i + batch_size].to(device)
                yb = y[i : i + batch_size].to(device)
                totals[start : start + len(part)] += batched(stacks, xb, yb).double()
    finally:
        masked.train(was_training)
    return (totals / max(len(y), 1)).float().cpu()


@torch.no_grad()
def removal_losses_naive(
    masked: MaskedNetwork, x: torch.Tensor, y: torch.Tensor, units: list[tuple[str, int]]
) -> torch.Tensor:
    """The same quantity by the obvious loop: one full pass per unit (reference and benchmark)."""
    from ..training import evaluate

    modules = masked.mask_modules()
    out = []
    for layer, unit in units:
        mask = modules[layer].mask
        old = float(mask[unit])
        mask[unit] = 0.0
        out.append(evaluate(masked, x, y)[0])
        mask[unit] = old
    return torch.tensor(out)


def oracle_choice(
    masked: MaskedNetwork,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    chunk: int = 64,
    generator: torch.Generator | None = None,
) -> tuple[str, int] | None:
    """The unit to drop by the oracle (lowest loss without it), or None.

    Exact ties are common (units that never fire leave the loss unchanged), so they are broken at
    random with ``generator``, as the metrics break theirs; without one, the first candidate wins.
    """
    units = candidates(masked)
    if not units:
        return None
    losses = removal_losses(masked, x, y, units, chunk=chunk)
    tied = torch.nonzero(losses == losses.min()).flatten()
    if generator is None or len(tied) == 1:
        return units[int(tied[0])]
    return units[int(tied[torch.randint(len(tied), (1,), generator=generator)])]
