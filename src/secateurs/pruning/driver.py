"""The one DropNet driver: a single run and a study of hundreds go through the same loop.

Each run is a ``DropNet`` (its masks, scoring, selection, reset and records). ``run_dropnets``
takes the runs round by round through *train, measure, record, score, drop, reset*. Only
training and measuring differ between runs, by the engine that does them:

- ``stacked``: runs of one architecture and one training setting train as one batched model
  (``training.lockstep``), each layer compacted to the units still alive in the batch, every
  split measured in one stacked pass that also collects the activation scores. A single run is a
  batch of one, so it trains only its alive units too.
- ``separate``: one run at a time with the built-in trainer or the user's training hook, for
  hooks, augmentation, models the stacked engine cannot batch, and ``lockstep=False``.

Scoring from the batched statistics, selection, the oracle, resets, coupled groups and stop rules
are the runs' own methods, so every feature behaves the same under either engine.

Round 0 (the unpruned network) is the same training for every run with the same initial
weights, data-order seed and training settings, whatever its metric: with ``fork`` (the default)
it is trained once and copied to the others (runs with a training hook are never forked: a hook
may train differently per metric).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..errors import ConfigError, TrainingDiverged
from ..training.lockstep import LockstepDiverged, StackedNetwork, trace_stackable, train_lockstep
from ..training.trainer import TrainResult, resolve_device
from .dropnet import DropNet, DropNetConfig, DropNetResult
from .importance import ActivationStats, scores_from_stats
from .lockstep import (
    BATCHED_CRITERIA,
    CPU_STEP_BYTES,
    LockstepFallback,
    compact_copy,
    compaction_plan,
    expand_into,
    masked_unsupported_reason,
    measure_splits,
    separate_is_faster,
)

SPLIT_KEYS = tuple(f"{s}_{m}" for s in ("train", "val", "test") for m in ("loss", "acc"))
OnRound = Callable[[DropNet, dict], None]


@dataclass
class _Trained:
    """What an engine gives back for one run's round."""

    result: TrainResult
    seconds: float
    metrics: dict[str, float] | None = None  # the splits' losses and accuracies, if measured
    stats: ActivationStats | None = None  # activation statistics over the training split


def run_dropnets(
    runs: Sequence[DropNet],
    *,
    lockstep: bool = True,
    fork: bool = True,
    compact: bool | None = None,
    order_seed: int | None = None,
    group_size: int | None = None,
    step_bytes: int | None = None,
    on_round: OnRound | None = None,
    on_finish: Callable[[int, DropNetResult], None] | None = None,
) -> list[DropNetResult]:
    """Run every DropNet in ``runs`` to its stop rule; results in the order of ``runs``.

    ``lockstep``: batch runs with the stacked engine where it can (off: the built-in trainer runs
    each one alone). ``fork``: train round 0 once per group of identical unpruned runs.
    ``compact`` (default: on unless weight decay is on) trains only the units alive in some
    network of a batch; ``compact=True`` with weight decay is a ``ConfigError`` (decay moves
    dropped weights, which a compacted batch never computes). ``order_seed``: every run gets the
    data order of a run with that seed (one shared input). ``group_size``: at most this many runs
    per batch. ``step_bytes``: on CPU a batch trains in sub-batches whose largest activation in a
    step stays within this many bytes (default 16 MiB: activations that stay in cache train
    faster; no limit on GPU), runs of similar widths together. ``on_round(run, row)`` follows each
    recorded round, ``on_finish(i, result)`` each finished run. If some runs diverge, the others
    finish and a ``TrainingDiverged`` naming them is raised at the end.
    """
    if group_size is not None and group_size < 1:
        raise ConfigError(f"group_size must be >= 1, got {group_size}")
    runs = list(runs)
    for run in runs:
        run.config.validate()  # again: a field may have been changed since construction
    done = [r for r in runs if r.stop_reason is not None]
    if done:  # running it again would retrain its last round over the recorded one
        raise ConfigError(
            f"the DropNet run {done[0].config.metric} seed {done[0].seed} has finished "
            f"({done[0].stop_reason}); its result is .result(); build a new DropNet to run again"
        )
    if len({id(r) for r in runs}) != len(runs):
        raise ConfigError("the same DropNet object is listed twice; build one per run")
    stacked = _stackable(runs, lockstep)
    if compact:
        _refuse_compaction_with_decay([runs[i] for i in stacked])
    results: dict[int, DropNetResult] = {}
    failures: dict[int, str] = {}
    active = list(range(len(runs)))
    while active:
        leaders, copies = _fork_plan(runs, active) if fork else (list(active), {})
        trained: dict[int, _Trained] = {}
        batched = [i for i in leaders if i in stacked]
        for batch in _batches(runs, batched, group_size):
            _train_stacked(runs, batch, compact, order_seed, step_bytes, trained, failures)
        for i in leaders:
            if i not in stacked:
                _train_separate(runs[i], i, trained, failures)
        rows: dict[int, dict] = {}
        for i in active:
            source = copies.get(i)
            if i in failures or source in failures:
                failures.setdefault(i, failures.get(source, ""))
                continue
            if source is not None:
                trained[i] = _copy_round(runs[source], runs[i], trained[source], rows[source])
            rows[i] = runs[i].record(trained[i].result, trained[i].seconds, trained[i].metrics)
            if on_round is not None:
                on_round(runs[i], rows[i])
        still = []
        for i in active:
            if i in failures:
                continue
            run = runs[i]
            if run.stop_reason is not None or run.prune_step(_scores(run, trained[i])) == 0:
                results[i] = run.result()
                if on_finish is not None:
                    on_finish(i, results[i])
            else:
                still.append(i)
        active = still
    if failures:
        first = min(failures)
        raise TrainingDiverged(
            f"{len(failures)} DropNet run(s) diverged, e.g. {runs[first].config.metric} seed "
            f"{runs[first].seed}: {failures[first]}"
        )
    return [results[i] for i in range(len(runs))]


