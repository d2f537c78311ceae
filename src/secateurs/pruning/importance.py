"""What scores units. Every importance returns, per prunable layer, one score per unit where a
LOWER score means the unit goes first; selection never needs to know which criterion made it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .layers import out_weight_rows
from .masks import MaskedNetwork


@dataclass
class ActivationStats:
    """Per-unit statistics of post-activation outputs (after the mask) over a set of samples."""

    mean_abs: dict[str, torch.Tensor]  # E(|a_i|): |spatial mean| per sample, then sample mean
    apoz: dict[str, torch.Tensor]  # average fraction of exact zeros (over samples and positions)
    samples: int


@torch.no_grad()
def activation_stats(
    masked: MaskedNetwork,
    x: torch.Tensor,
    *,
    samples: int | None = None,
    batch_size: int = 1024,
) -> ActivationStats:
    """Running means over batches of the post-activation outputs of every prunable layer.

    Hooks read each UnitMask's output, so "post-activation" is exactly what the next layer sees:
    after the non-linearity (and BatchNorm, where it comes first) and after the mask, so a dropped
    unit scores 0. A recurrent layer's mask sees its (N, time, units) output sequence: its units
    score the mean over samples and time steps of |h_t| (``recurrent.set_recurrent_score``
    switches to |time mean| per sample, the convolutional rule). Uses the first ``samples`` rows of ``x`` (all by default), in eval mode.
    """
    if samples is not None:
        x = x[:samples]
    n = len(x)
    device = next(masked.parameters()).device
    sums = {k: torch.zeros(w, dtype=torch.float64, device=device) for k, w in masked.widths.items()}
    zeros = {
        k: torch.zeros(w, dtype=torch.float64, device=device) for k, w in masked.widths.items()
    }
    positions = {}

    def hook(layer: str):
        def record(_module, _inputs, out: torch.Tensor) -> None:
            if masks[layer].dim == -1 and out.dim() > 2:  # a per-token Linear: units last
                out = out.movedim(-1, 1)
            flat = out.flatten(2) if out.dim() > 2 else out.unsqueeze(2)  # (N, C, positions)
            if getattr(masks[layer], "score", None) == "abs_mean":  # recurrent: mean |h_t|
                sums[layer] += flat.abs().mean(2).sum(0).double()
            else:
                sums[layer] += flat.mean(2).abs().sum(0).double()
            zeros[layer] += (flat == 0).sum((0, 2)).double()
            positions[layer] = flat.shape[2]

        return record

    masks = masked.mask_modules()
    handles = [m.register_forward_hook(hook(k)) for k, m in masks.items()]
    was_training = masked.training
    masked.eval()
    try:
        for i in range(0, n, batch_size):
            masked(x[i : i + batch_size].to(device))
    finally:
        for h in handles:
            h.remove()
        masked.train(was_training)
    mean_abs = {k: (v / max(n, 1)).float().cpu() for k, v in sums.items()}
    apoz = {k: (v / max(n * positions.get(k, 1), 1)).float().cpu() for k, v in zeros.items()}
    return ActivationStats(mean_abs, apoz, n)


def weight_magnitude(masked: MaskedNetwork) -> dict[str, torch.Tensor]:
    """L1 norm of each unit's incoming weights (Li et al. 2017)."""
    from .recurrent import incoming_l1, resolve

    modules = dict(masked.named_modules())
    out = {}
    for layer in masked.layers:
        found = resolve(masked.net, layer)
        if found is not None:  # every gate's rows, input and recurrent weights
            out[layer] = incoming_l1(found[1], found[2], found[3])
            continue
        module = _find_layer(modules, layer)
        out[layer] = out_weight_rows(module).abs().sum(1).float().cpu()
    return out


def _find_layer(modules: dict[str, nn.Module], layer: str) -> nn.Module:
    for name in (layer, f"net.{layer}", f"model.{layer}"):
        if name in modules:
            return modules[name]
    for name, module in modules.items():
        if name.endswith("." + layer):
            return module
    raise KeyError(f"layer {layer!r} not found in the network")


# Criteria: name -> (what it needs, how to turn it into "lower goes first" scores).
CRITERIA = ("activation", "negative_activation", "random", "apoz", "magnitude", "oracle")


def unit_scores(
    criterion: str,
    masked: MaskedNetwork,
    x_train: torch.Tensor,
    *,
    samples: int | None = None,
    batch_size: int = 1024,
) -> dict[str, torch.Tensor]:
    """Scores for every unit (lower goes first) by ``criterion``:
    ``activation`` E(|a|), ``negative_activation`` -E(|a|), ``random`` all zero (ties broken at
    random by selection), ``apoz`` minus the average fraction of zeros, ``magnitude`` incoming L1."""
    if criterion == "random":
        return {k: torch.zeros(w) for k, w in masked.widths.items()}
    if criterion == "magnitude":
        return weight_magnitude(masked)
    stats = activation_stats(masked, x_train, samples=samples, batch_size=batch_size)
    return scores_from_stats(criterion, stats)


def scores_from_stats(criterion: str, stats: ActivationStats) -> dict[str, torch.Tensor]:
    """Scores (lower goes first) of an activation-based ``criterion`` from its statistics."""
    if criterion == "activation":
        return stats.mean_abs
    if criterion == "negative_activation":
        return {k: -v for k, v in stats.mean_abs.items()}
    if criterion == "apoz":
        return {k: -v for k, v in stats.apoz.items()}
    raise ValueError(f"unknown criterion {criterion!r}; expected one of {CRITERIA}")
