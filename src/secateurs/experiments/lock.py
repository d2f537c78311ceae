"""One run at a time per output folder: an exclusive ``flock`` on ``OUT/.lock``.

The kernel drops the lock when the process dies (even by SIGKILL), so a killed run never leaves a
stale lock behind, and a second run on the same folder is refused while the first is alive.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError


@contextmanager
def run_lock(out: str | Path) -> Iterator[None]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text().strip() or "another process"
            raise ConfigError(
                f"{out} is in use by another secateurs run (pid {holder}); wait for it to finish "
                "or choose another output folder"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)
