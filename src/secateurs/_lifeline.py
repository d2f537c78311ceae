"""Worker processes that die with their parent (imported by spawned workers before torch, so the
watch starts within a fraction of a second of a worker's start)."""

from __future__ import annotations

import os
import signal
import threading
import time

WATCH_INTERVAL_S = 0.25


def die_with_parent(parent: int) -> None:
    """Process-pool initializer: end this process as soon as ``parent`` is gone, whatever killed
    it (SIGKILL included). Ctrl-C is left to the parent, which stops its workers itself."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:  # Linux: the kernel sends SIGKILL when the parent dies (no polling delay)
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:  # everywhere: a process whose parent died is adopted by another
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(WATCH_INTERVAL_S)

    if os.getppid() != parent:  # the parent died before this ran
        os._exit(1)
    threading.Thread(target=watch, name="secateurs-lifeline", daemon=True).start()
