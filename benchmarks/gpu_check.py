"""What a machine with CUDA checks and measures, in under 5 minutes, printing one table.

    python -m benchmarks.gpu_check            # on a CUDA machine
    python -m benchmarks.gpu_check --quick    # about a minute (the sweep on digits)
    python -m benchmarks.gpu_check --device cpu --quick   # the same code paths on CPU (tested)

1. Lockstep against separate runs on the device: the same DropNet runs (Model A, the conv
   Model B and the recurrent lstm-a, two metrics x two seeds) through the stacked engine as one batch and each alone
   (``lockstep=False``, the built-in trainer): the units each run dropped must agree, and the
   test accuracies to the tolerance of docs/lockstep.md.
2. Export on the device: a pruned Model C exported physically gives the masked network's logits
   to 1e-5, and its parameter and MAC counts are the round's records.
3. The paper's sweep (``benchmarks/bench_sweep.py``) on the device, with its FLOP floor at the
   device's fp32 matmul rate measured in the same run.

TF32 is turned off so that "fp32" means fp32 on Ampere and later. Exit status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch


def _check_lockstep(device: str, quick: bool) -> list[tuple[str, bool, str]]:
    from secateurs.data import load_dataset
    from secateurs.pruning import lockstep as pruning_lockstep

    data = load_dataset("digits", seed=0)
    out = []
    # the recurrent engine is batched on CUDA by default; on CPU only when asked (it is slower)
    before, pruning_lockstep.BATCH_RECURRENT_ON_CPU = pruning_lockstep.BATCH_RECURRENT_ON_CPU, True
    try:
        return _lockstep_rows(data, device, quick, out)
    finally:
        pruning_lockstep.BATCH_RECURRENT_ON_CPU = before


def _lockstep_rows(data, device: str, quick: bool, out: list) -> list[tuple[str, bool, str]]:
    from secateurs.pruning import DropNet, DropNetConfig, run_dropnets
    from secateurs.training import TrainConfig

    specs = ("model-a:widths=20-20", "model-b:widths=4-4" if quick else "model-b:widths=6-6",
             "lstm-a:hidden=8" if quick else "lstm-a:hidden=32")
    for spec in specs:
        cfgs = [
            (DropNetConfig(metric=m, fraction=0.3, until=0.6 if quick else 0.4,
                           train=TrainConfig(max_epochs=1 if quick else 2, patience=1,
                                             device=device)), s)
            for m in ("minimum", "random_layer") for s in (0, 1)
        ]
        start = time.perf_counter()
        batched = run_dropnets([DropNet(spec, data, c, seed=s) for c, s in cfgs])
        t_batch = time.perf_counter() - start
        start = time.perf_counter()
        alone = [DropNet(spec, data, c, seed=s).run(lockstep=False) for c, s in cfgs]
        t_alone = time.perf_counter() - start
        same = sum(a.dropped == b.dropped for a, b in zip(alone, batched, strict=True))
        diff = max(
            abs(ra["test_acc"] - rb["test_acc"])
            for a, b in zip(alone, batched, strict=True)
            for ra, rb in zip(a.rounds, b.rounds, strict=False)
        )
        ok = same == len(cfgs) or diff <= 0.02
        out.append((
            f"lockstep = separate runs, {spec}", ok,
            f"{same}/{len(cfgs)} runs dropped the same units; max |test acc diff| {diff:.4f}; "
            f"{t_alone:.1f} s separate, {t_batch:.1f} s lockstep",
        ))
    return out


def _check_export(device: str) -> list[tuple[str, bool, str]]:
    from secateurs.data import load_dataset
    from secateurs.pruning import DropNet, DropNetConfig, count_params_macs, export_pruned
    from secateurs.training import TrainConfig

    data = load_dataset("digits", seed=0)
    cfg = DropNetConfig(metric="minimum", fraction=0.5, max_rounds=1, until=None,
                        train=TrainConfig(max_epochs=1, device=device))
    run = DropNet("model-c:widths=8-8-16-16,hidden=32", data, cfg, seed=0)
    result = run.run()
    masked = run.masked.eval()
    exported = export_pruned(masked.cpu(), data.x_test[:1]).module.eval()
    params, macs = count_params_macs(exported, data.x_test[:1])
    masked, exported = masked.to(device), exported.to(device)
    x = data.x_test[:256].to(device)
    with torch.no_grad():
        gap = (masked(x) - exported(x)).abs().max().item()
    last = result.rounds[-1]
    ok = gap <= 1e-5 and (params, macs) == (last["params"], last["macs"])
    return [(
        "export = masked network, Model C", ok,
        f"max |logit diff| {gap:.1e}; params {params:,} / MACs {macs:,} (records "
        f"{last['params']:,} / {last['macs']:,})",
    )]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="the sweep on digits (a minute)")
    parser.add_argument("--dataset", default=None, help="the sweep's dataset (fashion-mnist)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda"):
        if not torch.cuda.is_available():
            print("error: --device cuda but torch sees no CUDA device "
                  f"(torch {torch.__version__}); run with --device cpu to check the code paths",
                  file=sys.stderr)
            return 2
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        name = torch.cuda.get_device_name(torch.device(args.device))
    else:
        name = "CPU"
    from benchmarks import bench_sweep

    start = time.perf_counter()
    checks = _check_lockstep(args.device, args.quick) + _check_export(args.device)
    sweep = bench_sweep.run(quick=args.quick, device=args.device, dataset=args.dataset)
    print(f"## Device checks on {name} (torch {torch.__version__})\n")
    print("| check | holds | figures |\n|---|---|---|")
    for title, ok, figures in checks:
        print(f"| {title} | {'yes' if ok else 'NO'} | {figures} |")
    print(f"\n{sweep}\n\nTotal {time.perf_counter() - start:.0f} s.")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
