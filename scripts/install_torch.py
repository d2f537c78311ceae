"""Install PyTorch into the running Python's environment, the CPU build unless an NVIDIA GPU works.

    .venv/bin/python scripts/install_torch.py                        # what `make` runs
    .venv/bin/python scripts/install_torch.py --dry-run --report out.json   # what it would install

Why a script: on Linux, PyPI's ``torch`` *is* the CUDA build (about 28 NVIDIA packages, several
GB), even on a machine without a GPU. The CPU build (version ``X+cpu``) lives on PyTorch's own CPU
index. So, in order, stopping at the first that works:

1. an NVIDIA GPU answers ``nvidia-smi``: PyPI's default build (CUDA);
2. macOS or Windows: PyPI's build (it is the CPU/MPS build there);
3. Linux without a GPU, the CPU index answers within a few seconds: ``torch==X+cpu`` from it
   (PyPI stays the index for torch's own dependencies);
4. ``torch==X+cpu`` from whatever pip is configured with (a local wheel, a mirror, a wheel cache):
   the fast fallback where the CPU index is unreachable, and what an offline machine with a
   prepared wheel uses;
5. last resort, with a warning: PyPI's ``torch==X`` (on Linux the CUDA build).

The ``+cpu`` local version label in steps 3-4 is what guarantees the CPU build: no CUDA wheel
carries it. An installed torch of the pinned version is kept as it is.

Settings (environment): ``TORCH_VERSION`` (default below), ``TORCH_CPU_INDEX`` (the CPU index
URL), ``TORCH_PROBE_TIMEOUT`` (seconds for the reachability check, default 5),
``TORCH_BUILD=cpu|cuda`` (skip the GPU check). Standard library only: it runs before anything is
installed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata

TORCH_VERSION = "2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PROBE_TIMEOUT = 5.0
# Network attempts fail fast instead of pip's default 15 s x 5 retries per request.
FAST = ["--timeout", "15", "--retries", "1"]


@dataclass(frozen=True)
class Attempt:
    why: str
    args: tuple[str, ...]  # pip install arguments
    warn: str | None = None


def has_nvidia_gpu() -> bool:
    """True when ``nvidia-smi`` exists and answers (a driver and at least one GPU)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return False
    try:
        return subprocess.run([exe], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def index_reachable(url: str, timeout: float) -> bool:
    """Whether the index answers for torch within ``timeout`` seconds (DNS failures are instant)."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=timeout) as r:
            return 200 <= r.status < 400
    except (OSError, ValueError):
        return False


def plan(
    *,
    system: str,
    gpu: bool,
    cpu_index_reachable: Callable[[], bool],
    version: str = TORCH_VERSION,
    cpu_index: str = CPU_INDEX,
) -> list[Attempt]:
    """The pip installs to try, in order. ``cpu_index_reachable`` is only called when needed."""
    default = f"torch=={version}"
    if gpu:
        return [Attempt("NVIDIA GPU found: PyPI's default (CUDA) build", (default,))]
    if system != "Linux":
        return [Attempt(f"{system}: PyPI's build, which is CPU-only there", (default,))]
    cpu = f"torch=={version}+cpu"
    attempts = []
    if cpu_index_reachable():
        attempts.append(
            Attempt(f"no GPU: the CPU build from {cpu_index}", ("--extra-index-url", cpu_index,
                                                             *FAST, cpu))
        )
    attempts.append(
        Attempt("no GPU: the CPU build from pip's configured sources (local wheels, mirrors)",
                (cpu,))
    )
    attempts.append(
        Attempt(
            "no GPU and no CPU build found: PyPI's default build",
            (*FAST, default),
            warn=f"the CPU build ({cpu}) could not be installed (is {cpu_index} reachable?); "
            "installing PyPI's torch instead, which on Linux is the CUDA build (several GB)",
        )
    )
    return attempts


def installed_torch() -> str | None:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def pip_install(args: Sequence[str], extra: Sequence[str]) -> int:
    cmd = [sys.executable, "-m", "pip", "install", "-q", *extra, *args]
    print("+ " + " ".join(cmd[1:]), file=sys.stderr, flush=True)
    return subprocess.run(cmd).returncode


def install(
    attempts: Sequence[Attempt],
    extra: Sequence[str] = (),
    run: Callable[[Sequence[str], Sequence[str]], int] = pip_install,
) -> Attempt:
    """Try each attempt until one succeeds; raise SystemExit when none does."""
    for attempt in attempts:
        if attempt.warn:
            print(f"warning: {attempt.warn}", file=sys.stderr, flush=True)
        print(f"torch: {attempt.why}", file=sys.stderr, flush=True)
        if run(attempt.args, extra) == 0:
            return attempt
    raise SystemExit("error: could not install torch; see pip's messages above")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="pip --dry-run: install nothing")
    parser.add_argument("--report", help="pip --report FILE (JSON of what is/would be installed)")
    parser.add_argument("--force", action="store_true", help="reinstall even if torch is present")
    opts = parser.parse_args(argv)
    version = os.environ.get("TORCH_VERSION", TORCH_VERSION)
    have = installed_torch()
    if have is not None and have.split("+")[0] == version and not (opts.force or opts.dry_run):
        print(f"torch {have} already installed", file=sys.stderr)
        return 0
    build = os.environ.get("TORCH_BUILD", "")
    gpu = build == "cuda" or (build != "cpu" and has_nvidia_gpu())
    cpu_index = os.environ.get("TORCH_CPU_INDEX", CPU_INDEX)
    timeout = float(os.environ.get("TORCH_PROBE_TIMEOUT", PROBE_TIMEOUT))
    attempts = plan(
        system=platform.system(),
        gpu=gpu,
        cpu_index_reachable=lambda: index_reachable(cpu_index, timeout),
        version=version,
        cpu_index=cpu_index,
    )
    extra = []
    if opts.dry_run:
        extra += ["--dry-run", "--ignore-installed"]
    if opts.report:
        extra += ["--report", opts.report]
    install(attempts, extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
