"""A page of figures about what a DropNet study pruned (``secateurs interpret``).

From a study folder (no data needed: everything comes from the drop record, the stored per-round
scores and the round weights):

- per-layer width at each round, for each metric (which layers lose most);
- the scores of kept and dropped units in each round (the scores the selection ranked by);
- for one run, the first layer's units drawn as images: a fully connected first layer's incoming
  weights over an image input (for MNIST Model A, each node's 28 x 28 receptive field), or a conv
  net's first-layer filters, for the units still alive and those dropped;
- the input elements that still have a live path to the output (``input_paths``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, DataError
from ..io import write_json, write_text
from ..pruning.dropnet import DropNetResult
from ..pruning.masks import MaskedNetwork
from .input_paths import input_path_strength
from .plots import plt, save_figure
from .tables import write_csv

MAX_TILES = 48  # units drawn per figure (kept, and dropped), so that wide layers stay legible


# ----------------------------------------------------------------------------- computations
def widths_by_round(run: DropNetResult) -> list[dict[str, int]]:
    """Per recorded round, each prunable layer's alive units, rebuilt from the drop record (a unit
    dropped with ``round`` k is absent from round k on)."""
    out = []
    for r in range(len(run.rounds)):
        gone = {layer: 0 for layer in run.widths}
        for d in run.dropped:
            if d["round"] <= r:
                gone[d["layer"]] += 1
        out.append({layer: w - gone[layer] for layer, w in run.widths.items()})
    return out


def score_rows(run: DropNetResult) -> list[dict]:
    """One row per unit alive in a scored round: its score that round and whether the round's
    selection dropped it (it is absent from the next round)."""
    rows = []
    for r in sorted(run.scores):
        alive = run.masks_at(r)
        dropped = {(d["layer"], d["index"]) for d in run.dropped if d["round"] == r + 1}
        for layer, scores in run.scores[r].items():
            for unit, score in enumerate(scores):
                if bool(alive[layer][unit]):
                    rows.append({"metric": run.metric, "seed": run.seed, "round": r,
                                 "layer": layer, "unit": unit, "score": score,
                                 "dropped": (layer, unit) in dropped})
    return rows


def score_summary(rows: list[dict], scope: str) -> list[dict]:
    """Per (seed, round): how many units were kept and dropped, their mean scores, and whether
    every dropped unit scored at most every kept one (within each layer for a per-layer scope)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["metric"], row["seed"], row["round"]), []).append(row)
    out = []
    for (metric, seed, r), group in sorted(groups.items()):
        kept = [g["score"] for g in group if not g["dropped"]]
        dropped = [g["score"] for g in group if g["dropped"]]
        parts = [group] if scope == "global" else [
            [g for g in group if g["layer"] == layer] for layer in {g["layer"] for g in group}
        ]
        separated = all(
            max((g["score"] for g in p if g["dropped"]), default=-math.inf)
            <= min((g["score"] for g in p if not g["dropped"]), default=math.inf)
            for p in parts
        )
        out.append({
            "metric": metric, "seed": seed, "round": r, "kept": len(kept), "dropped": len(dropped),
            "kept_mean": sum(kept) / len(kept) if kept else None,
            "dropped_mean": sum(dropped) / len(dropped) if dropped else None,
            "dropped_max": max(dropped) if dropped else None,
            "kept_min": min(kept) if kept else None,
            "separated": separated,
        })
    return out


def first_layer(masked: MaskedNetwork) -> str | None:
    """The prunable layer that reads the input directly: the first Linear/Conv2d of the graph,
    if it is prunable and takes every input element (Linear) or every input channel (Conv2d)."""
    for node in masked.net.graph.nodes:
        if node.op != "call_module":
            continue
        module = masked.net.get_submodule(str(node.target))
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            name = str(node.target)
            if name not in masked.layers:
                return None
            if isinstance(module, nn.Linear):
                ok = module.in_features == math.prod(masked.input_shape)
            else:
                ok = module.in_channels == masked.input_shape[0]
            return name if ok else None
    return None


