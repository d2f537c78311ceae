"""The ``secateurs`` command. Thin: every command parses options and calls the Python API."""

from __future__ import annotations

import sys

import click
import typer

from ..errors import SecateursError

app = typer.Typer(
    name="secateurs",
    help="Make neural networks and deep ensembles smaller without making them worse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    """Make neural networks and deep ensembles smaller without making them worse."""
    if version:
        from .. import __version__

        click.echo(f"secateurs {__version__}")
        raise typer.Exit(0)


def _register_commands() -> None:
    # Each module adds its commands to ``app`` on import.
    from . import (  # noqa: F401
        data_cmds,  # noqa: F401
        ensemble_cmds,  # noqa: F401
        prune_cmds,
        run_cmds,
        study_cmds,
        train_cmd,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point (the console script exits with the returned code): user errors print one line
    and give a non-zero code, without a traceback."""
    _register_commands()
    try:
        app(args=argv, standalone_mode=False)
    except SecateursError as e:
        click.echo(f"error: {e}", err=True)
        return 1
    except typer.Abort:
        click.echo("aborted", err=True)
        return 130
    except typer.Exit as e:
        return e.exit_code
    except Exception as e:
        # Usage errors: click's, or typer's vendored copy of click (typer >= 0.20).
        if hasattr(e, "show") and hasattr(e, "exit_code"):
            e.show()
            return e.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
