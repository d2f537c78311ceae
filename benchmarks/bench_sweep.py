"""The paper's sweep end to end: Model A on Fashion-MNIST, six metrics x 5 seeds, p = 0.2 down to
10% of the units, paper training settings (SGD lr 0.1, batch 32, early stopping, patience 5).

Measured in one run, side by side:

- the sweep as ``secateurs prune`` runs it (``run_prune_study``: the one driver, stacked engine,
  round 0 forked), timed end to end (data loading included) with a per-phase breakdown taken by
  wrapping the driver's phases with timers;
- the FLOP floor: the training arithmetic the sweep's records imply (per round: epochs x training
  samples x 6 x MACs per sample; 6 = forward, backward to activations and to weights), once with
  the units still alive (what a round must compute) and once at full width (what masks alone
  compute), divided by this machine's fp32 matmul rate measured in the same run;
- the plain loop of separate runs (``DropNet.run(lockstep=False)`` for each run: the built-in
  trainer at full width), estimated from the sweep's epoch counts at that trainer's per-epoch
  time measured here (running it whole takes about an hour).

``python -m benchmarks sweep`` (``--quick``: digits, 2 metrics x 2 seeds, to check it runs).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager

import torch

from benchmarks.load import busy_cores, idle
from secateurs.data import load_dataset
from secateurs.experiments import prune_study as study_module
from secateurs.experiments.prune_study import run_prune_study
from secateurs.pruning import PAPER_METRICS, DropNet, DropNetConfig
from secateurs.pruning import driver as driver_module
from secateurs.training import TrainConfig, train
from secateurs.training import lockstep as trainer_module

ISSUE_BEFORE_S = 3777  # the same sweep as measured when the speed issue was filed (see BENCHMARKS)
# this benchmark on this machine, idle, 2026-12-02, before the hand-written step of Linear/ReLU
# chains (training/fused_chain.py): every step through autograd
BEFORE_FUSED_S = 634
# the same call on this machine, idle, 2026-12-03 (6,390 epochs), before the per-step trims: each
# step gathering its own rows in the shared case, cached views, weight updates as one baddbmm_
BEFORE_TRIMS_S = 550


def matmul_rate(threads: int, size: int = 2048, repeats: int = 7, device: str = "cpu") -> float:
    """Median fp32 GFLOP/s of a square matmul with ``threads`` torch threads (TF32 off on CUDA:
    the training runs in fp32)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    try:
        a = torch.randn(size, size, device=device)
        b = torch.randn(size, size, device=device)
        a @ b
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            sync()
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return 2 * size**3 / statistics.median(times) / 1e9


