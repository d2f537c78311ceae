"""DropNet studies trained in lockstep versus a plain loop of separate runs, side by side.

Both sides do the same work: the same runs (metric, seed), the same settings, the same data. The
baseline is ``[DropNet(model, data, config, seed=s).run() for ...]``; lockstep is
``run_dropnet_lockstep(model, data, runs)``. Each table row also checks that the two sides agree:
runs with identical dropped units in every round, the mean agreement of the per-round masks, and
the largest test-accuracy difference over all rounds of all runs.

Run with ``python -m benchmarks lockstep`` (CUDA when available), or
``python -m benchmarks.bench_lockstep --device cuda`` to choose the device.
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
from secateurs.pruning.lockstep import run_dropnet_lockstep
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


def alive_sets(result: DropNetResult) -> list[dict[str, torch.Tensor]]:
    return [result.masks_at(r) for r in range(len(result.rounds))]


def compare(seq: list[DropNetResult], lock: list[DropNetResult]) -> dict:
    """How closely lockstep reproduced the separate runs."""
    identical, agreement, acc_diff, rounds = 0, [], 0.0, 0
    for a, b in zip(seq, lock, strict=True):
        identical += int(a.dropped == b.dropped and len(a.rounds) == len(b.rounds))
        for ma, mb, ra, rb in zip(alive_sets(a), alive_sets(b), a.rounds, b.rounds, strict=False):
            same = sum(int((ma[k] == mb[k]).sum()) for k in ma)
            agreement.append(same / sum(len(v) for v in ma.values()))
            acc_diff = max(acc_diff, abs(ra["test_acc"] - rb["test_acc"]))
            rounds += 1
    return {
        "identical": identical,
        "runs": len(seq),
        "agreement": sum(agreement) / max(len(agreement), 1),
        "acc_diff": acc_diff,
        "rounds": rounds,
    }


def study(title: str, model: str, data, metrics, seeds, config: DropNetConfig) -> dict:
    runs = [(DropNetConfig(**{**config.__dict__, "metric": m}), s) for m in metrics for s in seeds]
    print(f"  {title}: {len(runs)} runs, baseline...", flush=True)
    start = time.perf_counter()
    seq = [DropNet(model, data, cfg, seed=s).run() for cfg, s in runs]
    t_seq = time.perf_counter() - start
    print(f"  {title}: baseline {t_seq:.1f} s, lockstep...", flush=True)
    start = time.perf_counter()
    lock = run_dropnet_lockstep(model, data, runs)
    t_lock = time.perf_counter() - start
    print(f"  {title}: lockstep {t_lock:.1f} s ({t_seq / t_lock:.1f}x)", flush=True)
    return {"title": title, "runs": len(runs), "rounds": sum(len(r.rounds) for r in seq),
            "seq": t_seq, "lock": t_lock, **compare(seq, lock)}


def run(quick: bool = False, device: str | None = None) -> str:
    device = str(resolve_device(device or os.environ.get("SECATEURS_BENCH_DEVICE", "auto")))
    rows = []
    mnist = load_dataset("mnist", DATASETS / "mnist-test", test_fraction=0.2)
    if quick:
        train = TrainConfig(max_epochs=2, device=device)
        cfg = DropNetConfig(fraction=0.2, until=0.6, train=train)
        rows.append(study("Model A (FC40-FC40), MNIST test set", "model-a", mnist,
                          ["minimum", "random_layer"], [0, 1], cfg))
    else:
        cfg = DropNetConfig(fraction=0.2, until=0.1, train=TrainConfig(device=device))
        rows.append(study("Model A (FC40-FC40), MNIST test set", "model-a", mnist,
                          list(PAPER_METRICS), [0, 1, 2], cfg))
    with tempfile.TemporaryDirectory() as tmp:
        spec = cifar_subset(Path(tmp), 40 if quick else 100)
        cifar = load_dataset(spec)
        epochs, until = (1, 0.7) if quick else (3, 0.25)
        cfg = DropNetConfig(fraction=0.2, until=until,
                            train=TrainConfig(max_epochs=epochs, device=device))
        metrics, seeds = (["minimum"], [0, 1]) if quick else (["minimum", "minimum_layer"], [0, 1])
        for name, model in (("Model B (Conv64-64)", "model-b"), ("Model C (64-64-128-128)", "model-c")):
            rows.append(study(f"{name}, CIFAR-10 subset", model, cifar, metrics, seeds, cfg))
    n_cifar = len(cifar.y_train) + len(cifar.y_val) + len(cifar.y_test)
    lines = [
        "## DropNet in lockstep",
        "",
        "One DropNet study per row, run twice in the same process: a plain loop of separate runs "
        "(`DropNet(...).run()` for each metric and seed) and `run_dropnet_lockstep` (all runs "
        "trained as one batched model, units dropped in every network skipped). "
        "Equivalence: runs whose dropped units are identical in every round, mean per-round "
        "agreement of the masks (fraction of units with the same alive/dropped state), and the "
        "largest test-accuracy difference over all rounds of all runs.",
        "",
        "| study | runs | rounds | separate runs (s) | lockstep (s) | speed-up | identical runs "
        "| mask agreement | max abs test-acc diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['title']} | {r['runs']} | {r['rounds']} | {r['seq']:.1f} | {r['lock']:.1f} "
            f"| {r['seq'] / r['lock']:.1f}x | {r['identical']}/{r['runs']} | {r['agreement']:.4f} "
            f"| {r['acc_diff']:.4f} |"
        )
    mode = "quick mode: few runs and epochs" if quick else "full"
    lines += [
        "",
        f"Settings ({mode}), device `{device}`, {torch.get_num_threads()} torch threads: "
        "Model A: the six paper metrics x seeds 0-2, p = 0.2 down to 10% remaining, the paper's "
        "training settings (SGD lr 0.1, batch 32, up to 100 epochs, patience 5), MNIST test set "
        "split 80/20 (10% of train for validation). Models B and C: metrics minimum and "
        f"minimum_layer x seeds 0-1, p = 0.2 down to 25% remaining, {epochs} epoch(s) per round, "
        f"{n_cifar} CIFAR-10 (JPEG copy) test images split 80/20."
        if not quick else
        f"Settings ({mode}), device `{device}`.",
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
