"""Teams of a pipeline run (``secateurs run``): the recommended team of a table row, or named
snapshots, exported as one team file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..io import read_json


def read_run(run: str | Path) -> dict:
    """``results.json`` of a run, checked to link its snapshots to their weights."""
    path = Path(run) / "results.json"
    if not path.is_file():
        raise DataError(f"{run} is not a finished pipeline run (no results.json)")
    try:
        results = read_json(path)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(results, dict) or not isinstance(results.get("snapshots"), dict):
        raise DataError(
            f"{path} does not link snapshots to weights (written by an older secateurs): run "
            f"`secateurs run` on the same config again to update it (finished tasks are skipped)"
        )
    return results


def team_rows(results: dict) -> dict[str, dict[str, Any]]:
    """Every team the run recommends, by row id: ``metric/p<level>/<focal>`` for the seed's tables,
    ``mixed/<focal>`` for the mixed pool, plus the comparison's rows when present."""
    rows: dict[str, dict[str, Any]] = {}
    for r in results.get("table", []):
        if r.get("team_snapshots"):
            rows[r["row"]] = {
                "members": list(r["team_snapshots"]),
                "pool": r["row"].rsplit("/", 1)[0],
                "val_acc": r.get("team_val_acc"),
                "test_acc": r.get("team_test_acc"),
            }
    mixed = results.get("mixed") or {}
    for focal, sel in (mixed.get("selections") or {}).items():
        rec = sel.get("recommended")
        if rec:
            rows[f"mixed/{focal}"] = {
                "members": list(rec["names"]),
                "pool": "mixed",
                "val_acc": rec.get("selection_accuracy"),
                "test_acc": rec.get("test_accuracy"),
            }
    from ..experiments.comparison import flat_rows

    for r in flat_rows(results.get("comparison") or {"pools": []}):
        if r.get("row") and r.get("members") and r["row"] not in rows:
            rows[r["row"]] = {
                "comparison": r.get("method") not in ("hq", "consensus"),
                "members": list(r["members"]),
                "pool": r.get("pool"),
                "val_acc": r.get("val_acc"),
                "test_acc": r.get("test_acc"),
            }
    return rows


