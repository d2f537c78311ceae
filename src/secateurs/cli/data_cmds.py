"""``secateurs datasets`` and ``secateurs models``: what can be loaded and built, and from where."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import DataError
from .main import app
from .options import DataDir, Imports, JsonOut, print_json

INDENT = " " * 4


@app.command()
def datasets(data_dir: Path = DataDir, json_out: bool = JsonOut) -> None:
    """List the dataset specs and where their files are.

    For each spec: where its files were found, or how to get them."""
    from ..data import list_datasets

    if data_dir is not None and data_dir.exists() and not data_dir.is_dir():
        raise DataError(f"--data-dir {data_dir} is a file; give the folder that holds the datasets")
    infos = list_datasets(data_dir)
    if json_out:
        print_json({"datasets": [info.to_dict() for info in infos]})
        return
    width = max(len(info.name) for info in infos) + 2
    for info in infos:
        typer.echo(f"{info.name:<{width}}{info.status:<14}{info.description}")
        if info.path:
            typer.echo(f"{INDENT}found in {info.path}")
        if info.note:
            typer.echo(f"{INDENT}note: {info.note}")
        if info.how_to_get and info.status != "found":
            typer.echo(f"{INDENT}{info.how_to_get}")


@app.command()
def models(imports: list[str] = Imports, json_out: bool = JsonOut) -> None:
    """List the models that --model accepts.

    Each with its options (model:key=value,...)."""
    from ..models import list_models

    infos = list_models()
    if json_out:
        print_json(
            {
                "models": [
                    {"name": m.name, "description": m.description, "options": dict(m.options)}
                    for m in infos
                ]
            }
        )
        return
    width = max(len(m.name) for m in infos) + 2
    for m in infos:
        typer.echo(f"{m.name:<{width}}{m.description}")
        for key, help_text in m.options.items():
            typer.echo(f"{INDENT}{key}=...  {help_text}")
