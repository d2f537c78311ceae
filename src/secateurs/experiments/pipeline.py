"""``secateurs run CONFIG``: pools of DropNet-pruned models, small teams picked by HQ, and accuracy
against cost, from one config file.

1. one task per (pool member, seed, metric): DropNet to the deepest level, snapshots at each level;
2. snapshot predictions on validation and test, written as ensemble pools (interchange format);
3. per metric and level, HQ on the validation split with each focal metric; test accuracy reported;
4. the seed's tables (global and layer-wise metrics); 5. one mixed pool of every snapshot, HQ over
it, and the cost-accuracy Pareto front; 6. results.json, CSV tables, report.md and figures.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..ensembles import (
    ConsensusResult,
    PredictionPool,
    predict,
    select_team,
    team_accuracy,
)
from ..errors import ConfigError, DataError
from ..io import check_writable_dir, remove_stale_temporaries, write_json
from ..progress import progress_bar
from ..pruning.metrics import get_metric
from ..reporting import write_csv
from ..reporting.run_time import InvocationLog
from ..reporting.stats import compare_paired
from .comparison import compare_pool, consensus_of, flat_rows
from .config import dump_config, import_config_models, validate
from .executors import run_local, run_ray
from .lock import run_lock
from .tasks import check_models, check_task, is_done, read_task, task_dir, task_specs, write_payload


@dataclass
class Snapshot:
    """One model of a pool: a member's seed, pruned by one metric to one level."""

    name: str
    member: str
    seed: int
    metric: str
    level: float
    pruned: float
    params: int
    macs: int
    round: int
    unpruned_macs: int
    val_probs: np.ndarray
    test_probs: np.ndarray
    task: str = ""
    index: int = 0  # position among its task's snapshots (in val_probs.npy / test_probs.npy)
    model: str = ""

    @property
    def snapshot(self) -> str:
        """The run-wide name of this snapshot; the unpruned network (round 0) is the same for
        every metric, so it has one name."""
        if self.round == 0:
            return f"{self.member}-p0"
        return f"{self.member}-{self.metric}-{level_tag(self.level)}"


def member_names(config: dict) -> list[str]:
    """``<member name>-s<seed>`` for every model of the pool, made unique."""
    names, seen = [], {}
    for member in config["pool"]:
        for seed in member["seeds"]:
            name = f"{member['name']}-s{seed}"
            seen[name] = seen.get(name, 0) + 1
            names.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return names


def level_tag(level: float) -> str:
    return f"p{level * 100:g}"