def unit_images(weight: torch.Tensor, input_shape: tuple[int, ...]) -> torch.Tensor:
    """Each unit's incoming weights as an image: (units, H, W) for one channel, (units, H, W, 3)
    for three (each unit scaled to [0, 1]); a Linear layer's rows take the input's image shape,
    a convolution's filters their own (channel maps beyond three are summed in absolute value)."""
    w = weight.detach().float().cpu()
    if w.dim() == 2:
        w = w.reshape(len(w), *input_shape)
    if w.shape[1] == 1:
        return w[:, 0]
    if w.shape[1] == 3:
        lo = w.amin(dim=(1, 2, 3), keepdim=True)
        hi = w.amax(dim=(1, 2, 3), keepdim=True)
        return ((w - lo) / (hi - lo).clamp(min=1e-12)).permute(0, 2, 3, 1)
    return w.abs().sum(1)


# ------------------------------------------------------------------------------ figures
def _grid(n: int, cols: int = 8) -> tuple[int, int]:
    cols = max(1, min(cols, n))
    return max(1, math.ceil(n / cols)), cols


def plot_widths(study: dict[str, list[list[dict[str, int]]]], widths: dict[str, int], path) -> Path:
    """One panel per metric: each layer's fraction of units remaining at each round (mean over
    seeds that have the round)."""
    metrics = list(study)
    rows, cols = _grid(len(metrics), 3)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.2 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        runs = study[metric]
        n = max(len(r) for r in runs)
        for layer, full in widths.items():
            ys = []
            for r in range(n):
                vals = [run[r][layer] for run in runs if r < len(run)]
                ys.append(sum(vals) / len(vals) / full)
            ax.plot(range(n), ys, marker="o", markersize=3, label=f"{layer} ({full})")
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("round", fontsize=8)
        ax.set_ylabel("fraction of the layer remaining", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_scores(rows_by_metric: dict[str, list[dict]], path) -> Path:
    """One panel per metric: every alive unit's score in every scored round (all seeds), the
    units that round dropped in red, those kept in grey."""
    metrics = list(rows_by_metric)
    rows, cols = _grid(len(metrics), 3)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.2 * rows), squeeze=False)
    gen = torch.Generator().manual_seed(0)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        data = rows_by_metric[metric]
        jitter = (torch.rand(len(data), generator=gen) - 0.5) * 0.5
        for dropped, colour, label in ((False, "0.55", "kept"), (True, "C3", "dropped")):
            sel = [i for i, row in enumerate(data) if row["dropped"] == dropped]
            ax.scatter([data[i]["round"] + float(jitter[i]) for i in sel],
                       [data[i]["score"] for i in sel], s=5, color=colour, alpha=0.6, label=label,
                       linewidths=0)
        ax.set_title(metric, fontsize=10)
        ax.set_xlabel("round", fontsize=8)
        ax.set_ylabel("score (lower goes first)", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, markerscale=2)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_units(images: torch.Tensor, titles: list[str], path, *, suptitle: str) -> Path:
    """A grid of unit images (diverging colours centred on 0 for one channel, RGB for three)."""
    rows, cols = _grid(len(images))
    fig, axes = plt.subplots(rows, cols, figsize=(1.25 * cols, 1.4 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, title in zip(axes.flat, images, titles, strict=False):
        if img.dim() == 2:
            v = float(img.abs().max()) or 1.0
            ax.imshow(img.numpy(), cmap="bwr", vmin=-v, vmax=v)
        else:
            ax.imshow(img.numpy())
        ax.set_title(title, fontsize=6)
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_input_paths(before: torch.Tensor, after: torch.Tensor, path, *, labels) -> Path:
    """Path strength per pixel before and after pruning (summed over channels), and the pixels
    with a live path after pruning."""
    to_map = (lambda t: t.sum(0)) if before.dim() == 3 else (lambda t: t)
    maps = [to_map(before), to_map(after), to_map(after > 0).float().clamp(max=1)]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    for i, (ax, m, title) in enumerate(zip(axes, maps, labels, strict=True)):
        live = i == 2
        im = ax.imshow(m.numpy(), cmap="gray" if live else "viridis",
                       vmin=0 if live else None, vmax=1 if live else None)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, ticks=[0, 1] if live else None)
    fig.tight_layout()
    return save_figure(fig, path)


# ------------------------------------------------------------------------------ the page
@dataclass
class InterpretResult:
    out: Path
    metric: str
    seed: int
    round: int
    figures: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def _pick(values: list, chosen, flag: str, preferred=None):
    if chosen is None:
        return preferred if preferred in values else values[0]
    if chosen not in values:
        raise ConfigError(f"{flag} {chosen!r} is not in this study; it has {values}")
    return chosen


def interpret_study(
    study_dir: str | Path,
    out: str | Path | None = None,
    *,
    metric: str | None = None,
    seed: int | None = None,
    round_: int | None = None,
) -> InterpretResult:
    """Write ``interpret.md`` and its figures for the study in ``study_dir`` (into ``out``,
    default ``study_dir/interpret``). ``metric`` / ``seed`` / ``round_`` choose the run and round
    whose first layer and input paths are drawn (default: minimum if studied, else the first
    metric; the first seed; that run's last round)."""
    from ..experiments.prune_study import load_study, rebuild_round
    from ..pruning.metrics import get_metric

    study_dir = Path(study_dir)
    header, study = load_study(study_dir)
    if not study.runs:
        raise DataError(f"{study_dir} has no finished runs yet")
    done = {(r.metric, r.seed) for r in study.runs}
    metric = _pick(header["metrics"], metric, "--metric", "minimum")
    seed = _pick(header["seeds"], seed, "--seed")
    if (metric, seed) not in done:
        raise DataError(f"the {metric} run with seed {seed} has not finished in {study_dir}")
    out = Path(out) if out is not None else study_dir / "interpret"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    run = next(r for r in study.runs if (r.metric, r.seed) == (metric, seed))
    last = len(run.rounds) - 1
    if round_ is None:
        round_ = last
    elif not 0 <= round_ <= last:
        raise ConfigError(f"--round {round_} does not exist; rounds are 0..{last}")
    result = InterpretResult(out, metric, seed, round_)
    widths = dict(study.runs[0].widths)
    title = f"{header['model']} on {header['dataset']}"
    text = [f"# What DropNet pruned: {title}", "",
            f"Study `{study_dir}`: metrics {', '.join(header['metrics'])}; seeds "
            f"{', '.join(map(str, header['seeds']))}; p = {header['config']['fraction']}; "
            f"{len(study.runs)} finished runs. Prunable layers and their widths: "
            + ", ".join(f"`{k}` {v}" for k, v in widths.items()) + ".", ""]

    # widths per round
    per_metric: dict[str, list[list[dict[str, int]]]] = {}
    width_rows = []
    for r in study.runs:
        w = widths_by_round(r)
        per_metric.setdefault(r.metric, []).append(w)
        for k, layer_widths in enumerate(w):
            width_rows.append({"metric": r.metric, "seed": r.seed, "round": k,
                               "remaining": r.rounds[k]["remaining"], **layer_widths})
    write_csv(out / "widths.csv", width_rows)
    plot_widths(per_metric, widths, out / "widths.png")
    result.figures.append("widths.png")
    text += ["## Which layers lose most", "",
             "Fraction of each layer's units remaining at each round (mean over seeds), rebuilt "
             "from the drop record (`widths.csv`).", "", "![widths per round](widths.png)", "",
             "| metric | rounds | " + " | ".join(f"`{k}` at the end" for k in widths)
             + " | loses most |", "|---|---|" + "---|" * len(widths) + "---|"]
    losers = {}
    for m, runs in per_metric.items():
        ends = {k: sum(run[-1][k] for run in runs) / len(runs) for k in widths}
        low = min(ends[k] / widths[k] for k in widths)
        least = [k for k in widths if ends[k] / widths[k] - low < 1e-9]
        losers[m] = least[0] if len(least) == 1 else None
        text.append(f"| {m} | {max(len(run) for run in runs) - 1} | "
                    + " | ".join(f"{ends[k]:.1f} ({ends[k] / widths[k]:.0%})" for k in widths)
                    + f" | {'tied' if len(least) > 1 else f'`{least[0]}`'} |")
    text.append("")
    result.summary["loses_most"] = losers

    # scores of kept vs dropped
    by_metric: dict[str, list[dict]] = {}
    for r in study.runs:
        by_metric.setdefault(r.metric, []).extend(score_rows(r))
    all_rows = [row for rows in by_metric.values() for row in rows]
    informative = {m: rows for m, rows in by_metric.items()
                   if rows and len({row["score"] for row in rows}) > 1}
    text += ["## Scores of kept and dropped units", ""]
    if all_rows:
        write_csv(out / "scores.csv", all_rows)
    if informative:
        plot_scores(informative, out / "scores.png")
        result.figures.append("scores.png")
        summaries = {m: score_summary(rows, get_metric(m).scope)
                     for m, rows in informative.items()}
        write_csv(out / "scores_by_round.csv", [s for v in summaries.values() for s in v])
        text += ["Every alive unit's score in each round, as the selection ranked them (lower "
                 "goes first; the maximum metrics rank by −E), over all seeds; red: the units "
                 "that round dropped (`scores.csv`, per round `scores_by_round.csv`).", "",
                 "![scores](scores.png)", "",
                 "| metric | scored rounds (all seeds) | mean score kept | mean score dropped | rounds where "
                 "every dropped unit scored ≤ every kept one |", "|---|---|---|---|---|"]
        for m, summ in summaries.items():
            kept = [s["kept_mean"] for s in summ if s["kept_mean"] is not None]
            drop = [s["dropped_mean"] for s in summ if s["dropped_mean"] is not None]
            scope = " in each layer" if get_metric(m).scope == "layer" else ""
            text.append(f"| {m} | {len(summ)} | {sum(kept) / len(kept):.4g} | "
                        f"{sum(drop) / len(drop):.4g} | "
                        f"{sum(s['separated'] for s in summ)}/{len(summ)}{scope} |")
        text += ["", "A round where a dropped unit outscores a kept one is one where a layer "
                 "reached its last unit: that unit is never dropped, whatever its score, and the "
                 "budget passes to the next unit.", ""]
    flat = sorted(set(by_metric) - set(informative))
    if flat:
        text += [f"Metrics whose scores are all equal (nothing to draw): {', '.join(flat)} "
                 "(the random metrics score every unit 0 and break ties at random; runs recorded "
                 "before scores were stored have none).", ""]

    # the first layer's units, and the inputs' live paths, for one run
    masked, full_run, _ = rebuild_round(study_dir, metric, seed, round_)
    if not full_run.weights:
        raise ConfigError(f"the {metric} run with seed {seed} kept no round weights")
    layer = first_layer(masked)
    alive = full_run.masks_at(round_)
    image_input = len(masked.input_shape) == 3
    text += [f"## The first layer of one run: {metric}, seed {seed}, round {round_} "
             f"({full_run.rounds[round_]['remaining']:.1%} of units remaining, test accuracy "
             f"{full_run.rounds[round_]['test_acc']:.4f})", ""]
    if layer is not None and image_input:
        module = masked.net.get_submodule(layer)
        kind = "incoming weights" if isinstance(module, nn.Linear) else "filters"
        drop_round = {d["index"]: d["round"] for d in full_run.dropped
                      if d["layer"] == layer and d["round"] <= round_}
        kept_units = [u for u in range(masked.widths[layer]) if bool(alive[layer][u])]
        dropped_units = sorted(drop_round, key=lambda u: (-drop_round[u], u))

        def weight_of(unit: int, r: int) -> torch.Tensor:
            return full_run.weights[r][f"net.{layer}.weight"][unit]

        kept_imgs = unit_images(
            torch.stack([weight_of(u, round_) for u in kept_units[:MAX_TILES]]),
            masked.input_shape)
        plot_units(kept_imgs, [f"#{u}" for u in kept_units[:MAX_TILES]],
                   out / "first_layer_kept.png",
                   suptitle=f"{layer}: the {len(kept_units)} units alive at round {round_} "
                            f"({kind}, trained weights of round {round_})")
        result.figures.append("first_layer_kept.png")
        text += [f"`{layer}` {kind} of the units alive at round {round_} (blue negative, red "
                 "positive, each unit on its own scale), with that round's trained weights:", "",
                 "![kept units](first_layer_kept.png)", ""]
        if dropped_units:
            shown = dropped_units[:MAX_TILES]
            imgs = unit_images(torch.stack([weight_of(u, drop_round[u] - 1) for u in shown]),
                               masked.input_shape)
            plot_units(imgs, [f"#{u} r{drop_round[u]}" for u in shown],
                       out / "first_layer_dropped.png",
                       suptitle=f"{layer}: units dropped by round {round_} (latest first; "
                                "weights of the round that scored them)")
            result.figures.append("first_layer_dropped.png")
            more = (f" (the {len(shown)} dropped last of {len(dropped_units)})"
                    if len(dropped_units) > len(shown) else "")
            text += [f"The units dropped by round {round_}{more}, labelled with the round they "
                     "were gone from, each drawn with the trained weights of the round whose "
                     "scores dropped it:", "", "![dropped units](first_layer_dropped.png)", ""]
            text += _barely_trained(full_run, layer, dropped_units, drop_round)
        result.summary.update(first_layer=layer, kept=len(kept_units),
                              dropped=len(dropped_units))
    else:
        text += ["The input is not an image read directly by a prunable layer, so the first "
                 "layer's units are not drawn.", ""]

    try:
        after = input_path_strength(masked)
    except ConfigError as exc:  # an op the path count cannot follow: the rest still stands
        text += ["## Inputs with a live path to the output", "",
                 f"Not drawn: {exc} (the path count follows linear layers, convolutions, "
                 "pooling and elementwise ops).", ""]
        result.summary.update(input_paths=None)
        return _finish(result, out, text)
    unpruned = _network_at(masked, full_run, 0, all_alive=True)
    before = input_path_strength(unpruned)
    live = after > 0
    pixels = live.any(0) if image_input else live
    result.summary.update(live_inputs=int(live.sum()), inputs=int(live.numel()),
                          live_pixels=int(pixels.sum()), pixels=int(pixels.numel()))
    text += ["## Inputs with a live path to the output", "",
             f"{int(live.sum())} of {live.numel()} input elements still reach the output through "
             "nonzero weights and alive units at this round (structurally, whatever the "
             "activations do on particular data; white: live). DropNet removes whole units, "
             "never single weights, and a unit's incoming weights are rarely exactly zero, so an "
             "input normally stays live as long as one unit of each layer is left; what pruning "
             "changes is how strongly each input is connected: the path strength (the sum over "
             "all paths of the product of the absolute weights; `input_paths.csv`).", ""]
    if image_input:
        plot_input_paths(before, after, out / "input_paths.png", labels=(
            "path strength, round 0 (unpruned)", f"path strength, round {round_}",
            f"live pixels, round {round_} ({int(pixels.sum())}/{pixels.numel()})"))
        result.figures.append("input_paths.png")
        text += ["![input paths](input_paths.png)", ""]
    write_csv(out / "input_paths.csv", [
        {"input": i, "strength_round_0": float(b), f"strength_round_{round_}": float(a)}
        for i, (b, a) in enumerate(zip(before.flatten(), after.flatten(), strict=True))])
    return _finish(result, out, text)


def _finish(result, out: Path, text: list[str]):
    write_text(out / "interpret.md", "\n".join(text))
    write_json(out / "interpret.json", {"metric": result.metric, "seed": result.seed,
                                        "round": result.round, "figures": result.figures,
                                        **result.summary})
    return result


def _barely_trained(run: DropNetResult, layer: str, units: list[int], drop_round: dict) -> list[str]:
    """A sentence on the dropped units whose weights, when scored, were still close to their
    initial ones (cosine similarity >= 0.9): they barely trained, so they look like noise."""
    key = f"net.{layer}.weight"
    theta0 = run.initial[key]
    cos = {u: float(torch.nn.functional.cosine_similarity(
        run.weights[drop_round[u] - 1][key][u].flatten(), theta0[u].flatten(), dim=0))
        for u in units}
    close = sorted((u for u in units if cos[u] >= 0.9), key=lambda u: -cos[u])
    if not close:
        return []
    others = sorted(c for u, c in cos.items() if u not in close)
    median = f", against a median of {others[len(others) // 2]:.2f} for the other dropped units" \
        if others else ""
    scores = [run.scores.get(drop_round[u] - 1, {}).get(layer) for u in close]
    said = ", ".join(
        f"#{u} (round {drop_round[u]}, cosine {cos[u]:.2f}"
        + (f", E {sc[u]:.3g}" if sc is not None and run.metric.startswith("minimum") else "")
        + ")" for u, sc in zip(close, scores, strict=True))
    return [f"Dropped units whose incoming weights were still close to their initial values when "
            f"they were scored (cosine similarity to θ0 ≥ 0.9{median}): {said}. They barely "
            "trained (little gradient reaches a unit that rarely fires), which is why their "
            "images look like noise.", ""]


def _network_at(masked: MaskedNetwork, run: DropNetResult, r: int, *, all_alive: bool = False):
    import copy

    net = copy.deepcopy(masked)
    net.load_weight_state_dict(run.weights[r])
    net.set_masks(run.masks_at(0) if all_alive else run.masks_at(r))
    return net
