"""A DropNet study: several metrics x seeds of one model on one dataset, with records on disk,
CSV/JSON tables, the accuracy-vs-remaining figure, and (with the oracle) mask similarity."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.splits import DatasetSplits
from ..io import check_writable_dir, read_json, remove_stale_temporaries, write_json
from ..progress import LogProgress, progress_bar
from ..pruning.driver import run_dropnets
from ..pruning.dropnet import DropNet, DropNetConfig, DropNetResult
from ..pruning.metrics import get_metric
from ..pruning.record import check_run, load_run, save_run
from ..reporting import curves_by_round, plot_accuracy_vs_remaining, write_csv
from .lock import run_lock

if TYPE_CHECKING:
    from ..training.hook import TrainFn

SCALAR_KEYS = (
    "round",
    "remaining",
    "units",
    "params",
    "macs",
    "params_fraction",
    "macs_fraction",
    "train_acc",
    "train_loss",
    "val_acc",
    "val_loss",
    "test_acc",
    "test_loss",
    "epochs",
    "seconds",
)


def expected_rounds(config: DropNetConfig) -> int | None:
    """Rounds of one run (round 0, the unpruned network, included) that the stop rule implies, to
    size progress bars; None when only accuracy (kappa) or the number of units decides."""
    cap = None if config.max_rounds is None else config.max_rounds + 1
    if config.until is None or config.one_per_round or config.metric == "oracle":
        return cap
    remaining, rounds = 1.0, 1
    while remaining > config.until + 1e-12 and rounds < 10_000:
        remaining *= 1.0 - config.fraction
        rounds += 1
    return rounds if cap is None else min(rounds, cap)


def run_dir(out: Path, metric: str, seed: int) -> Path:
    return Path(out) / "runs" / f"{metric}-seed{seed}"


@dataclass
class StudyResult:
    out: Path | None
    model: str
    dataset: str
    runs: list[DropNetResult] = field(default_factory=list)

    def rows(self) -> list[dict]:
        """One flat row per (metric, seed, round), with per-layer widths as a dict."""
        out = []
        for run in self.runs:
            for rec in run.rounds:
                row = {"metric": run.metric, "seed": run.seed}
                row.update({k: rec[k] for k in SCALAR_KEYS})
                row["widths"] = rec["widths"]
                out.append(row)
        return out

    def summary(self) -> list[dict]:
        """Per metric, the mean test accuracy over seeds: unpruned, at the rounds nearest 50% and
        25% remaining, and at the last round, each beside its mean remaining fraction. Numbers
        stay numbers (the CLI's --json and summary.json print this as it is)."""
        table = []
        for metric, points in curves_by_round(self.rows()).items():

            def point(p: tuple) -> dict:
                return {"remaining": p[0], "test_acc": p[1]}

            def near(target: float, pts=points) -> dict:
                return point(min(pts, key=lambda q: abs(q[0] - target)))

            table.append(
                {
                    "metric": metric,
                    "seeds": points[0][3],
                    "rounds": len(points),
                    "unpruned": point(points[0]),
                    "near_50": near(0.5),
                    "near_25": near(0.25),
                    "final": point(points[-1]),
                }
            )
        return table


def mask_similarity(a: DropNetResult, b: DropNetResult) -> list[float]:
    """Per round (common to both runs), Jaccard similarity of the sets of dropped units (1.0 when
    neither has dropped anything yet)."""
    out = []
    for r in range(min(len(a.rounds), len(b.rounds))):
        da = {(d["layer"], d["index"]) for d in a.dropped if d["round"] <= r}
        db = {(d["layer"], d["index"]) for d in b.dropped if d["round"] <= r}
        union = da | db
        out.append(len(da & db) / len(union) if union else 1.0)
    return out


def _header(model, data, metrics, seeds, config, dataset: str, split_seed) -> dict:
    return {
        "model": model,
        "dataset": dataset,
        "input_shape": list(data.input_shape),
        "input_dtype": str(data.x_train.dtype).removeprefix("torch."),  # token ids are int64
        "num_classes": data.num_classes,
        "metrics": list(metrics),
        "seeds": list(seeds),
        "config": config.to_dict(),
        "split_seed": split_seed,
        "data_source": getattr(data, "source", None),
    }


def check_study_folder(
    out: str | Path,
    model: str,
    data: DatasetSplits,
    metrics: list[str],
    seeds: list[int],
    config: DropNetConfig,
    *,
    dataset_spec: str | None = None,
    split_seed: int | None = None,
) -> None:
    """What ``run_prune_study`` would refuse about ``out`` (another command's folder, a study
    with other settings), checked without touching it: the CLI fails before its header."""
    header = _header(model, data, metrics, seeds, config, dataset_spec or data.name, split_seed)
    _check_same_study(Path(out), header, lambda _msg: None, check_only=True)


def run_prune_study(
    model: str,
    data: DatasetSplits,
    metrics: list[str],
    seeds: list[int],
    config: DropNetConfig | None = None,
    *,
    out: str | Path | None = None,
    dataset_spec: str | None = None,
    progress: bool = True,
    on_run: Callable[[DropNetResult], None] | None = None,
    lockstep: bool = True,
    split_seed: int | None = None,
    log: Callable[[str], None] | None = None,
    train_fn: TrainFn | None = None,
) -> StudyResult:
    """Run every (metric, seed); with ``out``, write each run as it finishes and skip runs that a
    previous invocation already completed (same folder, same settings and data split; give the
    seed that split ``data`` as ``split_seed``); a damaged run (truncated or missing file) is run
    again, and ``log`` says so. One process at a time per ``out`` (a lock). With ``lockstep`` and
    several runs to do, they train together as one batched model (docs/lockstep.md).
    ``train_fn``: a training hook (``training.hook``) that trains every round of every run (runs
    then go one after another; the hook is not recorded in ``study.json``, so resume a folder
    with the same hook)."""
    import torch

    from ..models import build_model
    from ..training import resolve_device

    config = config or DropNetConfig()
    log = log or (lambda _msg: None)
    if out is not None:
        check_writable_dir(out, "output")
    for metric in metrics:
        get_metric(metric)  # typos fail before anything is written
    resolve_device(config.train.device)
    with torch.random.fork_rng(devices=[]):
        build_model(model, data.input_shape, data.num_classes)
    out = Path(out) if out is not None else None
    study = StudyResult(out, model, dataset_spec or data.name)
    header = _header(model, data, metrics, seeds, config, study.dataset, split_seed)
    with run_lock(out) if out is not None else contextlib.nullcontext():
        if out is not None:
            remove_stale_temporaries(out)
            _check_same_study(out, header, log)
            write_json(out / "study.json", header)
        return _run_jobs(
            model, data, metrics, seeds, config, out, study, progress, on_run, lockstep, log,
            train_fn,
        )


def _run_jobs(
    model, data, metrics, seeds, config, out, study, progress, on_run, lockstep, log, train_fn
) -> StudyResult:
    jobs = [(m, s) for m in metrics for s in seeds]
    finished: dict[tuple[str, int], DropNetResult] = {}
    per_run = expected_rounds(config)  # rounds of one run (round 0 included), or None
    with progress_bar(progress) as bar:
        # Progress counts rounds when their number is known (an honest ETA even in lockstep,
        # where every run finishes at the end), else runs. A terminal also shows a row per run.
        unit = per_run or 1
        totals = {"rounds": len(jobs) * unit}
        task = bar.add_task("DropNet", total=totals["rounds"], info="")
        rows: dict[tuple[str, int], int] = {}
        done_rounds: dict[tuple[str, int], int] = {}
        todo = []
        for metric, seed in jobs:
            folder = run_dir(out, metric, seed) if out is not None else None
            problem = check_run(folder) if folder is not None else "not run"
            if problem is None:
                finished[(metric, seed)] = load_run(folder, weights=False)
                bar.update(task, advance=unit)
                continue
            if folder is not None and folder.exists():
                log(f"run {metric} seed {seed} in {folder}: {problem}; running it again")
                shutil.rmtree(folder)
            todo.append((metric, seed))
        if not isinstance(bar, LogProgress) and len(todo) > 1:
            for job in todo:
                rows[job] = bar.add_task(f"  {job[0]} seed {job[1]}", total=per_run, info="")

        def runs_done() -> str:
            return f"{len(finished)}/{len(jobs)} runs done"

        def show(net: DropNet, row: dict) -> None:
            job = (net.config.metric, net.seed)
            state = f"{row['remaining']:.2f} left, acc {row['test_acc']:.3f}"
            done_rounds[job] = done_rounds.get(job, 0) + 1
            if per_run and done_rounds[job] > per_run:  # more rounds than estimated
                totals["rounds"] += 1
                bar.update(task, total=totals["rounds"])
                if job in rows:
                    bar.update(rows[job], total=done_rounds[job])
            if job in rows:  # a terminal: the run's own row tells its state
                bar.update(rows[job], completed=done_rounds[job], info=state)
                info = runs_done()
            else:
                info = f"{job[0]} seed {job[1]} round {row['round']}: {state}; {runs_done()}"
            bar.update(task, advance=1 if per_run else 0, info=info)

        def finish(metric: str, seed: int, result: DropNetResult) -> None:
            if out is not None:
                save_run(result, run_dir(out, metric, seed))
            finished[(metric, seed)] = result
            if on_run is not None:
                on_run(result)
            job = (metric, seed)
            if job in rows:
                bar.update(rows[job], total=len(result.rounds), completed=len(result.rounds))
            # a run that stopped before the estimate counts as whole
            rest = unit - min(done_rounds.get(job, 0), unit) if per_run else 1
            info = runs_done() if rows else f"{metric} seed {seed} finished; {runs_done()}"
            bar.update(task, advance=rest, info=info)

        nets = [
            DropNet(model, data, replace(config, metric=m), seed=s, train_fn=train_fn)
            for m, s in todo
        ]
        if nets:
            run_dropnets(
                nets, lockstep=lockstep, on_round=show,
                on_finish=lambda i, result: finish(*todo[i], result),
            )
    study.runs = [finished[job] for job in jobs]
    if out is not None:
        write_outputs(study)
    return study


def _differences(old, new, prefix: str = "") -> list[tuple[str, object, object]]:
    """(key path, old value, new value) of every leaf that differs, nested dicts followed."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [(prefix.rstrip("."), old, new)]


def _check_same_study(
    out: Path, header: dict, log: Callable[[str], None], *, check_only: bool = False
) -> None:
    """Refuse a folder holding a study with other settings. With a damaged ``study.json`` nothing
    says which data the runs were trained on: they are run again (and it is rewritten)."""
    from ..errors import ConfigError

    if (out / "config.yaml").is_file() and (out / "tasks").is_dir():
        raise ConfigError(
            f"{out} holds a `secateurs run` experiment, whose files (rounds.csv, ...) a study "
            "would overwrite; use another --out"
        )
    path = out / "study.json"
    if path.exists():
        try:
            old = read_json(path)
            if not isinstance(old, dict):
                raise ValueError("not a mapping")
        except (OSError, ValueError) as e:
            if check_only:
                return
            log(
                f"{path} is unreadable ({type(e).__name__}): its runs' settings are unknown; "
                "running them again"
            )
            shutil.rmtree(out / "runs", ignore_errors=True)
            return
        keys = ("model", "dataset", "config", "split_seed", "data_source")
        differ = _differences({k: old.get(k) for k in keys}, {k: header[k] for k in keys})
        if differ:
            what = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, a, b in differ[:3])
            raise ConfigError(
                f"{out} holds a study with other settings ({what}); use another --out or "
                "remove it"
            )


def write_outputs(study: StudyResult) -> None:
    """rounds.csv / rounds.json, dropped.csv, summary, the figure, and oracle similarity."""
    out = study.out
    assert out is not None
    rows = study.rows()
    write_csv(out / "rounds.csv", rows)
    write_json(out / "rounds.json", rows)
    dropped = [{"metric": r.metric, "seed": r.seed, **d} for r in study.runs for d in r.dropped]
    write_csv(out / "dropped.csv", dropped)
    write_json(out / "summary.json", study.summary())
    title = f"{study.model} on {study.dataset}"
    plot_accuracy_vs_remaining(rows, out / "accuracy.png", title=title)
    oracle = {r.seed: r for r in study.runs if r.metric == "oracle"}
    if oracle:
        sim = []
        for run in study.runs:
            if run.metric != "oracle" and run.seed in oracle:
                for r, value in enumerate(mask_similarity(run, oracle[run.seed])):
                    sim.append(
                        {
                            "metric": run.metric,
                            "seed": run.seed,
                            "round": r,
                            "similarity_to_oracle": value,
                        }
                    )
        if sim:
            write_csv(out / "oracle_similarity.csv", sim)


def load_study(out: str | Path) -> tuple[dict, StudyResult]:
    """Read a study folder (without weights) back."""
    from ..errors import DataError

    out = Path(out)
    if not (out / "study.json").is_file():
        raise DataError(f"{out} is not a DropNet study folder (no study.json)")
    try:
        header = read_json(out / "study.json")
        study = StudyResult(out, header["model"], header["dataset"])
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise DataError(
            f"{out / 'study.json'} is damaged ({type(e).__name__}); rerun `secateurs prune` with "
            "the same options to repair the folder"
        ) from None
    for metric in header["metrics"]:
        for seed in header["seeds"]:
            folder = run_dir(out, metric, seed)
            if (folder / "run.json").is_file():
                study.runs.append(load_run(folder, weights=False))
    return header, study


def rebuild_round(
    out: str | Path,
    metric: str | None,
    seed: int | None,
    round_: int | None,
    remaining: float | None = None,
):
    """The masked network of one recorded round of a study: (MaskedNetwork, run, round).

    ``metric`` / ``seed`` may be None when the study has only one; give ``round_`` or
    ``remaining`` (the round whose remaining fraction is nearest)."""
    import torch

    from ..errors import ConfigError
    from ..models import build_model
    from ..pruning.masks import MaskedNetwork

    if remaining is not None and not 0.0 <= remaining <= 1.0:
        raise ConfigError(f"remaining {remaining!r}: expected a fraction in [0, 1]")
    if round_ is not None and (isinstance(round_, bool) or round_ < 0):
        raise ConfigError(f"round {round_!r}: expected a round number >= 0")
    header, _ = load_study(out)
    metric = _only(header["metrics"], metric, "--metric")
    seed = _only(header["seeds"], seed, "--seed")
    run = load_run(run_dir(Path(out), metric, seed))
    if round_ is None:
        if remaining is None:
            raise ConfigError("give a round (--round K) or a remaining fraction (--remaining F)")
        round_ = run.round_nearest(remaining=remaining)
    run.masks_at(round_)  # validates the round
    if round_ not in run.weights:
        raise ConfigError(f"round {round_} of {metric} seed {seed} has no saved weights")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(header["model"], tuple(header["input_shape"]), header["num_classes"])
    dtype = getattr(torch, str(header.get("input_dtype", "float32")), None)
    if not isinstance(dtype, torch.dtype):
        raise ConfigError(f"{out}/study.json: input_dtype {header.get('input_dtype')!r} is "
                          "not a torch dtype")
    masked = MaskedNetwork(model, torch.zeros(2, *header["input_shape"], dtype=dtype))
    masked.load_weight_state_dict(run.weights[round_])
    masked.set_masks(run.masks_at(round_))
    return masked, run, round_


def _only(values: list, chosen, flag: str):
    from ..errors import ConfigError

    if chosen is None:
        if len(values) != 1:
            raise ConfigError(f"the study has several values for {flag} ({values}); choose one")
        return values[0]
    if chosen not in values:
        raise ConfigError(f"{flag} {chosen!r} is not in this study; it has {values}")
    return chosen
