"""Options shared by several commands, and output helpers: JSON, tables, the run's header.

No torch here (nor anything that imports it): ``--help`` must answer at once. The choices below
repeat the library's own tuples for that reason; tests/test_cli_surface.py checks they agree.
"""

from __future__ import annotations

import enum
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from ..errors import ConfigError
from . import state

console = Console()  # follows sys.stdout as it is at print time
err_console = Console(stderr=True)

OPTIMIZERS = ("sgd", "adam")  # secateurs.training.config.OPTIMIZERS
RESETS = ("initial", "random", "continue")  # secateurs.pruning.dropnet.RESETS
COUPLINGS = ("separate", "group")  # secateurs.pruning.dropnet.COUPLINGS
EXECUTORS = ("local", "ray")  # secateurs.experiments.config.EXECUTORS
METRICS = (  # secateurs.pruning.metrics.METRICS
    "minimum", "maximum", "random", "minimum_layer", "maximum_layer", "random_layer",
    "apoz", "apoz_layer", "magnitude", "magnitude_layer", "oracle",
)


def choices(name: str, values: Sequence[str]) -> type[enum.Enum]:
    """A str Enum for typer: ``--help`` lists the values and a bad one is refused by name."""
    return enum.Enum(name, {v: v for v in values}, type=str)


def value(choice: Any) -> Any:
    """The plain string of a choice (typer hands Enum members to the command)."""
    return choice.value if isinstance(choice, enum.Enum) else choice


Optimizer = choices("Optimizer", OPTIMIZERS)
Reset = choices("Reset", RESETS)
Coupling = choices("Coupling", COUPLINGS)
Executor = choices("Executor", EXECUTORS)

DataDir = typer.Option(None, "--data-dir", help="Folder holding the dataset's files.")
Seed = typer.Option(
    0, "--seed", min=0, max=2**31 - 1, help="Seed for weights, data order and splits."
)
JsonOut = typer.Option(
    False, "--json", help="Print a machine-readable summary on stdout (shapes: docs/cli.md)."
)


def _import_models(sources: list[str] | None) -> list[str]:
    """Runs while the options are parsed, before the command: a --model naming the user's own
    model is then checked like a zoo one."""
    if sources:
        from ..models.imports import import_models, resolve_sources

        resolved = resolve_sources(sources)
        import_models(resolved)
        state.imports = [*state.imports, *(s for s in resolved if s not in state.imports)]
    return sources or []


Imports = typer.Option(
    None,
    "--import",
    metavar="FILE.py|MODULE",
    is_eager=True,
    callback=_import_models,
    help="Import a Python file or module first, so that the models it registers "
    "(@secateurs.register_model) can be named by --model; repeatable (docs/export.md).",
)
Device = typer.Option(
    "auto", "--device", help="auto (cuda when available, else cpu), cpu, cuda or cuda:N."
)


def train_config(
    lr: float,
    epochs: int,
    batch_size: int,
    patience: int,
    optimizer: Any,
    momentum: float,
    weight_decay: float,
    restore_best: bool,
    device: str,
):
    from ..training.config import TrainConfig

    return TrainConfig(
        lr=lr,
        max_epochs=epochs,
        batch_size=batch_size,
        patience=patience if patience > 0 else None,
        optimizer=value(optimizer),
        momentum=momentum,
        weight_decay=weight_decay,
        restore_best=restore_best,
        device=device,
    )


# -- JSON -------------------------------------------------------------------------------------------
def jsonable(obj: Any) -> Any:
    """Plain JSON values: numbers stay numbers (numpy's too), tuples, sets and arrays become
    lists, paths and choices strings, NaN and infinities null (JSON has neither). Anything else
    is a bug, not something to stringify quietly."""
    if isinstance(obj, enum.Enum):
        return jsonable(obj.value)
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return jsonable(obj.tolist())
    raise TypeError(f"cannot write a {type(obj).__name__} as JSON: {obj!r}")


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n")


# -- tables -----------------------------------------------------------------------------------------
def print_table(
    title: str,
    head: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    right: Sequence[int] = (),
    out: Console | None = None,
) -> None:
    """A table that loses nothing. On a terminal: a rich table whose cells wrap at spaces, each
    column at least as wide as its longest word; when even that is wider than the terminal, one
    block per row (``header: value`` lines) instead of folding words. In a pipe or a file: plain
    aligned text as wide as the cells need. ``right``: indices of right-aligned columns."""
    out = out or console
    cells = [["-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
             for row in rows]
    if out.is_terminal:
        words = [max(len(w) for w in [*head[i].split(), *(r[i] for r in cells), "-"]
                     for w in w.split()) for i in range(len(head))]
        if sum(words) + 3 * len(head) + 1 <= out.width:
            table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
            for i, h in enumerate(head):
                table.add_column(h, justify="right" if i in right else "left",
                                 min_width=words[i], overflow="fold")
            for row in cells:
                table.add_row(*row)
            out.print(table)
        else:
            out.print(title, highlight=False, markup=False)
            for row in cells:
                out.print(f"{head[0]}: {row[0]}", style="bold", highlight=False, markup=False)
                for h, v in zip(head[1:], row[1:], strict=True):
                    out.print(f"  {h}: {v}", highlight=False, markup=False)
        return
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(head)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    text = [title, line(head), line(["-" * w for w in widths]), *map(line, cells), ""]
    out.file.write("\n".join(text) + "\n")
    out.file.flush()


# -- the run's header, resuming, folders --------------------------------------------------------
def announce(out: Path | str | None, settings: dict[str, Any]) -> None:
    """First lines of a long command, on stderr: where its files go and the settings it resolved
    (defaults included), so that a log says what ran."""
    if out is not None:
        err_console.print(f"output: {out}", highlight=False, soft_wrap=True)
    text = ", ".join(f"{k}={_setting(v)}" for k, v in settings.items() if v is not None)
    err_console.print(f"settings: {text}", highlight=False, soft_wrap=True, markup=False)


def _setting(v: Any) -> str:
    v = value(v)
    if isinstance(v, (list, tuple)):
        return ",".join(str(value(x)) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


def resumable(out: Path | str) -> None:
    """Ctrl-C from here on says how to pick up: the same command skips what is finished."""
    state.resume_hint = f"finished work is kept in {out}: rerun the same command to resume"


def out_dir(path: Path) -> Path:
    """The --out folder, refused now (one line, nothing created) if it could not be written,
    rather than after the work."""
    from ..io import check_writable_dir

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} exists and is not a directory")
    return check_writable_dir(path, "--out")
