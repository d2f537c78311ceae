"""How busy the machine was: a figure taken beside other work is not a figure."""

from __future__ import annotations

import os
import time
from pathlib import Path


def busy_cores(seconds: float = 2.0) -> float | None:
    """Cores kept busy by other work while this process sleeps ``seconds`` (from /proc/stat; None
    where it cannot be read). Unlike the load average, it does not remember the previous
    benchmark of the same run."""
    def sample():
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        values = [int(v) for v in fields]
        return sum(values), values[3] + values[4]  # all, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    spent = total1 - total0
    return (os.cpu_count() or 1) * (1 - (idle1 - idle0) / spent) if spent else 0.0


def idle(busy: float | None) -> str:
    """A figure taken on a busy machine is not a figure: say which it was."""
    if busy is None:
        return "other load unknown"
    if busy < 0.25:
        return f"idle: other work kept {busy:.2f} cores busy just before"
    return f"NOT idle: other work kept {busy:.2f} cores busy just before; these seconds are inflated"
