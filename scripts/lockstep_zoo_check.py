"""Lockstep against separate runs for BatchNorm zoo models (VGG, ResNet-18) on a CIFAR-10 subset.

    python scripts/lockstep_zoo_check.py                                  # the defaults below
    python scripts/lockstep_zoo_check.py --models vgg11:scale=0.25 --train 2000 --epochs 2 \\
        --rounds 3 --metrics minimum maximum random --seeds 0 1

For each model, every (metric, seed) DropNet run is made twice: one after another
(``DropNet(...).run()``) and as one lockstep batch (``run_dropnet_lockstep``). One table: per
model and round, whether every run dropped the same units, the largest |test accuracy difference|
over the runs, the largest weight difference (every tensor; BatchNorm running statistics of
channels dead in that round excluded: a compacted batch leaves them as they were, and they never
reach an output) and the wall time of each driver. Timings taken on a loaded machine are
indicative only.

The images are a stratified-by-order subset of the CIFAR-10 JPEG copy
(``../shared/datasets/cifar10-jpeg``): the first ``train/10`` training and ``test/10`` test
images of each class, extracted once to ``--work`` (outside the repository).
"""

from __future__ import annotations

import argparse
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets" / "cifar10-jpeg"
if not SHARED.is_dir():
    SHARED = Path("/work/shared/datasets/cifar10-jpeg")


def extract_subset(shared: Path, work: Path, split: str, per_class: int) -> None:
    """``<work>/<split>/<class>/*.jpg``: the first ``per_class`` images of each class."""
    done = work / f".{split}-{per_class}"
    if done.exists():
        return
    counts: dict[str, int] = {}
    with tarfile.open(shared / f"{split}.tar.gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 3 or parts[-3] != split:
                continue
            cls = parts[-2]
            if counts.get(cls, 0) >= per_class:
                continue
            counts[cls] = counts.get(cls, 0) + 1
            target = work / split / cls / parts[-1]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
    done.touch()


def load(args):
    from secateurs.data import load_dataset

    work = Path(args.work) / f"cifar10-{args.train}-{args.test}"
    # the validation split (10%) comes out of the extracted training images
    extract_subset(SHARED, work, "train", round(args.train / 0.9 / 10))
    extract_subset(SHARED, work, "test", args.test // 10)
    return load_dataset(f"imagefolder:{work}", seed=0)


def frozen(spec, data, result, round_):
    from secateurs.pruning import DropNet, DropNetConfig
    from secateurs.pruning.lockstep import _tail_modules

    masked = DropNet(spec, data, DropNetConfig(), seed=0).masked
    alive = result.masks_at(round_)
    out = {}
    for layer in masked.layers:
        for name in _tail_modules(masked, layer):
            out[f"net.{name}.running_mean"] = out[f"net.{name}.running_var"] = ~alive[layer]
    return out


def compare(spec, data, runs):
    import torch

    from secateurs.pruning import DropNet
    from secateurs.pruning.lockstep import run_dropnet_lockstep

    start = time.perf_counter()
    separate = [DropNet(spec, data, cfg, seed=seed).run() for cfg, seed in runs]
    t_separate = time.perf_counter() - start
    start = time.perf_counter()
    batched = run_dropnet_lockstep(spec, data, runs)
    t_lockstep = time.perf_counter() - start
    rows = []
    for r in range(max(len(a.rounds) for a in separate)):
        same, acc, weight = True, 0.0, 0.0
        for a, b in zip(separate, batched, strict=True):
            if r >= len(a.rounds) or r >= len(b.rounds):
                same = same and len(a.rounds) == len(b.rounds)
                continue
            ma, mb = a.masks_at(r), b.masks_at(r)
            same = same and all(torch.equal(ma[x], mb[x]) for x in a.layers)
            acc = max(acc, abs(a.rounds[r]["test_acc"] - b.rounds[r]["test_acc"]))
            if r in a.weights and r in b.weights:
                dead = frozen(spec, data, a, r)
                for k, want in a.weights[r].items():
                    got = b.weights[r][k]
                    if k in dead:
                        want, got = want[~dead[k]], got[~dead[k]]
                    if want.numel():
                        weight = max(weight, float((got.double() - want.double()).abs().max()))
        rows.append((r, same, acc, weight))
    return rows, t_separate, t_lockstep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg11:scale=0.25", "resnet18:width=16"])
    parser.add_argument("--metrics", nargs="+", default=["minimum", "maximum", "random"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--train", type=int, default=2000, help="training images (before val)")
    parser.add_argument("--test", type=int, default=1000, help="test images")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per run (incl. round 0)")
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--work", default="/tmp/secateurs-lockstep-zoo")
    parser.add_argument("--no-channels-last", action="store_true",
                        help="grouped convolutions channels-first on CPU (bitwise closer for "
                             "BatchNorm models, slower)")
    args = parser.parse_args()

    import torch

    from secateurs.pruning import DropNetConfig
    from secateurs.training import TrainConfig
    from secateurs.training.lockstep import StackedConv2d

    torch.set_num_threads(1)
    if args.no_channels_last:
        StackedConv2d.channels_last = False
    data = load(args)
    train = TrainConfig(max_epochs=args.epochs, patience=None, lr=args.lr,
                        batch_size=args.batch_size)
    runs = [
        (DropNetConfig(metric=m, fraction=args.fraction, until=None,
                       max_rounds=args.rounds - 1, train=train), s)
        for m in args.metrics for s in args.seeds
    ]
    print(f"CIFAR-10 JPEG subset: {len(data.y_train)} train, {len(data.y_val)} val, "
          f"{len(data.y_test)} test; {len(runs)} runs per model ({', '.join(args.metrics)} x "
          f"seeds {args.seeds}), {args.epochs} epochs per round, lr {args.lr}, batch "
          f"{args.batch_size}, one thread"
          + (", channels-first grouped convolutions" if args.no_channels_last else ""))
    header = (f"{'model':<22} {'round':>5} {'same units':>10} {'max |dacc|':>10} "
              f"{'max |dw|':>10} {'separate s':>10} {'lockstep s':>10}")
    lines = []
    for spec in args.models:
        rows, t_sep, t_lock = compare(spec, data, runs)
        for r, same, acc, weight in rows:
            times = (f"{t_sep:>10.1f} {t_lock:>10.1f}" if r == 0 else f"{'':>10} {'':>10}")
            lines.append(f"{spec:<22} {r:>5} {'yes' if same else 'NO':>10} {acc:>10.2e} "
                         f"{weight:>10.2e} {times}")
        print(f"done {spec}: separate {t_sep:.1f} s, lockstep {t_lock:.1f} s", flush=True)
    print(header)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
