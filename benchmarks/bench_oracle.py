"""The DropNet oracle's cost per round: batched ``removal_losses`` (vmap over stacked masks) against
the obvious loop over units (``removal_losses_naive``, one full pass per unit), on FC20-FC20
briefly trained on the MNIST test set (digits when the shared datasets are absent).

Both compute the training-set loss with each candidate unit removed alone; the values are
asserted equal before any time is reported.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "datasets" / "mnist-test"


def _timed(fn, repeats: int) -> tuple[float, torch.Tensor]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def run(quick: bool = False) -> str:
    from secateurs.data import load_dataset
    from secateurs.pruning import DropNet, DropNetConfig, removal_losses, removal_losses_naive
    from secateurs.pruning.oracle import candidates
    from secateurs.training import TrainConfig

    torch.set_num_threads(1)
    if MNIST.is_dir() and not quick:
        data, source = load_dataset("mnist", MNIST), "MNIST test set (train split)"
    else:
        data, source = load_dataset("digits"), "digits (train split)"
    config = DropNetConfig(metric="oracle", until=None, max_rounds=40,
                           train=TrainConfig(max_epochs=1 if quick else 3, patience=None))
    net = DropNet("model-a:widths=20-20", data, config, seed=0)
    x, y = data.x_train, data.y_train
    repeats = 1 if quick else 5
    epochs = config.train.max_epochs
    rows = []
    for target in (40, 30, 20, 10):  # units alive when the oracle is asked
        while sum(int(m.sum()) for m in net.masked.get_masks().values()) > target:
            net.record(net.train_round())
            net.prune_step()
        net.train_round()
        units = candidates(net.masked)
        removal_losses(net.masked, x[:256], y[:256], units)  # warm-up: vmap's first call
        t_naive, naive = _timed(lambda u=units: removal_losses_naive(net.masked, x, y, u), repeats)
        t_batch, batched = _timed(lambda u=units: removal_losses(net.masked, x, y, u), repeats)
        torch.testing.assert_close(batched, naive, atol=1e-5, rtol=1e-5)
        assert int(torch.argmin(batched)) == int(torch.argmin(naive))
        rows.append((target, len(units), t_naive, t_batch, float((batched - naive).abs().max())))
        if quick:
            break
    lines = [
        "## DropNet oracle: batched removal losses vs a loop over units",
        "",
        f"FC20-FC20 (`model-a:widths=20-20`) trained {epochs} epoch(s) per round on {source}, "
        f"{len(y)} samples, one torch thread; each row is one oracle round (the training-set loss "
        "with each candidate unit removed alone), median of "
        f"{repeats} run(s), measured side by side. Same values asserted (max abs difference "
        "shown); the batched version uses the default chunk of 64 candidates per vmap call and "
        "batches of 1024 samples.",
        "",
        "| units alive | candidates | naive loop (s) | batched vmap (s) | speedup | max abs diff |",
        "|---|---|---|---|---|---|",
    ]
    for alive, n, tn, tb, diff in rows:
        lines.append(f"| {alive} | {n} | {tn:.3f} | {tb:.3f} | {tn / tb:.1f}x | {diff:.1e} |")
    lines += ["", "Command: `python -m benchmarks oracle`"]
    return "\n".join(lines)