class Phases:
    """Wall seconds spent inside wrapped functions; nested phases are subtracted from their
    parents so the rows add up."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.stack: list[str] = []
        self.undo: list[tuple[object, str, object]] = []

    def wrap(self, owner, name: str, phase: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            self.stack.append(phase)
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                took = time.perf_counter() - start
                self.stack.pop()
                self.seconds[phase] += took
                if self.stack:
                    self.seconds[self.stack[-1]] -= took

        setattr(owner, name, timed)
        self.undo.append((owner, name, original))

    def restore(self) -> None:
        for owner, name, original in reversed(self.undo):
            setattr(owner, name, original)


@contextmanager
def phases_installed():
    p = Phases()
    p.wrap(driver_module, "train_lockstep", "training steps (stacked)")
    p.wrap(trainer_module, "evaluate_lockstep", "per-epoch validation")
    p.wrap(DropNet, "train_round", "training (separate engine)")
    p.wrap(driver_module, "measure_splits", "per-round measurement of 3 splits + activation scores")
    for name in ("compaction_plan", "compact_copy", "expand_into", "trace_stackable"):
        p.wrap(driver_module, name, "compaction and tracing")
    p.wrap(DropNet, "record", "records (parameter and MAC counts from the export)")
    p.wrap(DropNet, "prune_step", "selection, drop and reset")
    p.wrap(study_module, "save_run", "saving runs (safetensors + JSON)")
    try:
        yield p
    finally:
        p.restore()


def _plain_epoch_seconds(data, config: TrainConfig, repeats: int) -> float:
    """One epoch of the built-in trainer on a full-width masked Model A (a separate run)."""
    one = TrainConfig(**{**config.to_dict(), "max_epochs": 1, "patience": None})
    times = []
    for r in range(repeats):
        run = DropNet("model-a", data, DropNetConfig(train=one), seed=r)
        start = time.perf_counter()
        train(run.masked, data, one, seed=r, progress=False)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(quick: bool = False, device: str = "cpu", dataset: str | None = None) -> str:
    load_before, busy = os.getloadavg()[0], busy_cores()
    threads = torch.get_num_threads()
    rate = matmul_rate(threads, device=device)
    spec, metrics, seeds = ("digits", ["minimum", "random"], [0, 1]) if quick else (
        "fashion-mnist", list(PAPER_METRICS), [0, 1, 2, 3, 4]
    )
    spec = dataset or spec
    train_cfg = TrainConfig(max_epochs=3 if quick else 100, device=device)
    config = DropNetConfig(fraction=0.2, until=0.5 if quick else 0.1, train=train_cfg)
    start = time.perf_counter()
    with phases_installed() as phases, tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        data = load_dataset(spec, seed=0)
        phases.seconds["loading the dataset"] += time.perf_counter() - t
        study = run_prune_study(
            "model-a", data, metrics, seeds, config, out=os.path.join(tmp, "study"),
            dataset_spec=spec, split_seed=0, progress=False,
        )
    wall = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    rows = [r for run_ in study.runs for r in run_.rounds]
    n_train = len(data.y_train)
    full_macs = rows[0]["macs"] / rows[0]["macs_fraction"]
    epochs = sum(r["epochs"] for r in rows)
    forked = sum(1 for run_ in study.runs if run_.forked_from)
    trained_epochs = epochs - sum(
        run_.rounds[0]["epochs"] for run_ in study.runs if run_.forked_from
    )
    flops_alive = sum(r["epochs"] * n_train * 6 * r["macs"] for r in rows)
    flops_full = epochs * n_train * 6 * full_macs
    floor_alive, floor_full = flops_alive / (rate * 1e9), flops_full / (rate * 1e9)
    plain_epoch = _plain_epoch_seconds(data, train_cfg, 1 if quick else 3)
    separate_est = epochs * plain_epoch
    accounted = sum(phases.seconds.values())
    phase_rows = sorted(phases.seconds.items(), key=lambda kv: -kv[1])
    phase_rows.append(("other (driver, Python, progress)", wall - accounted))
    out = [
        "## The paper's sweep: Model A on Fashion-MNIST, 6 metrics x 5 seeds, down to 10%"
        if not quick else "## The paper's sweep (quick: digits, 2 metrics x 2 seeds, to 50%)",
        "",
        f"`secateurs prune --model model-a --dataset {spec} --metric ... ({len(metrics)} metrics) "
        f"--seeds {len(seeds)} --until {config.until}` as `run_prune_study` runs it, with paper "
        f"training settings, device {device}, {threads} torch threads. {len(study.runs)} runs, {len(rows)} rounds, "
        f"{epochs:,} epochs recorded ({trained_epochs:,} trained: round 0 was trained once per "
        f"seed and forked to {forked} runs). Load average (1 min) {load_before:.2f} before the "
        f"run, {load_after:.2f} after; {idle(busy)}. Command: "
        "`python -m benchmarks sweep`.",
        "",
        "| what | seconds | vs this sweep |",
        "|---|---:|---:|",
        f"| **this sweep, end to end** | **{wall:,.0f}** | 1.00x |",
        f"| FLOP floor, alive units only ({flops_alive:.2e} FLOPs at {rate:.0f} GFLOP/s, "
        f"measured now) | {floor_alive:,.0f} | {wall / floor_alive:.1f}x slower than the floor |",
        f"| FLOP floor, full width every round ({flops_full:.2e} FLOPs) | {floor_full:,.0f} | "
        f"{wall / floor_full:.1f}x |",
        f"| plain loop of separate runs (estimated: {epochs:,} epochs x {plain_epoch:.2f} s per "
        f"full-width epoch of the built-in trainer, measured now) | {separate_est:,.0f} | "
        f"**{separate_est / wall:.1f}x slower** |",
    ]
    if not quick and device == "cpu" and spec == "fashion-mnist":
        out.append(
            f"| the same benchmark on this machine (idle) before the hand-written step of "
            f"Linear/ReLU chains, every step through autograd | {BEFORE_FUSED_S:,} | "
            f"{BEFORE_FUSED_S / wall:.2f}x slower |"
        )
        out.append(
            f"| the same sweep on this machine (idle, 6,390 epochs) before the per-step trims "
            f"(rows gathered per step, cached views, fused weight updates) | {BEFORE_TRIMS_S:,} | "
            f"{BEFORE_TRIMS_S / wall:.2f}x slower |"
        )
        out.append(
            f"| the same sweep when the speed issue was filed (its figure, other work sharing "
            f"the machine for part of it) | {ISSUE_BEFORE_S:,} | {ISSUE_BEFORE_S / wall:.1f}x "
            "slower |"
        )
    out += ["", "Where the time went:", "", "| phase | seconds | share |", "|---|---:|---:|"]
    for name, s in phase_rows:
        out.append(f"| {name} | {s:,.1f} | {s / wall:.0%} |")
    return "\n".join(out)