def run_experiment(
    config: dict,
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Run (or resume) the experiment described by a validated ``config``; returns results."""
    config = validate(import_config_models(config))
    out = Path(config["output"])
    log = log or (lambda _msg: None)
    specs = check_experiment(config)
    with run_lock(out):
        for folder in (out, out / "tasks", out / "pools"):  # left by a run killed mid-write
            remove_stale_temporaries(folder, recursive=folder != out)
        dump_config(config, out / "config.yaml")
        clock = InvocationLog(out)  # run time accumulates over resumed invocations
        groups = _groups(config, specs, out, log)
        todo = sum(len(g) for g in groups)
        log(f"{len(specs)} DropNet tasks, {len(specs) - todo} already done")
        _execute(config, out, groups, todo, progress, on_tasks=clock.update)
        results = _assemble(config, out, specs)
        for message in far_levels(config, results):
            log(f"note: {message}")
        clock.update(tasks_run=todo, finished=True)
        results["seconds"] = clock.total_seconds
        write_json(out / "results.json", results)
        from ..reporting.report import write_report

        write_report(config, results, out)
    return results


def check_experiment(config: dict) -> list[dict]:
    """Everything that can be checked before any work (output folder, dataset, every member's
    model on the data's shape): fails in one line, writes nothing. Returns the task specs."""
    from .tasks import dataset_of

    config = validate(import_config_models(config))
    specs = task_specs(config)
    check_writable_dir(Path(config["output"]), "output")
    if (Path(config["output"]) / "study.json").is_file():
        raise ConfigError(
            f"output folder {config['output']} holds a `secateurs prune` study, whose files "
            "(rounds.csv, ...) the experiment would overwrite; use another output"
        )
    try:
        data = dataset_of(specs[0])
    except DataError as e:
        raise DataError(f"config key 'dataset': {e}") from None
    check_models(config, data)
    return specs


def _groups(
    config: dict, specs: list[dict], out: Path, log: Callable[[str], None]
) -> list[list[dict]]:
    """Tasks that run together: with lockstep, every run of one architecture; otherwise the runs
    of one architecture and seed, whose metrics share round 0 (one group always holds the same
    runs, so that a resumed run computes exactly what an uninterrupted one did). Groups whose tasks are all finished are left out; a task whose files
    are damaged (truncated, missing) is removed, said so, and run again."""
    names = member_names(config)
    first = {}
    i = 0
    for m, member in enumerate(config["pool"]):
        for seed in member["seeds"]:
            first[(m, seed)] = names[i]
            i += 1
    done = set()
    for spec in specs:
        problem = check_task(out, spec["key"])
        if problem is None:
            done.add(spec["key"])
        elif task_dir(out, spec["key"]).exists():
            who = f"{first[(spec['member'], spec['seed'])]} {spec['metric']}"
            if problem == "not run":
                problem = "left unfinished (the run was stopped while writing it)"
            log(f"task {spec['key']} ({who}): {problem}; running it again")
            shutil.rmtree(task_dir(out, spec["key"]))
    by: dict[str, list[dict]] = {}
    for spec in specs:  # without lockstep, a member's metrics still share (fork) its round 0
        key = spec["model"] if config["dropnet"]["lockstep"] else f"{spec['model']}|{spec['seed']}"
        by.setdefault(key, []).append(spec)
    return [g for g in by.values() if not all(s["key"] in done for s in g)]


def _execute(
    config: dict,
    out: Path,
    groups: list[list[dict]],
    todo: int,
    progress: bool,
    on_tasks: Callable[[int], None] = lambda _n: None,
) -> None:
    if not groups:
        return
    lockstep = config["dropnet"]["lockstep"]
    ex = config["executor"]
    with progress_bar(progress) as bar:
        task = bar.add_task("DropNet tasks", total=todo, info="")
        finished = [0]

        def done(group: list[dict], payloads: list[dict]) -> None:
            for spec, payload in zip(group, payloads, strict=True):
                if not is_done(out, spec["key"]):
                    write_payload(out, spec, payload)
            finished[0] += len(group)
            on_tasks(finished[0])
            bar.update(task, advance=len(group), info=f"{group[-1]['model']}")

        if ex["kind"] == "ray":
            run_ray(
                groups,
                done,
                address=ex["ray_address"],
                workers=ex["workers"],
                lockstep=lockstep,
                gpus=ex["gpus_per_task"],
            )
        else:
            run_local(groups, done, workers=ex["workers"], lockstep=lockstep, log_rounds=progress)


def _snapshots(config: dict, out: Path, specs: list[dict]) -> list[Snapshot]:
    names = member_names(config)
    index_of = {}
    i = 0
    for m, member in enumerate(config["pool"]):
        for seed in member["seeds"]:
            index_of[(m, seed)] = i
            i += 1
    snaps = []
    for spec in specs:
        task = read_task(out, spec["key"])
        name = names[index_of[(spec["member"], spec["seed"])]]
        for j, snap in enumerate(task["snapshots"]):
            snaps.append(
                Snapshot(
                    name=name,
                    member=name,
                    seed=spec["seed"],
                    metric=spec["metric"],
                    level=snap["level"],
                    pruned=snap["pruned"],
                    params=snap["params"],
                    macs=snap["macs"],
                    round=snap["round"],
                    unpruned_macs=task["rounds"][0]["macs"],
                    val_probs=task["val_probs"][j],
                    test_probs=task["test_probs"][j],
                    task=spec["key"],
                    index=j,
                    model=spec["model"],
                )
            )
    return snaps


def _pool(snaps: list[Snapshot], names: list[str], labels_val, labels_test) -> PredictionPool:
    return PredictionPool.from_arrays(
        names,
        np.stack([s.val_probs for s in snaps]),
        labels_val,
        np.stack([s.test_probs for s in snaps]),
        labels_test,
        costs={n: {"params": s.params, "macs": s.macs} for n, s in zip(names, snaps, strict=True)},
    )


def _save_pool(pool: PredictionPool, folder: Path) -> None:
    """The pool in the interchange format with its manifest ``pool.json`` (written by
    ``save_predictions``): models in config order, the order team indices refer to everywhere."""
    pool.save(folder)


def _snapshot_links(snaps: list[Snapshot], y_val, y_test) -> dict[str, dict]:
    """Every distinct snapshot by its run-wide name: where its weights and predictions are."""
    links: dict[str, dict] = {}
    for s in snaps:
        if s.snapshot in links:
            continue
        links[s.snapshot] = {
            "member": s.member,
            "model": s.model,
            "seed": s.seed,
            "metric": None if s.round == 0 else s.metric,
            "level": 0.0 if s.round == 0 else s.level,
            "round": s.round,
            "pruned": s.pruned,
            "params": s.params,
            "macs": s.macs,
            "val_acc": float(np.mean(s.val_probs.argmax(axis=1) == y_val)),
            "test_acc": float(np.mean(s.test_probs.argmax(axis=1) == y_test)),
            "task": s.task,
            "weights": f"tasks/{s.task}/round-{s.round:03d}.safetensors",
            "probs_index": s.index,
        }
    return links


#: Outputs that only some configs write (compare, mixed_pool, report.html, a non-empty table):
#: removed before each assembly, so that a rerun with them turned off leaves none of them stale.
OPTIONAL_OUTPUTS = (
    "comparison.csv", "pareto.csv", "report.html",
    *(f"{fig}.{ext}" for fig in ("team_vs_pool", "accuracy_vs_cost", "diversity_vs_accuracy",
                                 "pareto") for ext in ("png", "pdf")),
)


FAR_LEVEL = 0.1  # a snapshot this far from its level is said, not only tabled


def far_levels(config: dict, results: dict) -> list[str]:
    """Levels whose snapshots lie far from them on average: DropNet prunes in rounds of
    ``fraction`` of what is left, so a level between two rounds is met only roughly."""
    by_level: dict[tuple[str, float], list[float]] = {}
    for snap in results["snapshots"].values():
        if snap["level"] > 0:
            by_level.setdefault((snap["metric"], snap["level"]), []).append(snap["pruned"])
    out = []
    for (metric, level), pruned in sorted(by_level.items()):
        mean = float(np.mean(pruned))
        if abs(mean - level) > FAR_LEVEL:
            out.append(
                f"level {level:g} ({metric}): its snapshots are {mean:.2f} pruned on average, "
                f"the rounds nearest it; dropnet.fraction {config['dropnet']['fraction']:g} "
                "removes that share of what is left each round, and a smaller one gets nearer"
            )
    return out


def _assemble(config: dict, out: Path, specs: list[dict]) -> dict:
    en, dn = config["ensemble"], config["dropnet"]
    for name in OPTIONAL_OUTPUTS:
        (out / name).unlink(missing_ok=True)
    snaps = _snapshots(config, out, specs)
    from .tasks import dataset_of

    data = dataset_of(specs[0])
    y_val, y_test = data.y_val.numpy(), data.y_test.numpy()
    unpruned_macs = sum({s.member: s.unpruned_macs for s in snaps}.values())
    select_kw = dict(
        method=en["method"],
        metric=en["metrics"],
        beta=en["beta"],
        vote=en["vote"],
        focal=en["focal"],
        seed=config["seed"],
    )
    rows, selections, pools, compared = [], {}, {}, []
    # The pools are derived from the tasks: written afresh each time, so that a changed pool or
    # changed levels replace the old ones rather than clash with them.
    _clear_pools(out / "pools")
    for metric in dn["metrics"]:
        for level in dn["levels"]:
            group = [s for s in snaps if s.metric == metric and s.level == level]
            names = [s.member for s in group]
            pool = _pool(group, names, y_val, y_test)
            tag = f"{metric}/{level_tag(level)}"
            folder = out / "pools" / metric / level_tag(level)
            _save_pool(pool, folder)
            pools[tag] = {
                "folder": f"pools/{tag}",
                "models": names,
                "snapshots": [s.snapshot for s in group],
            }
            results = select_team(pool, max_size=en["max_size"], **select_kw)
            selections[tag] = {k: v.to_dict(max_teams_per_level=50) for k, v in results.items()}
            results = _with_consensus(pool, results)
            if en["compare"]:
                compared.append(
                    compare_pool(tag, pool, results, [s.snapshot for s in group],
                                 [s.macs for s in group], unpruned_macs, seed=config["seed"])
                )
            for focal_metric, res in results.items():
                rows.append(
                    _table_row(
                        metric,
                        level,
                        group,
                        pool,
                        res,
                        focal_metric,
                        unpruned_macs,
                        en["vote"],
                        config["seed"],
                    )
                )
    mixed = None
    if en["mixed_pool"]:
        mixed = _mixed(config, snaps, y_val, y_test, unpruned_macs, out, select_kw, compared)
        pools["mixed"] = {"folder": "pools/mixed", "models": mixed["models"],
                          "snapshots": mixed["models"]}
    write_csv(out / "table_global.csv", [r for r in rows if r["scope"] == "global"])
    write_csv(out / "table_layer.csv", [r for r in rows if r["scope"] == "layer"])
    comparison = {"pools": compared} if en["compare"] else None
    if comparison:
        write_csv(out / "comparison.csv", flat_rows(comparison))
    runs = []
    for spec in specs:
        task = read_task(out, spec["key"])
        for rec in task["rounds"]:
            runs.append(
                {
                    "member": spec["member"],
                    "model": spec["model"],
                    "seed": spec["seed"],
                    "metric": spec["metric"],
                    **{k: v for k, v in rec.items() if not isinstance(v, dict)},
                }
            )
    write_csv(out / "rounds.csv", runs)
    return {
        "name": config["name"],
        "pool": member_names(config),
        "unpruned_pool_macs": unpruned_macs,
        "input_shape": list(data.input_shape),
        "input_dtype": str(data.x_train.dtype).removeprefix("torch."),
        "num_classes": int(data.num_classes),
        "snapshots": _snapshot_links(snaps, y_val, y_test),
        "pools": pools,
        "table": rows,
        "selections": selections,
        "mixed": mixed,
        "comparison": comparison,
        "rounds": runs,
    }


def _with_consensus(pool: PredictionPool, results: dict) -> dict:
    """HQ's results per focal metric, plus their consensus when there are several metrics."""
    if len(results) < 2 or not all(r.method == "hq" for r in results.values()):
        return dict(results)
    return {**results, "consensus": consensus_of(pool, results)}


def _best_single(res):
    """The best single model of a selection (a consensus has it in its per-metric results)."""
    if isinstance(res, ConsensusResult):
        return next(iter(res.per_metric.values())).best_single
    return res.best_single


def _clear_pools(folder: Path) -> None:
    """Remove the pools a previous run wrote (folders holding ``labels.npy``), and folders left
    empty; anything else a user put there stays."""
    if not folder.is_dir():
        return
    for labels in sorted(folder.rglob("labels.npy")):
        if labels.parent != folder and labels.parent.name != "test":
            shutil.rmtree(labels.parent, ignore_errors=True)
    for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        if not any(sub.iterdir()):
            sub.rmdir()


def _test_correct(pool: PredictionPool, team, vote: str) -> np.ndarray:
    """[N] whether the team's ensemble is right on each test sample (the paired comparisons)."""
    weights = np.maximum(pool.selection.accuracy, 1e-6) if vote == "weighted" else None
    return predict(pool.test, list(team), vote, weights) == pool.test.labels


def _table_row(metric, level, group, pool, res, focal_metric, unpruned_macs, vote, seed) -> dict:
    team = res.recommended
    m = len(group)
    pool_test = res.pool.test_accuracy
    row = {
        "row": f"{metric}/{level_tag(level)}/{focal_metric}",
        "metric": metric,
        "scope": get_metric(metric).scope,
        "level": level,
        "pruned": float(np.mean([s.pruned for s in group])),
        "focal_metric": focal_metric,
        "pool_val_acc": res.pool.selection_accuracy,
        "pool_test_acc": pool_test,
        "best_single_test_acc": _best_single(res).test_accuracy,
        "pool_params": sum(s.params for s in group),
        "pool_macs": sum(s.macs for s in group),
    }
    if team is None:
        row.update(
            team=[],
            team_names=[],
            team_snapshots=[],
            size=0,
            cost=None,
            mac_fraction=None,
            params=None,
            macs=None,
            team_val_acc=None,
            team_test_acc=None,
            difference=None,
            difference_low=None,
            difference_high=None,
            team_only=None,
            pool_only=None,
            mcnemar_p=None,
            test_samples=int(pool.test.num_samples),
        )
        return row
    macs = sum(group[i].macs for i in team.indices)
    # team - pool on the same test samples: paired bootstrap interval and McNemar's test
    paired = compare_paired(
        _test_correct(pool, team.indices, vote), _test_correct(pool, range(m), vote), seed=seed
    ).to_dict()
    row.update(
        team=[int(i) for i in team.indices],
        team_names=list(team.names),
        team_snapshots=[group[i].snapshot for i in team.indices],
        size=team.size,
        cost=team.size / m,
        mac_fraction=macs / unpruned_macs,
        params=sum(group[i].params for i in team.indices),
        macs=macs,
        team_val_acc=team.selection_accuracy,
        team_test_acc=team.test_accuracy,
        difference=team.test_accuracy - pool_test,
        difference_low=paired["difference_low"],
        difference_high=paired["difference_high"],
        team_only=paired["a_only"],
        pool_only=paired["b_only"],
        mcnemar_p=paired["mcnemar_p"],
        test_samples=paired["n_samples"],
    )
    return row


def _mixed(config, snaps, y_val, y_test, unpruned_macs, out, select_kw, compared) -> dict:
    """Every distinct snapshot in one pool (the unpruned level once per member, not per metric)."""
    en = config["ensemble"]
    chosen, names = [], []
    for s in snaps:
        # the unpruned network (round 0) is the same for every metric: keep it once
        if s.snapshot not in names:
            chosen.append(s)
            names.append(s.snapshot)
    pool = _pool(chosen, names, y_val, y_test)
    _save_pool(pool, out / "pools" / "mixed")
    max_size = min(en["mixed_max_size"], len(names) - 1)
    results = select_team(pool, max_size=max_size, **select_kw)
    with_consensus = _with_consensus(pool, results)
    if en["compare"]:
        compared.append(
            compare_pool("mixed", pool, with_consensus, names, [s.macs for s in chosen],
                         unpruned_macs, seed=config["seed"])
        )
    focal_metric = en["metrics"][0]
    res = results[focal_metric]
    # Candidate teams for the cost-accuracy front: every kept team, and every single model.
    teams = [(i,) for i in range(len(names))]
    for level in res.levels:
        teams += [tuple(int(t) for t in team) for team in level.teams]

    def point(team) -> dict:
        return {
            "team": [names[i] for i in team],
            "size": len(team),
            "mac_fraction": sum(chosen[i].macs for i in team) / unpruned_macs,
            "val_acc": team_accuracy(pool, list(team), en["vote"], "selection"),
            "test_acc": team_accuracy(pool, list(team), en["vote"], "test"),
        }

    points = [point(team) for team in dict.fromkeys(teams)]
    front = pareto_front(points)
    everyone = _test_correct(pool, range(len(names)), en["vote"])
    comparisons = {
        k: None
        if r.recommended is None
        else compare_paired(
            _test_correct(pool, r.recommended.indices, en["vote"]), everyone, seed=config["seed"]
        ).to_dict()
        for k, r in results.items()
    }
    write_csv(out / "pareto.csv", [{**p, "team": " ".join(p["team"])} for p in front])
    return {
        "models": names,
        "selections": {k: v.to_dict(max_teams_per_level=50) for k, v in results.items()},
        "consensus": _consensus_dict(with_consensus.get("consensus")),
        "points": points,
        "front": front,
        # marked on the Pareto figure: the whole mixed pool, and the first focal metric's team
        "whole_pool": point(tuple(range(len(names)))),
        "comparisons": comparisons,  # per focal metric: recommended team - whole mixed pool
        "recommended": None if res.recommended is None else point(res.recommended.indices),
    }


def _consensus_dict(res) -> dict | None:
    return None if res is None else res.to_dict(max_teams_per_level=50, include_per_metric=False)


def pareto_front(points: list[dict]) -> list[dict]:
    """Teams not dominated in (lower MAC fraction, higher validation accuracy); chosen on
    validation, so the test accuracies shown for them are an honest estimate."""
    ordered = sorted(points, key=lambda p: (p["mac_fraction"], -p["val_acc"]))
    front, best = [], -1.0
    for p in ordered:
        if p["val_acc"] > best:
            front.append(p)
            best = p["val_acc"]
    return front
