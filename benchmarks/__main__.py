"""Run benchmarks side by side and record them in BENCHMARKS.md.

Each ``benchmarks/bench_<name>.py`` defines ``run(quick: bool = False) -> str`` returning a Markdown
section (a table of figures measured in that one run, with ratios against its baseline). Results
are kept per benchmark in ``benchmarks/results/<name>.md`` so that running one benchmark does not
erase the others; BENCHMARKS.md is rebuilt from all of them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time
from pathlib import Path

import torch

from benchmarks.load import busy_cores, idle

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads by default (a section "
        "that sets fewer says so)"
    )


def available() -> list[str]:
    return sorted(p.stem[len("bench_") :] for p in HERE.glob("bench_*.py"))


def rebuild() -> None:
    parts = [
        "# Benchmarks\n",
        "Measured by `python -m benchmarks` (or `make bench`); each section was measured side by side "
        "in one run on the machine it names. Rerun one with `python -m benchmarks NAME`.\n",
    ]
    for f in sorted(RESULTS.glob("*.md")):
        parts.append(f.read_text().rstrip() + "\n")
    from secateurs.io import write_text

    write_text(ROOT / "BENCHMARKS.md", "\n".join(parts))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default: all of {available()})"
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke test")
    args = parser.parse_args()
    names = args.names or available()
    unknown = set(names) - set(available())
    if unknown:
        print(f"unknown benchmark(s) {sorted(unknown)}; available: {available()}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from secateurs.io import write_text

    for name in names:
        print(f"== {name}", flush=True)
        busy, load_before = busy_cores(), os.getloadavg()[0]
        start = time.perf_counter()
        module = importlib.import_module(f"benchmarks.bench_{name}")
        threads = torch.get_num_threads()
        try:
            section = module.run(quick=args.quick)
        finally:  # a benchmark that sets fewer threads must not slow down the next one
            torch.set_num_threads(threads)
        took, load_after = time.perf_counter() - start, os.getloadavg()[0]
        text = f"{section.rstrip()}\n\nMachine: {machine()}. Benchmark wall time {took:.0f} s"
        text += " (quick mode)" if args.quick else ""
        text += (f", measured {time.strftime('%Y-%m-%d')}; load average (1 min) "
                 f"{load_before:.2f} before, {load_after:.2f} after; {idle(busy)}.")
        print(text, flush=True)
        if not args.quick:
            write_text(RESULTS / f"{name}.md", text + "\n")
    if not args.quick:
        rebuild()
    return 0


if __name__ == "__main__":
    sys.exit(main())
