"""Training throughput of Model A on MNIST-sized data: our trainer against two plain loops.

All do the same work: FC40-FC40 on 54,000 random 1x28x28 samples, SGD lr 0.1, batch 32, one epoch
per repeat, with the same model initialisation, and the same end-of-epoch validation pass. The
DataLoader loop is the textbook one (TensorDataset, shuffle=True, cross-entropy,
zero_grad/backward/step); the in-memory loop slices one permuted tensor and records nothing per
step (the least a Python loop can do). Ours also records each step's loss and prediction (for the
epoch's training loss and accuracy). The FLOP floor is the epoch's arithmetic (6 x MACs per
sample) at this machine's fp32 matmul rate, measured in the same run.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from secateurs.data import DatasetSplits
from secateurs.models import build_model
from secateurs.training import TrainConfig, train

N, BATCH = 54_000, 32


def _data(n: int) -> DatasetSplits:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 28, 28, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    return DatasetSplits("mnist-sized", x, y, x[:1000], y[:1000], x[:1000], y[:1000], 10)


def _ours(data: DatasetSplits) -> float:
    torch.manual_seed(0)
    model = build_model("model-a", (1, 28, 28), 10)
    start = time.perf_counter()
    train(model, data, TrainConfig(max_epochs=1, patience=None), progress=False)
    return time.perf_counter() - start


def _dataloader(data: DatasetSplits) -> float:
    torch.manual_seed(0)
    model = build_model("model-a", (1, 28, 28), 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(TensorDataset(data.x_train, data.y_train), batch_size=BATCH, shuffle=True)
    start = time.perf_counter()
    model.train()
    for xb, yb in loader:
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # the same end-of-epoch validation pass as ours
    with torch.no_grad():
        model.eval()
        F.cross_entropy(model(data.x_val), data.y_val)
    return time.perf_counter() - start


def _in_memory(data: DatasetSplits) -> float:
    torch.manual_seed(0)
    model = build_model("model-a", (1, 28, 28), 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    start = time.perf_counter()
    model.train()
    perm = torch.randperm(len(data.y_train))
    xs, ys = data.x_train[perm], data.y_train[perm]
    for i in range(0, len(ys), BATCH):
        loss = F.cross_entropy(model(xs[i : i + BATCH]), ys[i : i + BATCH])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        model.eval()
        F.cross_entropy(model(data.x_val), data.y_val)
    return time.perf_counter() - start


def run(quick: bool = False) -> str:
    n = 5_000 if quick else N
    repeats = 1 if quick else 5
    data = _data(n)
    threads = torch.get_num_threads()
    import os

    from benchmarks.bench_sweep import matmul_rate
    from secateurs.pruning import count_params_macs

    load = os.getloadavg()[0]
    times = {"ours": [], "dataloader": [], "in-memory": []}
    for _ in range(repeats):  # interleaved, so that machine noise hits all alike
        times["dataloader"].append(_dataloader(data))
        times["in-memory"].append(_in_memory(data))
        times["ours"].append(_ours(data))
    base = statistics.median(times["dataloader"])
    plain = statistics.median(times["in-memory"])
    _, macs = count_params_macs(build_model("model-a", (1, 28, 28), 10), data.x_train[:1])
    floor = n * 6 * macs / (matmul_rate(threads) * 1e9)
    rows = [
        "## Trainer throughput: Model A, MNIST-sized data",
        "",
        f"FC40-FC40, {n:,} samples of 1x28x28, batch {BATCH}, SGD lr 0.1, one epoch, median of "
        f"{repeats} interleaved repeats, {threads} torch threads, load average (1 min) {load:.2f} "
        "before the run. Command: `python -m benchmarks trainer`.",
        "",
        "| loop | s / epoch | samples / s | speed-up vs DataLoader | vs in-memory loop | "
        "x FLOP floor |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    labels = {"dataloader": "torch DataLoader loop", "in-memory": "plain in-memory loop",
              "ours": "secateurs trainer (the separate engine)"}
    for name in ("dataloader", "in-memory", "ours"):
        t = statistics.median(times[name])
        rows.append(f"| {labels[name]} | {t:.2f} | {n / t:,.0f} | {base / t:.2f}x | "
                    f"{plain / t:.2f}x | {t / floor:.0f}x |")
    rows.append(f"| FLOP floor ({n * 6 * macs:.2e} FLOPs at the measured matmul rate) | "
                f"{floor:.3f} | | | | 1x |")
    return "\n".join(rows)
