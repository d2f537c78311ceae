"""Evidence for recurrent DropNet: an LSTM reading MNIST row by row, pruned by its hidden units.

    python scripts/mnist_rows_rnn.py run      # DropNet runs + the score-variant comparison
    python scripts/mnist_rows_rnn.py report   # docs/results/mnist-rows-lstm.md and .png

The data are the MNIST test files in /work/shared/datasets/mnist-test, split as for Model A
(``load_dataset("mnist", ...)``: a stratified 7200 / 800 / 2000 train / validation / test split,
split seed 0). The model is ``lstm-a`` (28 steps of 28 pixels -> LSTM[64] -> last output ->
Linear 10). ``run`` trains DropNet minimum, maximum and random for 3 seeds (one torch thread),
writing one JSON per finished run under ``runs/evidence/mnist-rows-lstm`` (a rerun skips finished
runs), then compares the two recurrent score variants (``abs_mean``: mean |h_t| over samples and
time steps, the default; ``mean_abs``: per sample |time mean of h_t|) by the test accuracy after
dropping the lowest-scored units of the trained unpruned network without retraining.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from secateurs.data.specs import load_dataset  # noqa: E402
from secateurs.pruning import DropNet, DropNetConfig, unit_scores  # noqa: E402
from secateurs.pruning.recurrent import set_recurrent_score  # noqa: E402
from secateurs.training import TrainConfig  # noqa: E402
from secateurs.training.trainer import evaluate  # noqa: E402

RUNS = ROOT / "runs" / "evidence" / "mnist-rows-lstm"
RESULTS = ROOT / "docs" / "results"
DATA_DIR = "/work/shared/datasets/mnist-test"
MODEL = "lstm-a"
METRICS = ("minimum", "maximum", "random")
SEEDS = (0, 1, 2)
SETTINGS = {
    "optimizer": "adam", "lr": 0.005, "batch_size": 64, "max_epochs": 3, "patience": 2,
    "fraction": 0.3, "until": 0.1, "reset": "initial",
}
DROP_COUNTS = (16, 32, 40, 48, 56)  # units dropped (of 64) in the score-variant comparison


def _config(metric: str) -> DropNetConfig:
    s = SETTINGS
    train = TrainConfig(optimizer=s["optimizer"], lr=s["lr"], batch_size=s["batch_size"],
                        max_epochs=s["max_epochs"], patience=s["patience"], device="cpu")
    return DropNetConfig(metric=metric, fraction=s["fraction"], until=s["until"],
                         reset=s["reset"], keep_weights=False, train=train)


def _data():
    return load_dataset("mnist", DATA_DIR, seed=0)


def run_dropnet_runs(data) -> None:
    for metric in METRICS:
        for seed in SEEDS:
            path = RUNS / f"{metric}-{seed}.json"
            if path.exists():
                continue
            start = time.perf_counter()
            result = DropNet(MODEL, data, _config(metric), seed=seed).run()
            rows = [{k: r[k] for k in ("round", "remaining", "units", "params", "macs",
                                       "train_acc", "val_acc", "test_acc", "epochs")}
                    for r in result.rounds]
            path.write_text(json.dumps({"metric": metric, "seed": seed, "rounds": rows,
                                        "seconds": time.perf_counter() - start}, indent=1))
            print(f"{metric} seed {seed}: {len(rows)} rounds, test acc "
                  f"{rows[0]['test_acc']:.3f} -> {rows[-1]['test_acc']:.3f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)


def _accuracy(masked, data) -> float:
    return evaluate(masked, data.x_test, data.y_test, 2048)[1]


def compare_scores(data) -> None:
    """Train the unpruned network once per seed; drop the k lowest units by each score variant
    (and at random) without retraining; record test accuracy."""
    path = RUNS / "score-variants.json"
    if path.exists():
        return
    start = time.perf_counter()
    out = []
    for seed in SEEDS:
        run = DropNet(MODEL, data, _config("minimum"), seed=seed)
        run.train_round()
        masked = run.masked
        layer = masked.layers[0]
        full = _accuracy(masked, data)
        scores = {}
        for variant in ("abs_mean", "mean_abs"):
            set_recurrent_score(masked, variant)
            scores[variant] = unit_scores("activation", masked, data.x_train)[layer]
        set_recurrent_score(masked, "abs_mean")
        width = masked.widths[layer]
        rank_a = scores["abs_mean"].argsort().argsort().float()
        rank_b = scores["mean_abs"].argsort().argsort().float()
        spearman = float(torch.corrcoef(torch.stack([rank_a, rank_b]))[0, 1])
        row = {"seed": seed, "full": full, "spearman": spearman, "drops": []}
        gen = torch.Generator().manual_seed(1000 + seed)
        for k in DROP_COUNTS:
            accs = {}
            for variant, values in scores.items():
                alive = torch.ones(width, dtype=torch.bool)
                alive[values.argsort()[:k]] = False
                masked.set_masks({layer: alive})
                accs[variant] = _accuracy(masked, data)
            randoms = []
            for _ in range(5):
                alive = torch.ones(width, dtype=torch.bool)
                alive[torch.randperm(width, generator=gen)[:k]] = False
                masked.set_masks({layer: alive})
                randoms.append(_accuracy(masked, data))
            accs["random"] = sum(randoms) / len(randoms)
            same = len(set(scores["abs_mean"].argsort()[:k].tolist())
                       & set(scores["mean_abs"].argsort()[:k].tolist()))
            row["drops"].append({"dropped": k, **accs, "same_units": same})
            masked.set_masks({layer: torch.ones(width, dtype=torch.bool)})
        out.append(row)
        print(f"score variants seed {seed}: {row}", flush=True)
    path.write_text(json.dumps({"rows": out, "seconds": time.perf_counter() - start}, indent=1))


def cmd_run() -> None:
    torch.set_num_threads(1)
    RUNS.mkdir(parents=True, exist_ok=True)
    data = _data()
    start = time.perf_counter()
    run_dropnet_runs(data)
    compare_scores(data)
    wall = RUNS / "wall_times.json"
    times = json.loads(wall.read_text()) if wall.exists() else []
    times.append({"seconds": round(time.perf_counter() - start, 1),
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    wall.write_text(json.dumps(times, indent=1))


def _runs() -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {m: [] for m in METRICS}
    for metric in METRICS:
        for seed in SEEDS:
            path = RUNS / f"{metric}-{seed}.json"
            if path.exists():
                runs[metric].append(json.loads(path.read_text()))
    return runs


def _mean_band(values: list[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    band = 1.96 * float(t.std()) / len(values) ** 0.5 if len(values) > 1 else 0.0
    return float(t.mean()), band


def cmd_report() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = _runs()
    lines = ["# Recurrent DropNet: LSTM over MNIST rows", "",
             "Produced by `python scripts/mnist_rows_rnn.py run` then `... report` (see "
             "[../recurrent.md](../recurrent.md)).", "",
             f"- model `{MODEL}`: 28 steps of 28 pixels -> LSTM[64] (prunable, `rnn.l0`) -> last "
             "output -> Linear 10 (not pruned)",
             "- data: the MNIST test files (`/work/shared/datasets/mnist-test`), split as for "
             "Model A: stratified 7200 train / 800 validation / 2000 test (split seed 0)",
             f"- training per round: {SETTINGS['optimizer']} lr {SETTINGS['lr']}, batch "
             f"{SETTINGS['batch_size']}, at most {SETTINGS['max_epochs']} epochs, early stopping "
             f"on validation loss (patience {SETTINGS['patience']}), last epoch's weights; reset "
             f"`{SETTINGS['reset']}`; p = {SETTINGS['fraction']} down to {SETTINGS['until']:.0%} "
             f"remaining; seeds {', '.join(map(str, SEEDS))}; one torch thread, `nice -n 10`",
             ]
    wall = RUNS / "wall_times.json"
    if wall.exists():
        times = json.loads(wall.read_text())
        lines.append(f"- wall time of the whole run (DropNet runs + score comparison): "
                     f"{sum(t['seconds'] for t in times) / 60:.1f} min on a shared 2-core machine")
    lines += ["", "## Test accuracy against hidden units remaining (mean ± 1.96 sd / sqrt(seeds))",
              "", "| units | remaining | " + " | ".join(METRICS) + " | params (export) |",
              "|---|---|" + "---|" * len(METRICS) + "---|"]
    rounds = max((len(r["rounds"]) for rs in runs.values() for r in rs), default=0)
    fig, ax = plt.subplots(figsize=(6, 4))
    for metric, rs in runs.items():
        xs, ys, bands = [], [], []
        for i in range(rounds):
            accs = [r["rounds"][i]["test_acc"] for r in rs if i < len(r["rounds"])]
            if len(accs) == len(rs) and accs:
                mean, band = _mean_band(accs)
                xs.append(rs[0]["rounds"][i]["units"])
                ys.append(mean)
                bands.append(band)
        ax.errorbar(xs, ys, yerr=bands, marker="o", ms=3, capsize=2, label=metric)
    ax.set_xlabel("LSTM hidden units remaining (of 64)")
    ax.set_ylabel("test accuracy")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "mnist-rows-lstm.png", dpi=110)
    for i in range(rounds):
        first = next((rs[0] for rs in runs.values() if rs and i < len(rs[0]["rounds"])), None)
        if first is None:
            continue
        cells = []
        for rs in runs.values():
            accs = [r["rounds"][i]["test_acc"] for r in rs if i < len(r["rounds"])]
            if accs:
                mean, band = _mean_band(accs)
                cells.append(f"{mean:.3f} ± {band:.3f}")
            else:
                cells.append("")
        row = first["rounds"][i]
        lines.append(f"| {row['units']} | {row['remaining']:.2f} | " + " | ".join(cells)
                     + f" | {row['params']:,} |")
    lines += ["", "![accuracy against units remaining](mnist-rows-lstm.png)", ""]
    variants = RUNS / "score-variants.json"
    if variants.exists():
        data = json.loads(variants.read_text())
        rows = data["rows"]
        lines += ["## Which score variant ranks better", "",
                  "The unpruned LSTM of each seed, trained once (same settings); its k "
                  "lowest-scored units dropped **without retraining**; test accuracy (mean over "
                  f"the {len(rows)} seeds; random: mean of 5 draws per seed). `abs_mean` = mean "
                  "over samples and time steps of |h_t| (the default); `mean_abs` = per sample "
                  "|mean over time of h_t|, then the mean over samples. `same` = units both "
                  "variants drop (mean).", "",
                  "| dropped | abs_mean | mean_abs | random | same |", "|---|---|---|---|---|"]
        totals = {"abs_mean": 0.0, "mean_abs": 0.0}
        for j, k in enumerate(DROP_COUNTS):
            cell = {v: sum(r["drops"][j][v] for r in rows) / len(rows)
                    for v in ("abs_mean", "mean_abs", "random", "same_units")}
            for v in totals:
                totals[v] += cell[v]
            lines.append(f"| {k} | {cell['abs_mean']:.3f} | {cell['mean_abs']:.3f} | "
                         f"{cell['random']:.3f} | {cell['same_units']:.1f} |")
        full = sum(r["full"] for r in rows) / len(rows)
        rho = sum(r["spearman"] for r in rows) / len(rows)
        better = max(totals, key=totals.get)
        lines += ["", f"Unpruned test accuracy {full:.3f}; Spearman rank correlation of the two "
                  f"scores {rho:.2f} (mean over seeds). Mean accuracy over the drop counts: "
                  f"abs_mean {totals['abs_mean'] / len(DROP_COUNTS):.3f}, mean_abs "
                  f"{totals['mean_abs'] / len(DROP_COUNTS):.3f}: **{better}** ranks better "
                  "here.", ""]
    (RESULTS / "mnist-rows-lstm.md").write_text("\n".join(lines))
    print(f"wrote {RESULTS / 'mnist-rows-lstm.md'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("run", "report"))
    args = parser.parse_args()
    cmd_run() if args.command == "run" else cmd_report()


if __name__ == "__main__":
    main()