def _choices(names: Sequence[str], limit: int = 12) -> str:
    names = list(names)
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def snapshot_export(run: str | Path, results: dict, name: str):
    """The physically pruned network of one snapshot of a run (an ``ExportResult``)."""
    import torch

    from ..experiments.tasks import task_dir
    from ..io import load_tensors
    from ..models import build_model
    from ..pruning.masks import MaskedNetwork
    from ..pruning.surgery import export_pruned

    link = results["snapshots"][name]
    folder = task_dir(Path(run), link["task"])
    try:
        task = read_json(folder / "task.json")
    except (OSError, ValueError) as exc:
        raise DataError(f"snapshot {name!r}: cannot read {folder / 'task.json'}: {exc}") from exc
    weights_path = Path(run) / link["weights"]
    try:
        state = load_tensors(weights_path)
    except Exception as exc:  # missing or corrupt safetensors file
        raise DataError(f"snapshot {name!r}: cannot read its weights {weights_path}: {exc}") from exc
    shape = tuple(results["input_shape"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(link["seed"]))
        model = build_model(link["model"], shape, int(results["num_classes"]))
    dtype = getattr(torch, str(results.get("input_dtype", "float32")), None)
    if not isinstance(dtype, torch.dtype):
        raise DataError(f"{run}: input_dtype {results.get('input_dtype')!r} is not a torch dtype")
    example = torch.zeros(2, *shape, dtype=dtype)
    masked = MaskedNetwork(model, example)
    masked.load_weight_state_dict(state)
    masks = {k: torch.ones(w, dtype=torch.bool) for k, w in masked.widths.items()}
    for d in task["dropped"]:
        if d["round"] <= link["round"]:
            masks[d["layer"]][d["index"]] = False
    masked.set_masks(masks)
    return export_pruned(masked, example[:1])


def _stored_accuracy(run: Path, results: dict, members: list[str], vote: str) -> dict:
    """The team's accuracies from the run's stored predictions (what the pipeline computes)."""
    from ..ensembles import PredictionPool, team_accuracy
    from ..experiments.tasks import task_dir

    pools = results.get("pools") or {}
    if not pools:
        return {"val_acc": None, "test_acc": None}
    first = Path(run) / next(iter(pools.values()))["folder"]
    y_val = np.load(first / "labels.npy", allow_pickle=False)
    y_test = np.load(first / "test" / "labels.npy", allow_pickle=False)
    val, test = [], []
    for name in members:
        link = results["snapshots"][name]
        folder = task_dir(run, link["task"])
        val.append(np.load(folder / "val_probs.npy", allow_pickle=False)[link["probs_index"]])
        test.append(np.load(folder / "test_probs.npy", allow_pickle=False)[link["probs_index"]])
    if len(members) == 1:  # one model: every vote rule gives its own argmax
        return {
            "val_acc": float(np.mean(val[0].argmax(axis=1) == y_val)),
            "test_acc": float(np.mean(test[0].argmax(axis=1) == y_test)),
        }
    pool = PredictionPool.from_arrays(members, np.stack(val), y_val, np.stack(test), y_test)
    team = list(range(len(members)))
    return {
        "val_acc": team_accuracy(pool, team, vote, "selection"),
        "test_acc": team_accuracy(pool, team, vote, "test"),
    }


def export_team_from_run(
    run: str | Path,
    out: str | Path,
    *,
    row: str | None = None,
    members: Sequence[str] | None = None,
    vote: str | None = None,
) -> dict[str, Any]:
    """Export the recommended team of ``row`` (see ``team_rows``) or the named snapshots as one
    team file, with the run's vote rule unless ``vote`` is given. Returns a summary."""
    from ..experiments.config import load_config
    from .team import check_vote, save_team

    run = Path(run)
    if (row is None) == (members is None):
        raise ConfigError("give exactly one of --row ID or --members NAME,NAME,...")
    results = read_run(run)
    config = load_config(run / "config.yaml", imports=False)
    chosen = None
    if row is not None:
        rows = team_rows(results)
        if row not in rows:
            main = sorted(k for k, v in rows.items() if not v.get("comparison"))
            extra = len(rows) - len(main)
            more = f"; and {extra} baseline rows (the `row` column of comparison.csv)" if extra else ""
            raise ConfigError(f"no team row {row!r} in {run}; rows: {_choices(main)}{more}")
        chosen = rows[row]
        names = chosen["members"]
    else:
        names = [str(n) for n in members]
        if not names:
            raise ConfigError("--members needs at least one snapshot name")
        unknown = [n for n in names if n not in results["snapshots"]]
        if unknown:
            raise ConfigError(
                f"unknown snapshot {unknown[0]!r} in {run}; snapshots: "
                f"{_choices(results['snapshots'])}"
            )
        if len(set(names)) != len(names):
            raise ConfigError(f"--members names a snapshot twice: {names}")
    vote = check_vote(vote or config["ensemble"]["vote"])
    weights = None
    if vote == "weighted":  # the selection code's default: each model's validation accuracy
        weights = [max(results["snapshots"][n]["val_acc"], 1e-6) for n in names]
    exports = [snapshot_export(run, results, n) for n in names]
    acc = _stored_accuracy(run, results, names, vote)
    source = {
        "run": str(run),
        "row": row,
        "pool": chosen["pool"] if chosen else None,
        "dataset": config["dataset"],
        "split_seed": config["seed"],
        "val_acc": acc["val_acc"],
        "test_acc": acc["test_acc"],
        "reported_test_acc": chosen["test_acc"] if chosen else None,
    }
    path = save_team(out, exports, names, vote=vote, weights=weights, source=source)
    return {
        "out": str(path),
        "row": row,
        "members": names,
        "vote": vote,
        "params": sum(e.params for e in exports),
        "macs": sum(e.macs for e in exports),
        "params_before": sum(e.params_before for e in exports),
        "val_acc": acc["val_acc"],
        "test_acc": acc["test_acc"],
        "reported_test_acc": source["reported_test_acc"],
    }
