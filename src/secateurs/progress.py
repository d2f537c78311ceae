"""Progress that is useful wherever the output goes.

On a terminal: a rich display on stderr, one line per task (a DropNet study shows one per run).
Elsewhere (nohup, SLURM, CI logs, a pipe): one plain line on stderr per finished step (an epoch, a
round, a run, a task group), with the elapsed time and an estimate of the time left, so that a
log shows a long run is alive. ``enabled=False`` silences both.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def _stderr_console() -> Console:
    return Console(file=sys.stderr)


def on_terminal() -> bool:
    """Whether stderr is a terminal, as rich decides it (FORCE_TERMINAL and the like included):
    for displays that are shown there only."""
    return _stderr_console().is_terminal


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h01m``: short enough for a log line."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0
    info: str = ""
    start: float = field(default_factory=time.perf_counter)
    fields: dict[str, Any] = field(default_factory=dict)


class LogProgress:
    """The subset of ``rich.progress.Progress`` that secateurs uses, writing log lines instead of
    redrawing a bar. A line per update that advances a task or changes its ``info``."""

    def __init__(self, file: TextIO | None = None, clock=time.perf_counter) -> None:
        self._file = file
        self._clock = clock
        self._tasks: list[_Task] = []
        self._start = clock()

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        info = str(fields.pop("info", ""))
        self._tasks.append(_Task(description, total, info=info, start=self._clock(),
                                 fields=fields))
        return len(self._tasks) - 1

    def update(
        self,
        task_id: int,
        *,
        advance: float | None = None,
        completed: float | None = None,
        total: float | None = None,
        description: str | None = None,
        info: str | None = None,
        visible: bool | None = None,
        **fields: Any,
    ) -> None:
        task = self._tasks[task_id]
        before = (task.completed, task.info)
        if total is not None:
            task.total = total
        if description is not None:
            task.description = description
        if completed is not None:
            task.completed = completed
        if advance:
            task.completed += advance
        if info is not None:
            task.info = str(info)
        task.fields.update(fields)
        if (task.completed, task.info) != before:
            self._write(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def line(self, task: _Task) -> str:
        now = self._clock()
        elapsed = now - task.start
        parts = [f"[{format_seconds(now - self._start):>6}] {task.description}"]
        if task.total:
            parts.append(f"{task.completed:g}/{task.total:g}")
        if task.info:
            parts.append(task.info)
        if task.total and 0 < task.completed < task.total:
            left = elapsed / task.completed * (task.total - task.completed)
            parts.append(f"ETA {format_seconds(left)}")
        elif task.total and task.completed >= task.total:
            parts.append(f"done in {format_seconds(elapsed)}")
        return "  ".join(parts)

    def _write(self, task: _Task) -> None:
        out = self._file if self._file is not None else sys.stderr
        with contextlib.suppress(OSError, ValueError):  # a closed log won't stop training
            print(self.line(task), file=out, flush=True)


def progress_bar(enabled: bool = True) -> Progress | LogProgress:
    """Progress on stderr: a rich bar on a terminal, log lines elsewhere, nothing unless
    ``enabled``."""
    console = _stderr_console()
    if enabled and not console.is_terminal:
        return LogProgress()
    return Progress(  # fits 80 columns: short fields, the free text last but one
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=12),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not enabled,
        transient=True,
    )
