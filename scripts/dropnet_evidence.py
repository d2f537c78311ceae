"""Run the DropNet experiments the issue asks for and turn them into docs/results/.

    python scripts/dropnet_evidence.py run [NAME ...]   # run experiments one after another
    python scripts/dropnet_evidence.py report           # tables + figures into docs/results/
    python scripts/dropnet_evidence.py list             # the exact commands

Each experiment is one ``secateurs prune`` command (printed by ``list`` and written into its
table), run in a subprocess with one torch thread (faster than two on a busy 2-core machine, and
fair between metrics). Study folders go to ``runs/evidence/<name>`` (git-ignored); an interrupted
experiment resumes where it stopped, because ``secateurs prune`` skips finished runs. The wall
time of every invocation is appended to ``runs/evidence/<name>/wall_times.json``.

``report`` reads the study folders (no training), writes ``docs/results/<name>.md`` (mean test
accuracy per round for every metric, with the 95% band over seeds, the checks the issue asks for,
the command and wall time) and copies each study's ``accuracy.png`` next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "evidence"
RESULTS = ROOT / "docs" / "results"
MNIST_DIR = "../shared/datasets/mnist-test"
SIX = ["minimum", "maximum", "random", "minimum_layer", "maximum_layer", "random_layer"]


def _metrics(names: list[str]) -> list[str]:
    return [a for m in names for a in ("--metric", m)]


# How the recorded results were produced (the code changed while they ran).
NOTES = {
    "mnist-fc40": "Run with the sequential driver (`DropNet.run`, one run after another), before "
    "`secateurs prune` trained several runs in lockstep.",
    "fashion-fc40": "Run in lockstep (all 18 runs trained as one batched model, the default of "
    "`secateurs prune` since docs/lockstep.md); each round's `seconds` is the batch's time "
    "divided by the number of runs in it.",
    "fashion-fc40-minmax": "The 3-seed study above left minimum vs maximum at 30% remaining inside "
    "the seed bands; this reruns just those two metrics with 10 seeds (0-9, trained in lockstep).",
    "mnist-fc40-softplus": "Model A with Softplus instead of ReLU (`model-a:act=softplus`): a "
    "unit's output is never exactly zero, so E(|a|) never reaches 0 for an alive unit. Same data "
    "split, seeds and training settings as the ReLU study ([mnist-fc40.md](mnist-fc40.md)); the 9 "
    "runs trained in lockstep.",
    "mnist-oracle-fc20": "The oracle runs one run after another (it is its own batched search); "
    "the other metrics' runs trained in lockstep.",
}

# name -> (title, secateurs prune arguments without --out)
EXPERIMENTS: dict[str, tuple[str, list[str]]] = {
    "mnist-fc40": (
        "Model A (FC40-FC40) on the MNIST test set (10k images split 7200/800/2000), "
        "six metrics, 3 seeds",
        ["--model", "model-a", "--dataset", "mnist", "--data-dir", MNIST_DIR, *_metrics(SIX),
         "--seeds", "3"],
    ),
    "mnist-fc40-softplus": (
        "Model A (FC40-FC40) with Softplus on the MNIST test set (10k images split "
        "7200/800/2000), minimum vs maximum vs random, 3 seeds",
        ["--model", "model-a:act=softplus", "--dataset", "mnist", "--data-dir", MNIST_DIR,
         *_metrics(["minimum", "maximum", "random"]), "--seeds", "3"],
    ),
    "mnist-oracle-fc20": (
        "Oracle vs minimum vs random_layer (and global random) on FC20-FC20 (MNIST test set), "
        "one unit per round down to 10% remaining, 3 seeds",
        ["--model", "model-a:widths=20-20", "--dataset", "mnist", "--data-dir", MNIST_DIR,
         *_metrics(["oracle", "minimum", "random_layer", "random"]), "--seeds", "3",
         "--until", "0.1"],
    ),
    "fashion-fc40": (
        "Model A (FC40-FC40) on Fashion-MNIST (60k train split 54000/6000, 10k test), "
        "six metrics, 3 seeds",
        ["--model", "model-a", "--dataset", "fashion-mnist", *_metrics(SIX), "--seeds", "3"],
    ),
    "mnist-fc40-sweep": (
        "Model A (FC40-FC40) on the MNIST test set (10k images split 7200/800/2000): DropNet "
        "minimum at p = 0.1, 0.2, 0.3 and 0.5 down to 10% remaining, 3 seeds",
        ["--model", "model-a", "--dataset", "mnist", "--data-dir", MNIST_DIR,
         *[a for p in ("0.1", "0.2", "0.3", "0.5") for a in ("--fraction", p)],
         "--metric", "minimum", "--seeds", "3"],
    ),
    "mnist-fc40-interpret": (
        "Model A (FC40-FC40) on the MNIST test set, six metrics, 2 seeds, for `secateurs "
        "interpret`",
        ["--model", "model-a", "--dataset", "mnist", "--data-dir", MNIST_DIR, *_metrics(SIX),
         "--seeds", "2"],
    ),
    "fashion-fc40-minmax": (
        "Model A (FC40-FC40) on Fashion-MNIST (60k train split 54000/6000, 10k test), "
        "minimum vs maximum, 10 seeds",
        ["--model", "model-a", "--dataset", "fashion-mnist", *_metrics(["minimum", "maximum"]),
         "--seeds", "10"],
    ),
}


# Experiments run by another command than `secateurs prune` (default): name -> command.
KINDS = {"mnist-fc40-sweep": "sweep"}
# Experiments whose study gets a `secateurs interpret` page: name -> docs/results/ folder.
INTERPRET = {"mnist-fc40-interpret": "interpret-mnist-fc40"}


def command(name: str) -> list[str]:
    return ["secateurs", KINDS.get(name, "prune"), *EXPERIMENTS[name][1], "--out",
            f"runs/evidence/{name}", "--json"]


def interpret_command(name: str) -> list[str]:
    return ["secateurs", "interpret", f"runs/evidence/{name}", "--out",
            f"docs/results/{INTERPRET[name]}", "--json"]


def run(names: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    for name in names:
        cmd = command(name)
        out = RUNS / name
        out.mkdir(parents=True, exist_ok=True)
        print(f"== {name}: {shlex.join(cmd)}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "secateurs", *cmd[1:]], cwd=ROOT, env=env)
        seconds = time.perf_counter() - start
        log = out / "wall_times.json"
        times = json.loads(log.read_text()) if log.is_file() else []
        times.append({"command": shlex.join(cmd), "seconds": round(seconds, 1),
                      "returncode": proc.returncode, "threads": 1,
                      "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        log.write_text(json.dumps(times, indent=2) + "\n")
        print(f"== {name}: exit {proc.returncode} after {seconds:.0f} s", flush=True)
        if proc.returncode != 0:
            raise SystemExit(proc.returncode)
        if name in INTERPRET:
            icmd = interpret_command(name)
            print(f"== {name}: {shlex.join(icmd)}", flush=True)
            proc = subprocess.run([sys.executable, "-m", "secateurs", *icmd[1:]], cwd=ROOT,
                                  env=env)
            if proc.returncode != 0:
                raise SystemExit(proc.returncode)


# -- report ---------------------------------------------------------------------------------------
def _curves(rows: list[dict]) -> dict[str, list[tuple]]:
    from secateurs.reporting.plots import curves_by_round

    return curves_by_round(rows)


def acc_at(points: list[tuple], remaining: float) -> float:
    """Mean test accuracy at ``remaining``, linear in log(remaining) between recorded rounds."""
    import math

    pts = sorted(points, key=lambda p: -p[0])
    if remaining >= pts[0][0]:
        return pts[0][1]
    if abs(remaining - pts[-1][0]) < 1e-6:  # the last size (means of equal fractions drift)
        return pts[-1][1]
    for (r0, a0, *_), (r1, a1, *_) in zip(pts, pts[1:], strict=False):
        if r1 <= remaining <= r0:
            if r0 == r1:
                return a1
            t = (math.log(r0) - math.log(remaining)) / (math.log(r0) - math.log(r1))
            return a0 + t * (a1 - a0)
    return float("nan")  # below the last recorded size


def band_at(points: list[tuple], remaining: float) -> float:
    """The 95% band of the recorded round nearest ``remaining``."""
    return min(points, key=lambda p: abs(p[0] - remaining))[2]


def _round_table(curves: dict[str, list[tuple]], every: int = 1) -> list[str]:
    metrics = list(curves)
    n = max(len(p) for p in curves.values())
    lines = ["| round | " + " | ".join(f"{m}: remaining / test acc" for m in metrics) + " |",
             "|---" * (len(metrics) + 1) + "|"]
    for r in range(n):
        if r % every and r != n - 1:
            continue
        cells = []
        for m in metrics:
            p = curves[m]
            cells.append(f"{p[r][0]:.3f} / {p[r][1]:.4f} ± {p[r][2]:.4f}" if r < len(p) else "")
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return lines


def _per_seed(rows: list[dict], metric: str, remaining: float) -> tuple[int, list[float]]:
    """Test accuracy of every seed at the round whose mean remaining is nearest ``remaining``."""
    mine = [r for r in rows if r["metric"] == metric]
    by_round: dict[int, list[dict]] = {}
    for r in mine:
        by_round.setdefault(r["round"], []).append(r)
    best = min(by_round, key=lambda k: abs(
        sum(r["remaining"] for r in by_round[k]) / len(by_round[k]) - remaining))
    return best, [r["test_acc"] for r in sorted(by_round[best], key=lambda r: r["seed"])]


def _checks(name: str, curves: dict[str, list[tuple]], out: Path, rows: list[dict]) -> list[str]:
    lines = []
    if "minimum" in curves and "maximum" in curves:
        mn, mx = curves["minimum"], curves["maximum"]
        base = mn[0][1]
        held = [p for p in mn if p[0] >= 0.38]
        worst = min(p[1] for p in held)
        ok1 = worst >= 0.9 * base
        lines.append(
            f"- minimum keeps >= 90% of its unpruned test accuracy ({base:.4f}) down to about 40% "
            f"remaining: lowest mean over rounds with remaining >= 0.38 is {worst:.4f} "
            f"({worst / base:.1%} of unpruned) -> **{'holds' if ok1 else 'does NOT hold'}**")
        a, b = acc_at(mn, 0.30), acc_at(mx, 0.30)
        gap_band = band_at(mn, 0.30) + band_at(mx, 0.30)
        ok2 = a - b > max(0.02, gap_band)
        lines.append(
            f"- minimum beats maximum at 30% remaining (interpolated in log remaining): "
            f"{a:.4f} vs {b:.4f}, gap {a - b:+.4f} (sum of 95% bands {gap_band:.4f}) -> "
            f"**{'holds' if ok2 else 'does NOT hold'}**")
        a2, b2 = acc_at(mn, 0.20), acc_at(mx, 0.20)
        lines.append(f"- at 20% remaining: minimum {a2:.4f} vs maximum {b2:.4f} "
                     f"(gap {a2 - b2:+.4f}, sum of 95% bands "
                     f"{band_at(mn, 0.20) + band_at(mx, 0.20):.4f})")
        r_mn, s_mn = _per_seed(rows, "minimum", 0.30)
        r_mx, s_mx = _per_seed(rows, "maximum", 0.30)
        lines.append(
            f"- per seed at the round nearest 30% remaining: minimum (round {r_mn}) "
            f"{', '.join(f'{a:.4f}' for a in s_mn)}; maximum (round {r_mx}) "
            f"{', '.join(f'{a:.4f}' for a in s_mx)}; minimum above maximum in "
            f"{sum(a > b + 0.02 for a, b in zip(s_mn, s_mx, strict=False))}/{len(s_mn)} seeds "
            "by more than 2 points")
        if "random" in curves:
            c = acc_at(curves["random"], 0.30)
            lines.append(f"- for reference, random at 30% remaining: {c:.4f}")
        if name in ORDERING and "random" in curves:
            lines += _ordering(mn, curves["random"], mx)
    if "oracle" in curves:
        o = curves["oracle"]
        lines.append("- accuracy at fixed sizes (interpolated in log remaining):")
        lines.append("")
        targets = [0.75, 0.5, 0.3, 0.2, 0.15, 0.125, 0.1]
        lines.append("| remaining | " + " | ".join(curves) + " |")
        lines.append("|---" * (len(curves) + 1) + "|")
        for t in targets:
            lines.append(f"| {t:g} | " + " | ".join(f"{acc_at(p, t):.4f}"
                                                     for p in curves.values()) + " |")
        lines.append("")
        common = min(len(p) for p in curves.values())
        rounds = range(1, common)
        diff_min = [o[r][1] - curves["minimum"][r][1] for r in rounds]
        diff_rl = [o[r][1] - curves["random_layer"][r][1] for r in rounds]
        diff_mrl = [curves["minimum"][r][1] - curves["random_layer"][r][1] for r in rounds]
        mean = lambda v: sum(v) / len(v)  # noqa: E731
        lines.append(
            f"- over rounds 1..{common - 1}: oracle - minimum mean {mean(diff_min):+.4f} "
            f"(range {min(diff_min):+.4f} .. {max(diff_min):+.4f}); oracle - random_layer mean "
            f"{mean(diff_rl):+.4f}, above it in {sum(d > 0 for d in diff_rl)}/{len(diff_rl)} rounds;"
            f" minimum - random_layer mean {mean(diff_mrl):+.4f}, above it in "
            f"{sum(d > 0 for d in diff_mrl)}/{len(diff_mrl)} rounds")
        verdict = {True: "**holds**", False: "**does NOT hold**"}
        lines.append(f"- oracle ≈ minimum (mean difference within 2 points): "
                     f"{verdict[abs(mean(diff_min)) < 0.02]}")
        lines.append(f"- oracle above random_layer (mean difference > 0, in most rounds): "
                     f"{verdict[mean(diff_rl) > 0 and sum(d > 0 for d in diff_rl) > len(rounds) / 2]}")
        lines.append(f"- minimum above random_layer (mean difference > 0, in most rounds): "
                     f"{verdict[mean(diff_mrl) > 0 and sum(d > 0 for d in diff_mrl) > len(rounds) / 2]}")
        if "random" in curves:
            diff_r = [o[r][1] - curves["random"][r][1] for r in rounds]
            diff_mr = [curves["minimum"][r][1] - curves["random"][r][1] for r in rounds]
            lines.append(
                f"- against global random (one unit per round from any layer): oracle - random "
                f"mean {mean(diff_r):+.4f} (above in {sum(d > 0 for d in diff_r)}/{len(rounds)} "
                f"rounds), minimum - random mean {mean(diff_mr):+.4f} (above in "
                f"{sum(d > 0 for d in diff_mr)}/{len(rounds)} rounds)")
        sim_path = out / "oracle_similarity.csv"
        if sim_path.is_file():
            import csv

            sims: dict[tuple[str, int], list[float]] = {}
            with open(sim_path) as f:
                for row in csv.DictReader(f):
                    key = (row["metric"], int(row["round"]))
                    sims.setdefault(key, []).append(float(row["similarity_to_oracle"]))
            lines.append("")
            lines.append("Jaccard similarity of the dropped sets to the oracle's (mean over seeds):")
            lines.append("")
            metrics = sorted({m for m, _ in sims})
            lines.append("| round | " + " | ".join(metrics) + " |")
            lines.append("|---" * (len(metrics) + 1) + "|")
            last = max(r for _, r in sims)
            for r in [1, 2, 4, 8, 12, 16, 24, 32, last]:
                if r > last or not all((m, r) in sims for m in metrics):
                    continue
                lines.append(f"| {r} | " + " | ".join(
                    f"{mean(sims[(m, r)]):.3f}" for m in metrics) + " |")
    return lines


def _wall(out: Path) -> list[dict]:
    return json.loads((out / "wall_times.json").read_text()) if (
        out / "wall_times.json").is_file() else []


def _sweep_checks(table: list[dict]) -> list[str]:
    """Per size: the p with the best accuracy interpolated at exactly that size, and the p that
    spent the fewest FLOPs to get there."""
    lines = []
    for target in sorted({e["target"] for e in table}, reverse=True):
        rows = [e for e in table if e["target"] == target and e.get("test_acc_at_target")
                is not None]
        if not rows:
            continue
        best = max(rows, key=lambda e: e["test_acc_at_target"])
        cheap = min(rows, key=lambda e: e["cum_flops"])
        accs = ", ".join(f"p={e['fraction']:g} {e['test_acc_at_target']:.4f}" for e in rows)
        costs = ", ".join(f"p={e['fraction']:g} {e['cum_flops']:.3g}" for e in rows)
        lines.append(
            f"- **{target:.0%} remaining**: best test accuracy (interpolated at exactly "
            f"{target:g}) p = {best['fraction']:g} ({accs}); fewest training FLOPs to reach it "
            f"p = {cheap['fraction']:g} ({costs}); at most "
            f"{max(e['test_acc_at_target'] for e in rows) - min(e['test_acc_at_target'] for e in rows):.4f}"
            f" between the best and worst p, against 95% bands of about "
            f"{max(e['test_acc_band'] for e in rows):.4f} per p (the band of the first round at or "
            "below the size)")
    return lines


def report_sweep(name: str) -> None:
    from secateurs.experiments.sweep import SweepResult, sweep_markdown

    out = RUNS / name
    head = json.loads((out / "sweep.json").read_text())
    table = json.loads((out / "sweep_table.json").read_text())
    rows = json.loads((out / "sweep_rounds.json").read_text())
    times = _wall(out)
    title, _ = EXPERIMENTS[name]
    shutil.copyfile(out / "sweep.png", RESULTS / f"{name}.png")
    sweep = SweepResult(out, head["model"], head["dataset"], head["metric"], head["fractions"],
                        head["seeds"], head["n_train"], head["n_val"])
    runs_done = {(r["fraction"], r["seed"]) for r in rows}
    text = [f"# {title}", "", f"![sweep]({name}.png)", "",
            "Command (from the repository root; `scripts/dropnet_evidence.py run "
            f"{name}` runs it with one torch thread):", "",
            f"    {shlex.join(command(name))}", "",
            f"Runs complete: {len(runs_done)}/{len(head['fractions']) * len(head['seeds'])} "
            f"(p x seed). Wall time: {sum(t['seconds'] for t in times):.0f} s over "
            f"{len(times)} invocation(s), every run trained in one lockstep batch. Machine: 2 "
            "shared CPU cores, one torch thread, other work running beside it.", "",
            "Left: mean test accuracy over the seeds (95% band) against the fraction of units "
            "remaining, one line per p. Middle: training FLOPs spent to reach each size, "
            "summed over the rounds up to the one that trained it (per round: epochs x MACs of "
            f"the pruned network x (6 x {head['n_train']} training samples + 2 x "
            f"{head['n_val']} validation samples); scoring and measuring passes not counted). "
            "Right: accuracy against that cost.", "",
            "## Which p gets to a given size best, and at what cost", ""]
    text += _sweep_checks(table)
    text += ["", "## Per size: each p's first round at or below it (mean over seeds)", "",
             sweep_markdown(sweep, table), "",
             "`round` and `remaining` are those of each seed's first round at or below the size "
             "(averaged); `test acc at exactly the size` interpolates the mean curve linearly "
             "in log(remaining) between the rounds around it; epochs and FLOPs are spent up to "
             "and including that first round.", "",
             "## Mean test accuracy per round (± 95% band over seeds)", ""]
    curves = _curves([{**r, "metric": f"p = {r['fraction']:g}"} for r in rows])
    text += _round_table(curves)
    (RESULTS / f"{name}.md").write_text("\n".join(text) + "\n")
    print(f"wrote {RESULTS / (name + '.md')}")


# Experiments whose page checks the paper's ordering (minimum >= random > maximum) size by size.
ORDERING = {"mnist-fc40-softplus"}


def _ordering(mn: list[tuple], rnd: list[tuple], mx: list[tuple]) -> list[str]:
    """The paper's ordering at fixed sizes: minimum best or tied with random, maximum worst."""
    lines = ["- the paper's ordering, minimum best or tied (here: with random) and maximum "
             "collapsing, size by size (interpolated; ± the 95% band of the nearest round):", "",
             "| remaining | minimum | random | maximum | minimum - random | tied (within the "
             "sum of bands) or minimum ahead | maximum below both by more than the bands |",
             "|---|---|---|---|---|---|---|"]
    holds = []
    for t in (0.5, 0.4, 0.3, 0.2, 0.15, 0.1):
        a, b, c = acc_at(mn, t), acc_at(rnd, t), acc_at(mx, t)
        ba, bb, bc = band_at(mn, t), band_at(rnd, t), band_at(mx, t)
        tied = a - b > -(ba + bb)
        low = c < min(a - ba - bc, b - bb - bc)
        holds.append((t, tied, low))
        lines.append(f"| {t:g} | {a:.4f} ± {ba:.4f} | {b:.4f} ± {bb:.4f} | {c:.4f} ± {bc:.4f} | "
                     f"{a - b:+.4f} | {'yes' if tied else 'no'} | {'yes' if low else 'no'} |")
    lines.append("")
    below = [t for t, _, low in holds if low]
    lines.append(
        f"- minimum best or tied with random at every size above: "
        f"**{'holds' if all(t for _, t, _ in holds) else 'does NOT hold'}**; maximum clearly "
        f"below both from {max(below):g} remaining down: "
        f"**{'holds' if below and all(low for t, _, low in holds if t <= max(below)) else 'does NOT hold'}**"
        if below else "- maximum is never clearly below both: **does NOT hold**")
    return lines