def run_dropnet_lockstep(
    model,
    data,
    runs: Sequence[tuple[DropNetConfig, int]],
    *,
    train_fn=None,
    **options,
) -> list[DropNetResult]:
    """``run_dropnets`` over ``DropNet(model, data, config, seed=seed, train_fn=train_fn)`` for
    every ``(config, seed)`` of ``runs``; ``options`` as ``run_dropnets``'."""
    nets = [DropNet(model, data, cfg, seed=seed, train_fn=train_fn) for cfg, seed in runs]
    return run_dropnets(nets, **options)


# ------------------------------------------------------------------------------ which engine
def _stackable(runs: list[DropNet], lockstep: bool) -> set[int]:
    """Runs the stacked engine trains; one warning when runs that asked for it cannot be."""
    if not lockstep:
        return set()
    out, why = set(), {}
    reasons: dict[str, str | None] = {}  # one check per architecture
    keys = [_architecture(run) for run in runs]
    same = {key: keys.count(key) for key in set(keys)}  # runs of each architecture
    for i, run in enumerate(runs):
        if run.train_fn is not None:
            why[i] = "a training hook (train_fn) trains each network itself"
        elif run.config.train.augment:
            why[i] = "augmented training (augment=true) is not batched"
        else:
            key = keys[i]
            if key not in reasons:
                reasons[key] = masked_unsupported_reason(run.masked, run.data.x_train[:2])
            if reasons[key] is not None:
                why[i] = reasons[key]
            elif separate_is_faster(
                run.masked, resolve_device(run.config.train.device), same[key]
            ) is None:
                out.add(i)  # (else: batched exactly but measured slower; a choice, no warning)
    if len(runs) > 1 and why:
        reason = next(iter(why.values()))
        warnings.warn(
            f"lockstep disabled for {len(why)} of {len(runs)} runs: {reason}; they run one "
            "after another", LockstepFallback, stacklevel=3,
        )
    return out


def _architecture(run: DropNet) -> str:
    """Runs batch together only if they trace to the same code with tensors of the same shapes."""
    net = run.masked.net
    shapes = [(k, tuple(v.shape)) for k, v in net.state_dict().items()]
    return hashlib.sha256(repr((getattr(net, "code", type(net).__name__), shapes)).encode()).hexdigest()


def _refuse_compaction_with_decay(runs: list[DropNet]) -> None:
    for run in runs:
        if run.config.train.weight_decay > 0:
            raise ConfigError(
                f"compact=True cannot be used with weight decay (weight_decay="
                f"{run.config.train.weight_decay} in the {run.config.metric} run with seed "
                f"{run.seed}): decay moves the weights of dropped units in a separate run, and a "
                "compacted batch does not compute them; leave compact=None (off with weight "
                "decay) or set weight_decay=0"
            )


def _batches(runs: list[DropNet], indices: list[int], group_size: int | None) -> list[list[int]]:
    """Runs of one architecture with the same training settings and data, in chunks of at most
    ``group_size``."""
    by: dict[tuple, list[int]] = {}
    for i in indices:
        key = (
            _architecture(runs[i]), id(runs[i].data),
            json.dumps(runs[i].config.train.to_dict(), sort_keys=True),
        )
        by.setdefault(key, []).append(i)
    out = []
    for members in by.values():
        size = group_size or len(members)
        out += [members[s : s + size] for s in range(0, len(members), size)]
    return out


# ------------------------------------------------------------------------------ forking round 0
def _digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous().reshape(-1)
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _fork_plan(runs: list[DropNet], active: list[int]) -> tuple[list[int], dict[int, int]]:
    """Runs to train this round, and runs that copy another's round 0 (run -> source): same
    initial weights (by content), data, data-order seed and training settings, no hook."""
    leaders, copies, first = [], {}, {}
    for i in active:
        run = runs[i]
        if run.round != 0 or run.train_fn is not None:
            leaders.append(i)
            continue
        key = (
            id(run.data), run.round_seed, _digest(run.initial),
            json.dumps(run.config.train.to_dict(), sort_keys=True),
        )
        if key in first:
            copies[i] = first[key]
        else:
            first[key] = i
            leaders.append(i)
    return leaders, copies


