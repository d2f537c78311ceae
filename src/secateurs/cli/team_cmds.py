"""``secateurs export-team`` (a run's team as one deployable file) and ``secateurs predict``."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import ConfigError
from .main import app
from .options import DataDir, Imports, JsonOut


@app.command("export-team")
def export_team(
    run: Path = typer.Argument(..., help="Folder written by `secateurs run`."),
    row: str = typer.Option(
        None,
        "--row",
        help="The recommended team of a table row: METRIC/pLEVEL/FOCAL (e.g. minimum/p50/gd) "
        "or mixed/FOCAL; see the `row` column of the run's tables.",
    ),
    members: str = typer.Option(
        None,
        "--members",
        help="Comma-separated snapshot names instead (e.g. fc40-s0-p0,fc64-s1-minimum-p50); "
        "results.json lists them under `snapshots`.",
    ),
    out: Path = typer.Option(..., "--out", help="The team file to write (.safetensors)."),
    vote: str = typer.Option(
        None, "--vote", help="soft, weighted, plurality or majority (default: the run's)."
    ),
    imports: list[str] = Imports,
    json_out: bool = JsonOut,
) -> None:
    """Write one file holding a team's physically pruned members and its vote rule."""
    from ..deploy import export_team_from_run
    from ..io import check_writable_dir
    from .options import console, print_json

    if out.suffix != ".safetensors":
        raise ConfigError(f"--out {out}: expected a file name ending in .safetensors")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; expected a file name ending in .safetensors")
    check_writable_dir(out.parent, "--out")
    names = None if members is None else [m.strip() for m in members.split(",") if m.strip()]
    summary = export_team_from_run(run, out, row=row, members=names, vote=vote)
    if json_out:
        print_json(summary)
        return
    acc = summary["test_acc"]
    console.print(
        f"wrote {summary['out']}: {len(summary['members'])} members "
        f"({', '.join(summary['members'])}), {summary['vote']} vote, "
        f"{summary['params']:,} parameters (unpruned {summary['params_before']:,}), "
        f"{summary['macs']:,} MACs/sample; test accuracy from the run's predictions "
        + ("-" if acc is None else f"{100 * acc:.2f}%")
    )


@app.command()
def predict(
    model: Path = typer.Argument(
        ..., help="A team file (export-team) or a single export (export)."
    ),
    dataset: str = typer.Option(..., "--dataset", help="Dataset spec, e.g. digits or mnist."),
    data_dir: Path = DataDir,
    split: str = typer.Option("test", "--split", help="train, val or test."),
    seed: int = typer.Option(
        0, "--seed", min=0, max=2**31 - 1, help="The split seed (the run's `seed`)."
    ),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="As in the run's dataset."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="As in the run's dataset."),
    batch_size: int = typer.Option(2048, "--batch-size", min=1, help="Samples per forward pass."),
    imports: list[str] = Imports,
    json_out: bool = JsonOut,
) -> None:
    """Run a team file or an export on a dataset split and report its accuracy."""
    from ..deploy import evaluate_on, load_deployed
    from .options import console, print_json

    deployed = load_deployed(model)
    result = evaluate_on(
        deployed,
        dataset,
        data_dir=data_dir,
        split=split,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        batch_size=batch_size,
    )
    result = {"model": str(model), **result}
    if json_out:
        print_json(result)
        return
    what = (
        f"team of {len(result['members'])} ({result['vote']} vote)"
        if result["kind"] == "team"
        else "model"
    )
    console.print(
        f"{model}: {what} on {dataset} {split} split ({result['samples']} samples): "
        f"accuracy {100 * result['accuracy']:.2f}%"
    )
    for name, acc in (result.get("member_accuracy") or {}).items():
        console.print(f"  {name}: {100 * acc:.2f}%")
    rec = result.get("recorded")
    if rec:
        console.print(f"the run reported {100 * rec['accuracy']:.2f}% on this split")
