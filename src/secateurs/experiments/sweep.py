"""A sweep over DropNet's pruning fraction p: one study per p (same model, data, metric, seeds),
all runs trained together in lockstep, and what each p spent to reach each size.

The question it answers: which p gets to a given size best, and at what cost. Each p's study is an
ordinary ``secateurs prune`` folder (``OUT/p-0.2/``), so ``export`` and ``interpret`` work on it
and ``secateurs prune --fraction 0.2 --out OUT/p-0.2`` resumes it.

Cost. A round's training FLOPs are ``epochs x MACs x (6 x n_train + 2 x n_val)``: per epoch, a
forward and backward pass over every training sample (2 FLOPs per multiply-accumulate forward and
about twice that backward, the usual 6-per-MAC convention) and early stopping's forward pass over
the validation split; MACs are those of the round's network with its dropped units removed
(``rounds.csv``'s ``macs``, Linear/Conv2d layers only). Measuring and scoring (one forward pass
per split per round) are not counted. The cost to reach a size is the sum over the rounds up to
and including the one that trained the network of that size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..data.splits import DatasetSplits
from ..errors import ConfigError
from ..io import read_json, write_json, write_text
from ..pruning.dropnet import DropNet, DropNetConfig, DropNetResult
from ..pruning.metrics import get_metric
from ..pruning.record import load_run, save_run
from ..reporting import mean_interval, write_csv
from .prune_study import StudyResult, _check_same_study, run_dir, write_outputs

DEFAULT_FRACTIONS = (0.1, 0.2, 0.3, 0.5)
DEFAULT_TARGETS = (0.5, 0.3, 0.2, 0.1)
TRAIN_FLOPS_PER_MAC = 6  # forward (2) + backward (about 4), per training sample
EVAL_FLOPS_PER_MAC = 2  # forward only, per validation sample


def fraction_dir(out: str | Path, fraction: float) -> Path:
    """The study folder of one p inside a sweep folder."""
    return Path(out) / f"p-{fraction:g}"


def round_flops(row: dict, n_train: int, n_val: int) -> float:
    """Training FLOPs one recorded round spent (see the module docstring)."""
    per_epoch = row["macs"] * (TRAIN_FLOPS_PER_MAC * n_train + EVAL_FLOPS_PER_MAC * n_val)
    return float(row["epochs"] * per_epoch)


def with_costs(rows: list[dict], n_train: int, n_val: int) -> list[dict]:
    """``rows`` (one per fraction, seed, round) with each round's FLOPs and the epochs and FLOPs
    spent up to and including it, in its own run."""
    out = []
    totals: dict[tuple, tuple[int, float]] = {}
    for row in sorted(rows, key=lambda r: (r["fraction"], r["metric"], r["seed"], r["round"])):
        key = (row["fraction"], row["metric"], row["seed"])
        epochs, flops = totals.get(key, (0, 0.0))
        cost = round_flops(row, n_train, n_val)
        epochs, flops = epochs + row["epochs"], flops + cost
        totals[key] = (epochs, flops)
        out.append({**row, "round_flops": cost, "cum_epochs": epochs, "cum_flops": flops})
    return out


def _interpolated(points: list[tuple[float, float]], remaining: float) -> float | None:
    """Mean accuracy at ``remaining``, linear in log(remaining) between recorded sizes (None below
    the last size or above the first)."""
    pts = sorted(points, key=lambda p: -p[0])
    for r, a in pts:  # a recorded size (means over seeds of equal fractions drift by an ulp)
        if abs(r - remaining) < 1e-9:
            return a
    for (r0, a0), (r1, a1) in zip(pts, pts[1:], strict=False):
        if r1 <= remaining <= r0:
            if r0 == r1:
                return a1
            t = (math.log(r0) - math.log(remaining)) / (math.log(r0) - math.log(r1))
            return a0 + t * (a1 - a0)
    return None


def reach_table(rows: list[dict], targets: Sequence[float]) -> list[dict]:
    """Per target size and fraction: every seed's first round at or below the target (its
    remaining fraction, test accuracy, epochs and FLOPs spent to reach it), averaged over the
    seeds that reach it; and the mean test accuracy interpolated at exactly the target."""
    runs: dict[float, dict[int, list[dict]]] = {}
    for row in rows:
        runs.setdefault(row["fraction"], {}).setdefault(row["seed"], []).append(row)
    table = []
    for target in targets:
        for fraction in sorted(runs):
            seeds = runs[fraction]
            firsts = []
            for seed_rows in seeds.values():
                below = [r for r in sorted(seed_rows, key=lambda r: r["round"])
                         if r["remaining"] <= target + 1e-9]
                if below:
                    firsts.append(below[0])
            by_round: dict[int, list[dict]] = {}
            for seed_rows in seeds.values():
                for r in seed_rows:
                    by_round.setdefault(r["round"], []).append(r)
            curve = [
                (sum(r["remaining"] for r in g) / len(g), sum(r["test_acc"] for r in g) / len(g))
                for _, g in sorted(by_round.items())
            ]
            entry = {"target": target, "fraction": fraction, "seeds": len(seeds),
                     "seeds_reaching": len(firsts)}
            if firsts:
                iv = mean_interval([r["test_acc"] for r in firsts])  # t interval, clipped
                acc, band = iv.mean, iv.half_width
                entry.update(
                    rounds=sum(r["round"] for r in firsts) / len(firsts),
                    remaining=sum(r["remaining"] for r in firsts) / len(firsts),
                    test_acc=acc,
                    test_acc_band=band,
                    test_acc_at_target=_interpolated(curve, target),
                    cum_epochs=sum(r["cum_epochs"] for r in firsts) / len(firsts),
                    cum_flops=sum(r["cum_flops"] for r in firsts) / len(firsts),
                )
            table.append(entry)
    return table


@dataclass
class SweepResult:
    out: Path | None
    model: str
    dataset: str
    metric: str
    fractions: list[float]
    seeds: list[int]
    n_train: int
    n_val: int
    studies: dict[float, StudyResult] = field(default_factory=dict)

    def rows(self) -> list[dict]:
        """One row per (fraction, seed, round): the study's row plus the round's cost and the
        epochs and FLOPs spent to reach it."""
        rows = [{"fraction": p, **row} for p, st in self.studies.items() for row in st.rows()]
        return with_costs(rows, self.n_train, self.n_val)

    def table(self, targets: Sequence[float] = DEFAULT_TARGETS) -> list[dict]:
        return reach_table(self.rows(), targets)


def _validate(fractions: Sequence[float], metric: str, config: DropNetConfig) -> list[float]:
    fractions = [float(p) for p in fractions]
    if not fractions:
        raise ConfigError("a sweep needs at least one fraction (--fraction P)")
    for p in fractions:
        if not 0.0 < p <= 1.0:
            raise ConfigError(f"--fraction must be in (0, 1], got {p}")
    repeated = sorted({p for p in fractions if fractions.count(p) > 1})
    if repeated:
        raise ConfigError(f"--fraction {repeated[0]:g} is given more than once")
    if get_metric(metric).criterion == "oracle":
        raise ConfigError(
            "the oracle drops one unit per round whatever p is; sweep a metric such as minimum"
        )
    if config.one_per_round:
        raise ConfigError("one_per_round drops one unit per round whatever p is; turn it off")
    return fractions


def _header(model, data, metric, seeds, config, dataset, split_seed) -> dict:
    """The study.json of one p's study, as ``run_prune_study`` writes it."""
    return {
        "model": model,
        "dataset": dataset,
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
        "metrics": [metric],
        "seeds": list(seeds),
        "config": config.to_dict(),
        "split_seed": split_seed,
        "data_source": getattr(data, "source", None),
    }


