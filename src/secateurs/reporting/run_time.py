"""Run time across invocations: a run that is resumed reports all of its work, not the last part.

Each invocation appends one record to ``<run folder>/invocations.json`` when it starts and updates
it as tasks finish and when it ends, so an invocation that is killed still counts up to its last
finished task.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

from ..errors import DataError
from ..io import read_json, write_json

FILE = "invocations.json"


def read_invocations(out: str | Path) -> list[dict]:
    """The invocation records of a run folder (empty when there are none yet)."""
    path = Path(out) / FILE
    if not path.is_file():
        return []
    try:
        records = read_json(path)
    except ValueError as e:
        raise DataError(f"{path} is not valid JSON ({e}); remove it to reset the run time") from e
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and isinstance(r.get("seconds"), (int, float)) for r in records
    ):
        raise DataError(f"{path} is not a list of invocation records; remove it to reset")
    return records


class InvocationLog:
    """This invocation's record in the run folder's log; call :meth:`update` as work finishes."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self._start = time.perf_counter()
        self._before = read_invocations(self.out)
        self.record = {
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": 0.0,
            "tasks_run": 0,
            "finished": False,
        }
        self._write()

    def update(self, tasks_run: int | None = None, finished: bool = False) -> None:
        self.record["seconds"] = round(time.perf_counter() - self._start, 1)
        if tasks_run is not None:
            self.record["tasks_run"] = tasks_run
        self.record["finished"] = finished
        self._write()

    @property
    def seconds(self) -> float:
        """This invocation's time so far."""
        return round(time.perf_counter() - self._start, 1)

    @property
    def invocations(self) -> list[dict]:
        return [*self._before, dict(self.record)]

    @property
    def total_seconds(self) -> float:
        """Every invocation's time, this one up to its last update."""
        return round(sum(r["seconds"] for r in self.invocations), 1)

    def _write(self) -> None:
        write_json(self.out / FILE, self.invocations)


def describe_run_time(invocations: list[dict]) -> str:
    """One sentence for a report: total, and how it splits when the run was resumed."""
    total = sum(r["seconds"] for r in invocations)
    if len(invocations) <= 1:
        return f"Run time {total:.0f} s."
    parts = ", ".join(f"{r['seconds']:.0f} s" for r in invocations)
    return (
        f"Run time {total:.0f} s in total over {len(invocations)} invocations ({parts}; a run that "
        f"was stopped counts up to its last finished task)."
    )
