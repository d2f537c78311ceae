"""Users' own models by name: import the module or file that registers them.

The command line and run configs name models (``--model my-net``), and files only ever name them:
a saved study, export or team never imports code (that would make opening a file run it, as
pickle does). So a model of one's own is registered by Python code the user names explicitly,
``--import nets.py`` or ``imports: [nets.py]``, whose ``@register_model`` builders join the zoo.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path

from ..errors import ConfigError
from .registry import _REGISTRY


def is_file_source(source: str) -> bool:
    """``nets.py`` or ``models/nets.py`` is a file; ``mypkg.nets`` is a module name."""
    return source.endswith(".py") or "/" in source or "\\" in source


def resolve_sources(sources: Iterable[str], base: str | Path | None = None) -> list[str]:
    """Files as absolute paths (relative ones from ``base``, default the working directory), so
    that worker processes started elsewhere import the same file; module names as given."""
    root = Path.cwd() if base is None else Path(base)
    out = []
    for source in sources:
        if not isinstance(source, str) or not source.strip():
            raise ConfigError(
                f"import {source!r}: expected a Python file (nets.py) or module name (mypkg.nets)"
            )
        source = source.strip()
        if is_file_source(source):
            path = Path(source).expanduser()
            source = str((path if path.is_absolute() else root / path).resolve())
        out.append(source)
    return out


def _failure(source: str, exc: BaseException) -> ConfigError:
    """The user's own error, one line: its type, message and where in their code it happened."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename]
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    if isinstance(exc, SyntaxError) and exc.filename:  # the user's line, not our exec of it
        where, text = f" at {exc.filename}:{exc.lineno}", exc.msg
    else:
        text = " ".join(str(exc).split())
    hint = ""
    if isinstance(exc, ImportError) and "relative import" in str(exc):
        hint = ("; the file is part of a package: import it by its module name (mypkg.nets) "
                "from the folder that holds the package")
    return ConfigError(
        f"importing {source} failed: {type(exc).__name__}{': ' + text if text else ''}{where}"
        f"{hint}"
    )


def _import_file(path: Path):
    if path.is_dir():
        what = "a package" if (path / "__init__.py").is_file() else "a folder"
        raise ConfigError(
            f"import {path}: {what}, not a Python file; import a package by its module name "
            f"({path.name}.nets, say) from the folder that holds it"
        )
    if not path.is_file():
        raise ConfigError(f"import {path}: no such Python file")
    # Under its own name when free (so that its classes print as nets.Net), else a private one.
    name = path.stem if path.stem.isidentifier() else "secateurs_user_module"
    existing = sys.modules.get(name)
    if existing is not None:
        if Path(getattr(existing, "__file__", "") or "").resolve() == path:
            return existing
        name = f"secateurs_user_{abs(hash(str(path))):x}"
        if name in sys.modules:
            return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"import {path}: not a Python file Python can load")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # The file's own folder first, as `python nets.py` would have it: its sibling imports work.
    folder = str(path.parent)
    added = folder not in sys.path
    if added:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[name]
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise _failure(str(path), exc) from None
    return module


def _import_module(name: str):
    # Like `python -m`, the working directory is searched, so a module beside the user is found.
    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.append(cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name) and name.split(".")[0] == (
            exc.name.split(".")[0]
        ):
            raise ConfigError(
                f"import {name}: no module named {exc.name!r} on the Python path (for a file, "
                f"give its path: {name.replace('.', '/')}.py)"
            ) from None
        raise _failure(name, exc) from None
    except Exception as exc:  # the module's own error while importing
        raise _failure(name, exc) from None


def import_models(sources: Iterable[str], base: str | Path | None = None) -> list[str]:
    """Import each source, a Python file (``nets.py``) or module (``mypkg.nets``), so that the
    models it registers with :func:`secateurs.register_model` can be named; returns the names now
    registered that were not before. Importing the same source twice imports it once."""
    before = set(_REGISTRY)
    for source in resolve_sources(sources, base):
        if is_file_source(source):
            _import_file(Path(source))
        else:
            _import_module(source)
    return sorted(set(_REGISTRY) - before)
