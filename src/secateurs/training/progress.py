"""Progress bars that stay quiet when output is not a terminal."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

_console = Console(file=sys.stderr)


def progress_bar(enabled: bool = True) -> Progress:
    """A rich progress bar on stderr; disabled unless ``enabled`` and stderr is a terminal."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=_console,
        disable=not (enabled and _console.is_terminal),
        transient=True,
    )