def report(names: list[str]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in names:
        out = RUNS / name
        if KINDS.get(name) == "sweep":
            if (out / "sweep_table.json").is_file():
                report_sweep(name)
            else:
                print(f"{name}: no results yet in {out}; skipped")
            continue
        if not (out / "rounds.json").is_file():
            print(f"{name}: no results yet in {out}; skipped")
            continue
        rows = json.loads((out / "rounds.json").read_text())
        header = json.loads((out / "study.json").read_text())
        curves = _curves(rows)
        runs_done = {(r["metric"], r["seed"]) for r in rows}
        expected = len(header["metrics"]) * len(header["seeds"])
        times = _wall(out)
        train_s = sum(r["seconds"] for r in rows)
        title, _ = EXPERIMENTS[name]
        shutil.copyfile(out / "accuracy.png", RESULTS / f"{name}-accuracy.png")
        text = [f"# {title}", "",
                f"![accuracy vs remaining]({name}-accuracy.png)", "",
                "Command (from the repository root; `scripts/dropnet_evidence.py run "
                f"{name}` runs it with one torch thread):", "",
                f"    {shlex.join(command(name))}", "",
                f"Runs complete: {len(runs_done)}/{expected} (metric x seed). "
                f"Wall time: {sum(t['seconds'] for t in times):.0f} s over {len(times)} "
                f"invocation(s); time spent training and measuring rounds (sum of per-round "
                f"`seconds`): {train_s:.0f} s. Machine: 2 shared CPU cores, one torch thread, "
                "other work running beside it. " + NOTES.get(name, ""), "",
                "## Checks", ""]
        text += _checks(name, curves, out, rows)
        text += ["", "## Mean test accuracy per round (± 95% band over seeds)", "",
                 "Remaining is the mean over seeds of the fraction of prunable units left.", ""]
        text += _round_table(curves)
        if name in INTERPRET:
            text += ["", f"`secateurs interpret` page of this study: [{INTERPRET[name]}/"
                     f"interpret.md]({INTERPRET[name]}/interpret.md), made by", "",
                     f"    {shlex.join(interpret_command(name))}"]
        (RESULTS / f"{name}.md").write_text("\n".join(text) + "\n")
        print(f"wrote {RESULTS / (name + '.md')}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/dropnet_evidence.py")
    parser.add_argument("action", choices=["run", "report", "list"])
    parser.add_argument("names", nargs="*", help=f"experiments (default all: {list(EXPERIMENTS)})")
    args = parser.parse_args()
    names = args.names or list(EXPERIMENTS)
    unknown = set(names) - set(EXPERIMENTS)
    if unknown:
        parser.error(f"unknown experiment(s) {sorted(unknown)}; known: {list(EXPERIMENTS)}")
    sys.path.insert(0, str(ROOT / "src"))
    if args.action == "list":
        for name in names:
            print(f"{name}: {shlex.join(command(name))}")
            if name in INTERPRET:
                print(f"{name}: {shlex.join(interpret_command(name))}")
    elif args.action == "run":
        run(names)
    else:
        report(names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
