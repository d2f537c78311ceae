"""The ``secateurs`` command. Thin: every command parses options and calls the Python API.

Nothing here imports torch: command modules import the library inside their functions, so that
``--help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings

import typer

from ..errors import SecateursError
from . import state

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

app = typer.Typer(
    name="secateurs",
    help="Make neural networks and deep ensembles smaller without making them worse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: wraps at any width, truncates nothing
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"secateurs {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_version, is_eager=True
    ),
) -> None:
    """Make neural networks and deep ensembles smaller without making them worse."""


def _register_commands() -> None:
    # Each module adds its commands to ``app`` on import.
    from . import (  # noqa: F401
        data_cmds,  # noqa: F401
        ensemble_cmds,  # noqa: F401
        prune_cmds,
        run_cmds,
        study_cmds,
        team_cmds,
        train_cmd,
    )


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one plain line on stderr: no file path, line number or source line. Our own
    warnings read as ``warning: ...``; other packages' name their category and package."""
    text = " ".join(str(message).split())
    module = getattr(category, "__module__", "") or ""
    if not module.startswith("secateurs"):
        text += f" [{category.__name__}, {module.split('.')[0] or 'python'}]"
    with contextlib.suppress(OSError):  # stderr closed: a warning is not worth a crash
        print(f"warning: {text}", file=sys.stderr if file is None else file, flush=True)


def _usage_error(e: Exception) -> str:
    """A bad option as one line, like every other user error, pointing at the command's help."""
    text = " ".join(e.format_message().replace("Value error, ", "").split())
    ctx = getattr(e, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return f"error: {text}{where}"


def _fail(message: str, code: int, as_json: bool) -> int:
    """One line on stderr; with ``--json`` also one object on stdout, so that a script reading
    stdout gets JSON whatever happened: ``{"error": {"message": ..., "exit_code": ...}}``."""
    with contextlib.suppress(OSError):
        typer.echo(message, err=True)
        if as_json:
            text = message.removeprefix("error: ")
            sys.stdout.write(json.dumps({"error": {"message": text, "exit_code": code}}) + "\n")
            sys.stdout.flush()
    return code


def _interrupted(as_json: bool) -> int:
    hint = state.resume_hint
    typer.echo("", err=True)
    return _fail(f"interrupted{'; ' + hint if hint else ''}", EXIT_INTERRUPTED, as_json)


def main(argv: list[str] | None = None) -> int:
    """Entry point (the console script exits with the returned code): user errors print one line
    and give a non-zero code, without a traceback; Ctrl-C gives 130 and says how to resume."""
    state.resume_hint = None
    state.imports = []
    args = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in args[: args.index("--") if "--" in args else None]
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        try:
            _register_commands()
            rv = app(args=args, prog_name="secateurs", standalone_mode=False)
        except KeyboardInterrupt:
            return _interrupted(as_json)
        except SecateursError as e:
            return _fail(f"error: {e}", 1, as_json)
        except Exception as e:
            # click's or typer's own (typer >= 0.20 vendors click): Abort is Ctrl-C (or EOF) in
            # older versions; Exit carries a code; usage errors show themselves.
            name = type(e).__name__
            if name == "Abort":
                return _interrupted(as_json)
            if name == "Exit":
                return int(getattr(e, "exit_code", 0))
            if name == "NoArgsIsHelpError":  # plain `secateurs`: the help, as click shows it
                typer.echo(e.format_message(), err=True)
                return e.exit_code
            if hasattr(e, "format_message") and hasattr(e, "exit_code"):
                return _fail(_usage_error(e), e.exit_code, as_json)
            raise
    # In non-standalone mode typer returns exit codes instead of raising: Exit(130) is its
    # translation of KeyboardInterrupt; --help and --version return 0.
    if rv == EXIT_INTERRUPTED:
        return _interrupted(as_json)
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