def run_sweep(
    model: str,
    data: DatasetSplits,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seeds: Sequence[int] = (0,),
    config: DropNetConfig | None = None,
    *,
    metric: str = "minimum",
    out: str | Path | None = None,
    dataset_spec: str | None = None,
    split_seed: int | None = None,
    targets: Sequence[float] = DEFAULT_TARGETS,
    progress: bool = True,
    lockstep: bool = True,
) -> SweepResult:
    """DropNet with ``metric`` at every fraction p in ``fractions`` and every seed (the other
    settings from ``config``); with ``out``, one study folder per p plus the sweep's table and
    figure, and a rerun skips finished runs. With ``lockstep``, every p's runs train together."""
    import torch

    from ..models import build_model
    from ..progress import progress_bar
    from ..pruning.driver import run_dropnets
    from ..training import resolve_device

    config = config or DropNetConfig()
    fractions = _validate(fractions, metric, config)
    for t in targets:
        if not 0.0 < t <= 1.0:
            raise ConfigError(f"target sizes must be in (0, 1], got {t}")
    seeds = list(seeds)
    if not seeds:
        raise ConfigError("a sweep needs at least one seed")
    resolve_device(config.train.device)
    with torch.random.fork_rng(devices=[]):
        build_model(model, data.input_shape, data.num_classes)
    configs = {p: replace(config, fraction=p, metric=metric) for p in fractions}
    dataset = dataset_spec or data.name
    out = Path(out) if out is not None else None
    sweep = SweepResult(out, model, dataset, metric, fractions, seeds, len(data.y_train),
                        len(data.y_val))
    if out is not None:
        common = {k: v for k, v in config.to_dict().items() if k not in ("fraction", "metric")}
        head = {"model": model, "dataset": dataset, "metric": metric, "fractions": fractions,
                "seeds": seeds, "config": common, "split_seed": split_seed,
                "data_source": getattr(data, "source", None), "n_train": sweep.n_train,
                "n_val": sweep.n_val, "n_test": len(data.y_test)}
        _check_same_sweep(out, head)
        headers = {p: _header(model, data, metric, seeds, configs[p], dataset, split_seed)
                   for p in fractions}
        for p, header in headers.items():  # every check before anything is written
            _check_same_study(fraction_dir(out, p), header, lambda _m: None)
        for p, header in headers.items():
            write_json(fraction_dir(out, p) / "study.json", header)
        write_json(out / "sweep.json", head)
    jobs = [(p, s) for p in fractions for s in seeds]
    finished: dict[tuple[float, int], DropNetResult] = {}
    with progress_bar(progress) as bar:
        task = bar.add_task("sweep", total=len(jobs), info="")
        todo = []
        for p, seed in jobs:
            folder = run_dir(fraction_dir(out, p), metric, seed) if out is not None else None
            if folder is not None and (folder / "run.json").is_file():
                finished[(p, seed)] = load_run(folder, weights=False)
                bar.update(task, advance=1)
            else:
                todo.append((p, seed))

        def show(net: DropNet, row: dict) -> None:
            bar.update(task, info=f"p={net.config.fraction:g} seed {net.seed} round "
                                  f"{row['round']}: {row['remaining']:.2f} left, "
                                  f"test acc {row['test_acc']:.3f}")

        def finish(p: float, seed: int, result: DropNetResult) -> None:
            if out is not None:
                save_run(result, run_dir(fraction_dir(out, p), metric, seed))
            finished[(p, seed)] = result
            bar.update(task, advance=1)

        if todo:
            run_dropnets(
                [DropNet(model, data, configs[p], seed=s) for p, s in todo], lockstep=lockstep,
                on_round=show, on_finish=lambda i, result: finish(*todo[i], result),
            )
    for p in fractions:
        folder = fraction_dir(out, p) if out is not None else None
        study = StudyResult(folder, model, dataset, [finished[(p, s)] for s in seeds])
        sweep.studies[p] = study
        if folder is not None:
            write_outputs(study)
    if out is not None:
        write_sweep_outputs(sweep, targets)
    return sweep


