"""DropNet studies trained in lockstep versus a plain loop of separate runs, side by side.

Both sides do the same work: the same runs (metric, seed), the same settings, the same data. The
baseline is ``[DropNet(model, data, config, seed=s).run() for ...]``; lockstep is
``run_dropnet_lockstep(model, data, runs)``. Each row also checks that the two sides agree: runs
with identical dropped units in every round, the mean agreement of the per-round masks, and the
mean and largest test-accuracy difference over all rounds of all runs.

Run with ``python -m benchmarks lockstep`` (CUDA when available), or
``python -m benchmarks.bench_lockstep --device cuda`` to choose the device. Both sides run with the
default torch threads; measure on an idle machine (multi-threaded small kernels time erratically
under contention: one epoch of Model A took 160 s instead of 3 s on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import tarfile
import tempfile
import time
from pathlib import Path

import torch

from secateurs.data import load_dataset
from secateurs.pruning import PAPER_METRICS, DropNet, DropNetConfig, DropNetResult
from secateurs.pruning.driver import run_dropnet_lockstep
from secateurs.training import TrainConfig, resolve_device

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"


def cifar_subset(folder: Path, per_class: int) -> str:
    """Extract the first ``per_class`` test images of each CIFAR-10 class into ``folder``."""
    counts: dict[str, int] = {}
    with tarfile.open(DATASETS / "cifar10-jpeg" / "test.tar.gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 3:
                continue
            cls = parts[1]
            if counts.get(cls, 0) >= per_class:
                continue
            counts[cls] = counts.get(cls, 0) + 1
            data = tar.extractfile(member).read()
            (folder / cls).mkdir(parents=True, exist_ok=True)
            (folder / cls / parts[2]).write_bytes(data)
    return f"imagefolder:{folder}"


def compare(seq: list[DropNetResult], lock: list[DropNetResult]) -> dict:
    """How closely lockstep reproduced the separate runs, and where they differed most."""
    identical, agreement, diffs, worst = 0, [], [], None
    for a, b in zip(seq, lock, strict=True):
        identical += int(a.dropped == b.dropped and len(a.rounds) == len(b.rounds))
        for r in range(min(len(a.rounds), len(b.rounds))):
            ma, mb = a.masks_at(r), b.masks_at(r)
            same = sum(int((ma[k] == mb[k]).sum()) for k in ma)
            agreement.append(same / sum(len(v) for v in ma.values()))
            acc_a, acc_b = a.rounds[r]["test_acc"], b.rounds[r]["test_acc"]
            diffs.append(abs(acc_a - acc_b))
            if worst is None or diffs[-1] > worst[0]:
                worst = (diffs[-1], f"{a.metric} seed {a.seed} round {r}: test accuracy "
                                    f"{acc_a:.3f} separately, {acc_b:.3f} in lockstep")
    return {
        "identical": identical,
        "agreement": sum(agreement) / max(len(agreement), 1),
        "acc_mean": sum(diffs) / max(len(diffs), 1),
        "acc_max": max(diffs, default=0.0),
        "worst": worst[1] if worst else "",
    }


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def study(title: str, model: str, data, metrics, seeds, config: DropNetConfig) -> dict:
    runs = [(DropNetConfig(**{**config.__dict__, "metric": m}), s) for m in metrics for s in seeds]
    print(f"  {title}: {len(runs)} runs, separate runs...", flush=True)
    seq, t_seq, c_seq = _timed(
        lambda: [DropNet(model, data, cfg, seed=s).run(lockstep=False) for cfg, s in runs]
    )
    print(f"  {title}: separate {t_seq:.1f} s, lockstep...", flush=True)
    lock, t_lock, c_lock = _timed(lambda: run_dropnet_lockstep(model, data, runs))
    print(f"  {title}: lockstep {t_lock:.1f} s ({t_seq / t_lock:.1f}x)", flush=True)
    return {"title": title, "runs": len(runs), "rounds": sum(len(r.rounds) for r in seq),
            "seq": t_seq, "lock": t_lock, "cpu_seq": c_seq, "cpu_lock": c_lock,
            **compare(seq, lock)}


def run(quick: bool = False, device: str | None = None) -> str:
    device = str(resolve_device(device or os.environ.get("SECATEURS_BENCH_DEVICE", "auto")))
    return _run(quick, device)


def _run(quick: bool, device: str) -> str:
    rows = []
    mnist = load_dataset("mnist", DATASETS / "mnist-test", test_fraction=0.2)
    a_metrics, a_seeds = (["minimum", "random_layer"], [0, 1]) if quick else (PAPER_METRICS, [0, 1])
    a_train = TrainConfig(max_epochs=2, device=device) if quick else TrainConfig(device=device)
    a_until = 0.6 if quick else 0.3
    a_cfg = DropNetConfig(fraction=0.2, until=a_until, train=a_train)
    rows.append(study("Model A (FC40-FC40), MNIST", "model-a", mnist, list(a_metrics), a_seeds,
                      a_cfg))
    gpu = device != "cpu"
    per_class = 20 if quick else (300 if gpu else 200)
    epochs, rounds = (1, 2) if quick else (2, 3)
    with tempfile.TemporaryDirectory() as tmp:
        cifar = load_dataset(cifar_subset(Path(tmp), per_class))
    # lr 0.01, batch 64: the settings under which docs/lockstep.md measured these models
    c_cfg = DropNetConfig(
        fraction=0.2, until=None, max_rounds=rounds - 1,
        train=TrainConfig(max_epochs=epochs, patience=None, lr=0.01, batch_size=64, device=device),
    )
    c_metrics = ["minimum"] if quick else ["minimum", "maximum", "random"]
    c_seeds = [0] if quick else [0, 1]
    for name, model, seeds in (
        ("VGG-11 (scale 0.25)", "vgg11:scale=0.25", c_seeds),
        ("ResNet-18 (width 16)", "resnet18:width=16", [0]),
    ):
        rows.append(study(f"{name}, CIFAR-10 subset", model, cifar, c_metrics, seeds, c_cfg))
    n_cifar = len(cifar.y_train) + len(cifar.y_val) + len(cifar.y_test)
    lines = [
        "## DropNet in lockstep",
        "",
        "One DropNet study per row, run twice in one process: a plain loop of separate runs "
        "(`DropNet(...).run(lockstep=False)` for each metric and seed) and `run_dropnet_lockstep` "
        "(the one driver's stacked engine: the runs trained as batched models, only units alive "
        "in some network of a batch computed, round 0 trained once per seed and forked, every "
        "split measured and scored in stacked passes). Equivalence: runs whose dropped units are "
        "identical in every round, mean per-round agreement of the masks (fraction of units with "
        "the same alive/dropped state), mean and largest test-accuracy difference over all rounds "
        "of all runs (floating-point rounding differs, so long chaotic runs can drift apart into "
        "other, equally valid, choices of units; see docs/lockstep.md, *Equivalence and its "
        "tolerance*).",
        "",
        "| study | runs | rounds | separate (s) | lockstep (s) | speed-up | CPU s separate "
        "| CPU s lockstep | identical runs | mask agreement | mean / max abs test-acc diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['title']} | {r['runs']} | {r['rounds']} | {r['seq']:.1f} | {r['lock']:.1f} "
            f"| **{r['seq'] / r['lock']:.2f}x** | {r['cpu_seq']:.1f} | {r['cpu_lock']:.1f} "
            f"| {r['identical']}/{r['runs']} | {r['agreement']:.4f} "
            f"| {r['acc_mean']:.4f} / {r['acc_max']:.4f} |"
        )
    lines += ["", "Largest test-accuracy difference of each study (a run that collapses to chance a "
              "round earlier in one engine than in the other shows as a large one):", ""]
    lines += [f"- {r['title']}: {r['worst']}" for r in rows]
    threads = f"{torch.get_num_threads()} torch threads"
    if quick:
        settings = f"Quick mode (few runs, rounds and epochs), device `{device}`, {threads}."
    else:
        settings = (
            f"Device `{device}`, {threads}. Model A: the six paper metrics x seeds 0-1, "
            f"p = 0.2 down to {a_until:.0%} remaining, the paper's training settings (SGD lr 0.1, "
            "batch 32, up to 100 epochs, patience 5), the MNIST test set split 80/20 with 10% of "
            "train for validation. VGG-11 (minimum, maximum, random x seeds 0-1) and ResNet-18 "
            f"(the same metrics, seed 0): p = 0.2, {rounds} rounds of {epochs} epochs, SGD lr "
            f"0.01, batch 64, {n_cifar} CIFAR-10 (JPEG copy) test images split 80/20 (10% of "
            "train for validation)."
        )
    lines += [
        "",
        settings,
        "",
        "Command: `python -m benchmarks lockstep` "
        "(`python -m benchmarks.bench_lockstep --device cuda` to pick the device).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_lockstep")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(run(quick=args.quick, device=args.device))


if __name__ == "__main__":
    main()