def _copy_round(source: DropNet, run: DropNet, trained: _Trained, row: dict) -> _Trained:
    """``run``'s round 0 as ``source`` trained it: the same weights, history and measurements."""
    state = source.masked.weight_state_dict()
    device = next(run.masked.parameters()).device
    run.masked.load_weight_state_dict({k: v.to(device) for k, v in state.items()})
    run.forked_from = source.config.metric
    return _Trained(
        copy.deepcopy(trained.result), 0.0, {k: row[k] for k in SPLIT_KEYS}, trained.stats
    )


def _scores(run: DropNet, trained: _Trained) -> dict[str, torch.Tensor] | None:
    """Scores from the batched statistics where they are the run's own criterion's input (every
    training sample); None lets the run score itself (oracle, weights, ``score_samples``)."""
    if (
        trained.stats is None or run.metric.criterion not in BATCHED_CRITERIA
        or run.config.score_samples is not None
    ):
        return None
    return scores_from_stats(run.metric.criterion, trained.stats)


# ------------------------------------------------------------------------------ the engines
def _train_separate(
    run: DropNet, i: int, trained: dict[int, _Trained], failures: dict[int, str]
) -> None:
    start = time.perf_counter()
    try:
        result = run.train_round()
    except TrainingDiverged as exc:  # the others go on
        failures[i] = str(exc)
        return
    trained[i] = _Trained(result, time.perf_counter() - start)


def _subgroups(
    group: list[DropNet], elements: int, batch_size: int, budget: int | None, compact: bool
) -> list[list[int]]:
    """Positions of ``group`` split into batches whose largest activation in a training step
    (``elements`` per sample at full width, scaled by the widest layer's alive fraction when
    ``compact``) stays within ``budget`` bytes; runs of similar widths go together (they compact
    better)."""
    widest = [max(n.masked.remaining_per_layer().values()) if compact else 1.0 for n in group]
    order = sorted(range(len(group)), key=lambda p: -widest[p])
    if budget is None:
        return [order]
    out: list[list[int]] = []
    for p in order:  # widest first: a batch's first member sets its widths
        if out and (len(out[-1]) + 1) * widest[out[-1][0]] * elements * batch_size * 4 <= budget:
            out[-1].append(p)
        else:
            out.append([p])
    return out


def _train_stacked(
    runs: list[DropNet],
    batch: list[int],
    compact: bool | None,
    order_seed: int | None,
    step_bytes: int | None,
    trained: dict[int, _Trained],
    failures: dict[int, str],
) -> None:
    """One round of a batch of runs with one training setting, in cache-sized sub-batches."""
    train_cfg = runs[batch[0]].config.train
    device = resolve_device(train_cfg.device)
    use_compact = compact if compact is not None else train_cfg.weight_decay == 0
    if step_bytes is None and device.type == "cpu":
        step_bytes = CPU_STEP_BYTES
    group = [runs[i] for i in batch]
    for run in group:
        run.masked.to(device)
    data = group[0].data
    elements = StackedNetwork([group[0].masked.net]).elements_per_sample(
        data.x_train[:1].to(device)
    )
    for sub in _subgroups(group, elements, train_cfg.batch_size, step_bytes, use_compact):
        _stacked_round([batch[p] for p in sub], runs, use_compact, order_seed, trained, failures)


def _stacked_round(
    indices: list[int],
    runs: list[DropNet],
    use_compact: bool,
    order_seed: int | None,
    trained: dict[int, _Trained],
    failures: dict[int, str],
) -> None:
    """Train one sub-batch together, scatter the weights back, and measure every split (the pass
    over the training split also collects the activation statistics)."""
    group = [runs[i] for i in indices]
    data, train_cfg = group[0].data, group[0].config.train
    plans = compaction_plan([n.masked for n in group]) if use_compact else [{}] * len(group)
    modules = [
        compact_copy(n.masked, p) if p else n.masked.net for n, p in zip(group, plans, strict=True)
    ]
    graph = trace_stackable(modules)  # once for training, measuring and scoring
    seeds = [(n.seed if order_seed is None else order_seed) * 100_003 + n.round for n in group]
    start = time.perf_counter()
    try:
        results = train_lockstep(modules, data, train_cfg, seeds=seeds, graph=graph)
    except LockstepDiverged as exc:
        results = exc.results
        for pos, message in exc.failed.items():
            failures[indices[pos]] = message
    for net, module, plan in zip(group, modules, plans, strict=True):
        if plan:
            expand_into(module, net.masked, plan)
    seconds = (time.perf_counter() - start) / len(group)
    ok = [p for p, r in enumerate(results) if r is not None]
    if not ok:
        return
    # Statistics for every network (its round-0 copies may score by activations even where it
    # does not); the taps cost little beside the pass over the training split they ride on.
    metrics, stats = measure_splits(
        [group[p].masked for p in ok], data, modules=[modules[p] for p in ok],
        plans=[plans[p] for p in ok], stats_for=range(len(ok)), zeros_needed=True, graph=graph,
    )
    for j, p in enumerate(ok):
        trained[indices[p]] = _Trained(results[p], seconds, metrics[j], stats.get(j))