def _check_same_sweep(out: Path, head: dict) -> None:
    path = out / "sweep.json"
    if path.is_file():
        old = read_json(path)
        keys = ("model", "dataset", "metric", "config", "split_seed", "data_source")
        if {k: old.get(k) for k in keys} != {k: head[k] for k in keys}:
            raise ConfigError(
                f"{out} holds a sweep with other settings; use another --out or remove it"
            )


def _fmt_flops(v: float) -> str:
    return f"{v:.3g}"


def sweep_markdown(sweep: SweepResult, table: list[dict]) -> str:
    """The sweep's table as Markdown: per target size, each p's first round at or below it."""
    lines = [
        "| size | p | seeds reaching | round | remaining | test acc (± 95% t half-width) | "
        "test acc at exactly the size | epochs spent | training FLOPs spent |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in table:
        if "test_acc" not in e:
            lines.append(f"| {e['target']:g} | {e['fraction']:g} | 0/{e['seeds']} | "
                         "not reached | | | | | |")
            continue
        at = e["test_acc_at_target"]
        lines.append(
            f"| {e['target']:g} | {e['fraction']:g} | {e['seeds_reaching']}/{e['seeds']} | "
            f"{e['rounds']:g} | {e['remaining']:.3f} | {e['test_acc']:.4f} ± "
            f"{e['test_acc_band']:.4f} | {'-' if at is None else f'{at:.4f}'} | "
            f"{e['cum_epochs']:.1f} | {_fmt_flops(e['cum_flops'])} |"
        )
    return "\n".join(lines)


def write_sweep_outputs(sweep: SweepResult, targets: Sequence[float] = DEFAULT_TARGETS) -> None:
    """sweep_rounds.csv/json, sweep_table.csv/json, sweep.png and sweep.md in the sweep folder."""
    from ..reporting.sweep_figures import plot_sweep

    out = sweep.out
    assert out is not None
    rows = sweep.rows()
    write_csv(out / "sweep_rounds.csv", rows)
    write_json(out / "sweep_rounds.json", rows)
    table = reach_table(rows, targets)
    write_csv(out / "sweep_table.csv", table)
    write_json(out / "sweep_table.json", table)
    title = f"{sweep.model} on {sweep.dataset}, {sweep.metric}"
    plot_sweep(rows, out / "sweep.png", title=title)
    text = [
        f"# DropNet sweep over p: {title}", "",
        f"Fractions p = {', '.join(f'{p:g}' for p in sweep.fractions)}; seeds "
        f"{', '.join(map(str, sweep.seeds))}; {sweep.n_train} training and {sweep.n_val} "
        "validation samples. Training FLOPs = epochs x MACs x (6 x training samples + 2 x "
        "validation samples), summed over the rounds up to the one that trained that size.", "",
        "![sweep](sweep.png)", "",
        sweep_markdown(sweep, table), "",
    ]
    write_text(out / "sweep.md", "\n".join(text))
