"""HQ against the baselines, per pool of a pipeline run: the consensus of the focal metrics, and
HQ's (and the consensus's) recommended team next to every baseline at the same team size, with
selection and test accuracy and cost (size / M and MACs over the whole unpruned pool).

``python -m secateurs.experiments.baselines_page RUN`` prints the comparison of a finished run as
Markdown (what docs/results/fashion-mnist-baselines.md holds).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..ensembles import (
    COMPARE_BASELINES,
    ConsensusResult,
    PredictionPool,
    SelectionResult,
    compare_selections,
)
from ..ensembles.consensus import consensus_from
from ..ensembles.selection import check_vote_weights, report_team


def consensus_of(pool: PredictionPool, per_metric: dict[str, SelectionResult]) -> ConsensusResult:
    """The consensus (docs/ensembles.md) of HQ results already computed, one per focal metric:
    what ``select_consensus`` gives, without running HQ again."""
    q, q_req, levels, choice = consensus_from(per_metric)
    first = next(iter(per_metric.values()))
    notes = [] if q >= q_req else [f"no team reached the quorum {q_req}; lowered it to {q}"]
    recommended = None
    if choice is not None:
        level, i = choice
        weights = check_vote_weights(pool, first.vote, None)[1]
        recommended = report_team(
            pool, level.teams[i], level.accuracy[i], first.vote, weights, float(level.diversity[i])
        )
    else:
        notes.append("no HQ run kept any team, so there is no recommendation")
    return ConsensusResult(tuple(per_metric), q, q_req, levels, recommended, per_metric,
                           notes=notes)


def compare_pool(
    tag: str,
    pool: PredictionPool,
    references: dict[str, SelectionResult | ConsensusResult],
    snapshots: Sequence[str],
    macs: Sequence[int],
    unpruned_macs: int,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Each reference's team (HQ per focal metric, consensus) next to every baseline at its size
    (each size's baselines computed once). Every row carries a ``row`` id for ``export-team``."""
    groups, done = [], {}
    for key, ref in references.items():
        if ref.recommended is None:
            continue
        size = ref.recommended.size
        cmp = compare_selections(pool, ref, seed=seed, baselines=() if size in done else
                                 COMPARE_BASELINES)
        ref_row = _row(tag, cmp["rows"][0], key, snapshots, macs, unpruned_macs)
        if size in done:
            done[size]["rows"].insert(len(done[size]["references"]), ref_row)
            done[size]["references"].append(key)
            continue
        rows = [ref_row] + [
            _row(tag, r, f"{r['method']}-{r['criterion']}@{size}", snapshots, macs, unpruned_macs)
            for r in cmp["rows"][1:]
        ]
        done[size] = {"size": size, "references": [key], "rows": rows}
        groups.append(done[size])
    whole = compare_whole(pool, references, macs, unpruned_macs)
    return {"pool": tag, "num_models": pool.num_models, "whole_pool": whole,
            "groups": sorted(groups, key=lambda g: g["size"])}


def compare_whole(pool, references, macs, unpruned_macs) -> dict[str, Any] | None:
    ref = next(iter(references.values()), None)
    if ref is None:
        return None
    p = ref.pool
    return {
        "size": p.size,
        "val_acc": p.selection_accuracy,
        "test_acc": p.test_accuracy,
        "cost": 1.0,
        "mac_fraction": sum(macs) / unpruned_macs if unpruned_macs else None,
    }


def _row(tag, r, key, snapshots, macs, unpruned_macs) -> dict[str, Any]:
    idx = list(r["indices"])
    return {
        "row": f"{tag}/{key}",
        "pool": tag,
        "label": r["label"],
        "method": r["method"],
        "criterion": r["criterion"],
        "team": idx,
        "names": list(r["names"]),
        "members": [snapshots[i] for i in idx],
        "size": r["size"],
        "val_acc": r["selection_accuracy"],
        "test_acc": r["test_accuracy"],
        "cost": r["size_fraction"],
        "mac_fraction": sum(macs[i] for i in idx) / unpruned_macs if unpruned_macs else None,
    }


def flat_rows(comparison: dict) -> list[dict]:
    """Every row of every pool, for the CSV and for ``export-team --row``."""
    return [row for p in comparison["pools"] for g in p["groups"] for row in g["rows"]]


# ----------------------------------------------------------------------------- Markdown
def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def _summary(pools: list[dict]) -> list[str]:
    """One line per (pool, reference team): where it stands among the baselines of its size."""
    head = ["pool", "reference", "size", "test acc %", "baselines' test acc % (min / mean / max)",
            "baselines above / equal / below on test", "baselines reaching its val acc"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in pools:
        for g in p["groups"]:
            refs, base = g["rows"][: len(g["references"])], g["rows"][len(g["references"]):]
            tests = [b["test_acc"] for b in base if b["test_acc"] is not None]
            for r in refs:
                t = r["test_acc"]
                if t is None or not tests:
                    continue
                above = sum(x > t for x in tests)
                equal = sum(x == t for x in tests)
                reach = sum(b["val_acc"] >= r["val_acc"] for b in base)
                lines.append("| " + " | ".join([
                    f"`{p['pool']}`", r["label"], str(r["size"]), _pct(t),
                    f"{_pct(min(tests))} / {_pct(sum(tests) / len(tests))} / {_pct(max(tests))}",
                    f"{above} / {equal} / {len(tests) - above - equal}",
                    f"{reach} of {len(base)}",
                ]) + " |")
    return ["Summary: each reference team against the baselines of the same size.", ""] + lines


def comparison_markdown(results: dict) -> str:
    """The comparison section of the report: one table per pool, the mixed pool first."""
    comparison = results.get("comparison")
    if not comparison or not comparison.get("pools"):
        return ""
    pools = sorted(comparison["pools"], key=lambda p: p["pool"] != "mixed")
    parts = [
        "## HQ against the baselines, at equal team size",
        "",
        "For each pool: HQ's recommended team for each focal metric and the consensus of the "
        "focal metrics (our rule: teams kept by at least a majority of the metrics' HQ runs, see "
        "docs/ensembles.md), each next to every baseline choosing a team of the same size. All "
        "teams are chosen on the validation split; test accuracy is reported. Cost: team size / M "
        "and the team's MACs over the whole unpruned pool's. `row` is what `secateurs "
        "export-team --row` takes.",
        "",
    ]
    parts += _summary(pools) + [""]
    head = ["method", "team", "size", "val acc %", "test acc %", "size / M", "MACs / unpruned",
            "row"]
    for p in pools:
        whole = p["whole_pool"] or {}
        parts += [
            f"### Pool `{p['pool']}` (M = {p['num_models']}; whole pool: val "
            f"{_pct(whole.get('val_acc'))} %, test {_pct(whole.get('test_acc'))} %, MACs "
            f"{'-' if whole.get('mac_fraction') is None else format(whole['mac_fraction'], '.1%')}"
            " of unpruned)",
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        for g in p["groups"]:
            for r in g["rows"]:
                team = "{" + ",".join(map(str, r["team"])) + "} " + " ".join(r["names"])
                parts.append("| " + " | ".join([
                    r["label"], team, str(r["size"]), _pct(r["val_acc"]), _pct(r["test_acc"]),
                    f"{r['cost']:.0%}",
                    "-" if r["mac_fraction"] is None else f"{r['mac_fraction']:.1%}",
                    f"`{r['row']}`",
                ]) + " |")
        parts.append("")
    return "\n".join(parts)
