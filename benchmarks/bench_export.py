"""Does physical removal pay? CPU inference latency of DropNet's Model C: unpruned, masked (the
masks DropNet trains with) and exported (dropped filters removed), at 100%, 50% and 25% of the
filters remaining."""

from __future__ import annotations

import statistics
import time

import torch

from secateurs.models import build_model
from secateurs.pruning.masks import MaskedNetwork
from secateurs.pruning.surgery import export_pruned

THREADS = 1
FRACTIONS = (1.0, 0.5, 0.25)


def _time_ms(module: torch.nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    module(x)
    return (time.perf_counter() - start) * 1000.0


def run(quick: bool = False) -> str:
    batch, repeats, warmup = (32, 3, 1) if quick else (256, 9, 2)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        torch.manual_seed(0)
        shape = (3, 32, 32)
        model = build_model("model-c", shape, 10).eval()
        x = torch.rand(batch, *shape)
        masked = MaskedNetwork(model, x[:2]).eval()
        nets: dict[tuple[float, str], torch.nn.Module] = {}
        sizes: dict[tuple[float, str], tuple[int, int]] = {}
        for frac in FRACTIONS:
            # keep the lowest-index units of every layer (uniform per layer)
            masks = {
                layer: torch.arange(width) < max(1, round(frac * width))
                for layer, width in masked.widths.items()
            }
            m = MaskedNetwork(model, x[:2]).eval()  # shares the weights, own masks
            m.set_masks(masks)
            result = export_pruned(m, x[:2])
            nets[(frac, "masked")] = m
            nets[(frac, "exported")] = result.module.eval()
            sizes[(frac, "masked")] = (result.params_before, result.macs_before)
            sizes[(frac, "exported")] = (result.params, result.macs)
        nets[(1.0, "unpruned")] = model
        sizes[(1.0, "unpruned")] = sizes[(1.0, "masked")]
        times: dict[tuple[float, str], list[float]] = {k: [] for k in nets}
        with torch.no_grad():
            for net in nets.values():
                for _ in range(warmup):
                    net(x)
            for _ in range(repeats):  # round-robin, so that load drift hits every network alike
                for key, net in nets.items():
                    times[key].append(_time_ms(net, x))
    finally:
        torch.set_num_threads(previous_threads)

    base = statistics.median(times[(1.0, "unpruned")])
    rows = [
        "| filters remaining | network | params | MACs / image | ms / batch (median) | speed-up vs unpruned |",
        "|---|---|---:|---:|---:|---:|",
    ]
    order = [(1.0, "unpruned")] + [(f, k) for f in FRACTIONS for k in ("masked", "exported")]
    for key in order:
        med = statistics.median(times[key])
        params, macs = sizes[key]
        rows.append(
            f"| {key[0]:.0%} | {key[1]} | {params:,} | {macs:,} | {med:.1f} | {base / med:.2f}x |"
        )
    exp25 = base / statistics.median(times[(0.25, "exported")])
    mask25 = base / statistics.median(times[(0.25, "masked")])
    verdict = (
        f"At 25% remaining the exported network is {exp25:.2f}x as fast as the unpruned one "
        f"(target: at least 2x) and the masked one {mask25:.2f}x (masks save nothing)."
    )
    return "\n".join(
        [
            "## Export: inference latency of masked vs physically pruned Model C",
            "",
            f"DropNet Model C (conv 64-64-128-128, FC 256) on 3x32x32 inputs, CPU, batch {batch}, "
            f"torch.no_grad, eval mode, {THREADS} torch thread; {warmup} warm-up passes, then the "
            f"median of {repeats} timed passes per network, taken round-robin. Units are removed "
            "uniformly per layer (the lowest-index filters are kept). MACs count Linear and Conv2d "
            "layers.",
            "",
            *rows,
            "",
            verdict,
            "",
            "Command: `python -m benchmarks export`",
        ]
    )
