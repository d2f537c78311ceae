"""DropNet runs in lockstep: many runs of one architecture trained round by round as one batch.

Each run is an ordinary ``DropNet`` (same construction, seeds, ``record``, ``prune_step``,
``reset`` and selection); only its training and its activation scores are computed together with
the other runs' by ``training.lockstep``. So the K trajectories are those of K separate runs, up to
floating-point reassociation in batched kernels (see docs/lockstep.md for the tolerance).

Two things make a lockstep round cheaper than K separate rounds:

- the K networks run as one batched model (``StackedNetwork``), which removes the per-step overhead
  that dominates small networks on a CPU and fills a GPU;
- ``compact``: units that every network of the batch has dropped are not computed at all. Each
  round the layers shrink to the largest number of units still alive in any network of the batch
  (dead units pad the others; they output exactly zero and get zero gradients), and the trained
  weights are scattered back into the full-width networks afterwards. Dropped units never change
  in a separate run either (their gradients are exactly zero), so this changes only the order of
  floating-point sums. It is off when weight decay is on (decay does move dropped weights).

Oracle runs and models the engine cannot batch (BatchNorm, dropout) run one after another, as
``DropNet.run`` does, with a warning saying why.
"""

from __future__ import annotations

import copy
import json
import time
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..data.splits import DatasetSplits
from ..errors import ConfigError
from ..training.lockstep import (
    LockstepDiverged,
    LockstepUnsupported,
    Stacked,
    StackedNetwork,
    StackedOp,
    eval_chunk,
    register_stacker,
    train_lockstep,
)
from ..training.trainer import resolve_device
from .dropnet import DropNet, DropNetConfig, DropNetResult
from .importance import ActivationStats, scores_from_stats
from .masks import MaskedNetwork, UnitMask

# Criteria whose scores need a pass over the training data (batched here); the others are cheap.
BATCHED_CRITERIA = ("activation", "negative_activation", "apoz")


class LockstepFallback(UserWarning):
    """Some runs were not batched and ran one after another (the message says why)."""


@register_stacker(UnitMask)
class StackedUnitMask(StackedOp):
    """K masks (K, units) multiplying (K, B, units, ...) or (B, K, units, ...) activations."""

    def __init__(self, modules: Sequence[nn.Module]):
        super().__init__(modules, ("mask",))

    def run(self, x: Stacked) -> Stacked:
        k, units = self.mask.shape
        t, layout = (x.t.unsqueeze(1), "bk") if x.layout == "shared" else (x.t, x.layout)
        tail = (1,) * (t.dim() - 3)
        shape = (k, 1, units, *tail) if layout == "kb" else (1, k, units, *tail)
        return Stacked(t * self.mask.view(shape), layout)


# --------------------------------------------------------------------- compacting dead units
def compaction_plan(nets: Sequence[MaskedNetwork]) -> list[dict[str, torch.Tensor]]:
    """Per network, the original unit indices each compactable layer keeps this round.

    A coupled group (layers whose channels meet in an addition) keeps, per network, the units alive
    in any of its layers, padded with dead units up to the largest count in the batch, so that all
    networks have the same widths. Groups whose channels reach an op that channel flow does not
    understand, or whose tails hold parameters (BatchNorm), keep their full width.
    """
    first = nets[0]
    flow = first.flow
    plans: list[dict[str, torch.Tensor]] = [{} for _ in nets]
    for group in flow.groups():
        if flow.barrier_reasons(group[0]) or any(_tail_has_state(first, x) for x in group):
            continue
        alive = []
        for net in nets:
            masks = net.get_masks()
            union = torch.zeros(first.widths[group[0]], dtype=torch.bool)
            for layer in group:
                union |= masks[layer].cpu()
            alive.append(union)
        width = max(int(a.sum()) for a in alive)
        if width == len(alive[0]):
            continue
        for plan, union in zip(plans, alive, strict=True):
            dead = (~union).nonzero().flatten()
            keep = torch.cat([union.nonzero().flatten(), dead[: width - int(union.sum())]])
            index = keep.sort().values
            for layer in group:
                plan[layer] = index
    return plans


def _tail_has_state(masked: MaskedNetwork, layer: str) -> bool:
    for node in masked.flow.tails[layer][1:]:
        if node.op == "call_module":
            module = masked.net.get_submodule(str(node.target))
            if any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
                return True
    return False


def _input_index(masked: MaskedNetwork, plan: dict[str, torch.Tensor], module: str):
    src = masked.flow.space_of.get(module)
    if src is None or src[0] not in plan:
        return None
    layer, repeat = src
    return (plan[layer][:, None] * repeat + torch.arange(repeat)[None, :]).flatten()


def _take(module: nn.Module, name: str, dim: int, index: torch.Tensor) -> None:
    tensor = getattr(module, name)
    if tensor is None:
        return
    data = tensor.detach().index_select(dim, index.to(tensor.device)).clone()
    if isinstance(tensor, nn.Parameter):
        setattr(module, name, nn.Parameter(data, requires_grad=tensor.requires_grad))
    else:
        setattr(module, name, data)


def _mask_module_names(masked: MaskedNetwork) -> dict[str, str]:
    """Prunable layer -> name of its UnitMask inside ``masked.net``."""
    names = {id(m): n for n, m in masked.net.named_modules()}
    return {layer: names[id(m)] for layer, m in masked.mask_modules().items()}


def compact_copy(masked: MaskedNetwork, plan: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``masked.net`` whose layers hold only the units in ``plan`` (others unchanged)."""
    net = copy.deepcopy(masked.net)
    if not plan:
        return net
    for layer, index in plan.items():
        module = net.get_submodule(layer)
        _take(module, "weight", 0, index)
        _take(module, "bias", 0, index)
        if isinstance(module, nn.Linear):
            module.out_features = len(index)
        else:
            module.out_channels = len(index)
        _take(net.get_submodule(_mask_module_names(masked)[layer]), "mask", 0, index)
    for name in masked.flow.space_of:
        index = _input_index(masked, plan, name)
        if index is not None:
            module = net.get_submodule(name)
            _take(module, "weight", 1, index)
            if isinstance(module, nn.Linear):
                module.in_features = len(index)
            else:
                module.in_channels = len(index)
    return net


@torch.no_grad()
def expand_into(compact: nn.Module, masked: MaskedNetwork, plan: dict[str, torch.Tensor]) -> None:
    """Scatter the weights of a ``compact_copy`` back into the full-width ``masked`` network."""
    for name, module in masked.net.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        small = compact.get_submodule(name)
        rows, cols = plan.get(name), _input_index(masked, plan, name)
        if rows is None and cols is None:
            module.weight.copy_(small.weight)
            if module.bias is not None:
                module.bias.copy_(small.bias)
            continue
        device = module.weight.device
        rows = torch.arange(module.weight.shape[0]) if rows is None else rows
        cols = torch.arange(module.weight.shape[1]) if cols is None else cols
        rows, cols = rows.to(device), cols.to(device)
        module.weight[rows[:, None], cols[None, :]] = small.weight
        if module.bias is not None:
            module.bias[rows] = small.bias


# ------------------------------------------------------------------------------ scoring
@torch.no_grad()
def lockstep_activation_stats(
    nets: Sequence[MaskedNetwork],
    x: torch.Tensor,
    *,
    modules: Sequence[nn.Module] | None = None,
    plans: Sequence[dict[str, torch.Tensor]] | None = None,
    samples: int | None = None,
    batch_size: int = 1024,
    zeros_needed: bool = True,
) -> list[ActivationStats]:
    """``importance.activation_stats`` for K networks in one stacked pass over ``x``.

    ``modules``/``plans``: compact copies to run instead of the networks themselves, and how to
    map their units back (dropped units score as a masked unit does: |a| = 0, all zeros).
    ``zeros_needed=False`` skips counting zeros (``apoz`` is then left at 0).
    """
    if samples is not None:
        x = x[:samples]
    n = len(x)
    modules = list(modules) if modules is not None else [net.net for net in nets]
    plans = list(plans) if plans is not None else [{} for _ in nets]
    stacked = StackedNetwork(modules)
    device = next(stacked.parameters()).device
    stacked.to(device).eval()
    names = _mask_module_names(nets[0])
    widths = {layer: stacked.ops[_op_key(name)].mask.shape[1] for layer, name in names.items()}
    k = len(modules)
    sums = {x_: torch.zeros(k, w, dtype=torch.float64, device=device) for x_, w in widths.items()}
    zeros = {x_: torch.zeros(k, w, dtype=torch.float64, device=device) for x_, w in widths.items()}
    positions: dict[str, int] = {}

    def tap(layer: str):
        def record(out: torch.Tensor) -> None:
            flat = out.flatten(3) if out.dim() > 3 else out.unsqueeze(3)  # (K, N, C, positions)
            sums[layer] += flat.mean(3).abs().sum(1).double()
            if zeros_needed:
                zeros[layer] += (flat == 0).sum((1, 3)).double()
            positions[layer] = flat.shape[3]

        return record

    taps = {name: tap(layer) for layer, name in names.items()}
    chunk = eval_chunk(k, stacked.elements_per_sample(x[:1].to(device)), batch_size)
    for i in range(0, n, chunk):
        stacked(x[i : i + chunk].to(device), "shared", taps=taps)
    out = []
    for j, (net, plan) in enumerate(zip(nets, plans, strict=True)):
        mean_abs, apoz = {}, {}
        for layer in names:
            m = (sums[layer][j] / max(n, 1)).float().cpu()
            z = (zeros[layer][j] / max(n * positions.get(layer, 1), 1)).float().cpu()
            if layer in plan:
                full_m = torch.zeros(net.widths[layer])
                full_z = torch.ones(net.widths[layer])
                full_m[plan[layer]], full_z[plan[layer]] = m, z
                m, z = full_m, full_z
            mean_abs[layer], apoz[layer] = m, z
        out.append(ActivationStats(mean_abs, apoz, n))
    return out


def _op_key(name: str) -> str:
    return name.replace(".", "__")


class LockstepDropNet(DropNet):
    """A ``DropNet`` whose next ``choose`` may use scores computed for many runs in one pass."""

    pending_scores: dict[str, torch.Tensor] | None = None

    def choose(self) -> dict[str, list[int]]:
        scores, self.pending_scores = self.pending_scores, None
        if scores is None:
            return super().choose()
        return self.select(scores)  # the same selection (budget, coupling) as a separate run


# ------------------------------------------------------------------------------ the driver
def lockstep_unsupported_reason(model: str, data: DatasetSplits) -> str | None:
    """Why runs of ``model`` cannot be batched (None if they can)."""
    try:
        with torch.random.fork_rng(devices=[]):
            StackedNetwork([DropNet(model, data, DropNetConfig(), seed=0).masked.net])
    except LockstepUnsupported as exc:
        return str(exc)
    return None


def run_dropnet_lockstep(
    model: str,
    data: DatasetSplits,
    runs: Sequence[tuple[DropNetConfig, int]],
    *,
    compact: bool | None = None,
    order_seed: int | None = None,
    group_size: int | None = None,
    on_round: Callable[[DropNet, dict], None] | None = None,
    on_finish: Callable[[int, DropNetResult], None] | None = None,
) -> list[DropNetResult]:
    """Run every ``(config, seed)`` of ``model`` (a registry spec) to its stop rule, as
    ``DropNet(model, data, config, seed=seed).run()`` would, training the runs as batches.

    Runs with the same training settings form a batch (at most ``group_size`` runs; default all).
    ``compact`` (default: on unless weight decay is on) skips units dropped in every network of the
    batch. ``order_seed``: give every run the data order of a run with that seed (one shared order;
    the first layer becomes one wide product) instead of its own. ``on_round(run, row)`` follows
    each recorded round, ``on_finish(i, result)`` each finished run (``i`` indexes ``runs``).
    Results come back in the order of ``runs``. Oracle runs and architectures the engine cannot
    batch run one after another (``LockstepFallback`` warning). If some runs diverge, the others
    finish and a ``TrainingDiverged`` error is raised at the end.
    """
    if group_size is not None and group_size < 1:
        raise ConfigError(f"group_size must be >= 1, got {group_size}")
    results: dict[int, DropNetResult] = {}
    failures: dict[int, str] = {}

    def done(i: int, result: DropNetResult) -> None:
        results[i] = result
        if on_finish is not None:
            on_finish(i, result)

    batched, alone = [], []
    for i, (cfg, _seed) in enumerate(runs):
        (alone if cfg.metric == "oracle" else batched).append(i)
    reason = lockstep_unsupported_reason(model, data) if batched else None
    if reason is not None:
        warnings.warn(
            f"lockstep disabled for {model}: {reason}; running {len(batched)} runs one after "
            "another", LockstepFallback, stacklevel=2,
        )
        alone, batched = sorted(alone + batched), []
    groups: dict[str, list[int]] = {}
    for i in batched:
        groups.setdefault(json.dumps(runs[i][0].train.to_dict(), sort_keys=True), []).append(i)
    for members in groups.values():
        size = group_size or len(members)
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            _run_group(model, data, runs, chunk, compact, order_seed, on_round, done, failures)
    for i in alone:
        cfg, seed = runs[i]
        done(i, DropNet(model, data, cfg, seed=seed).run(on_round))
    if failures:
        from ..errors import TrainingDiverged

        first = min(failures)
        raise TrainingDiverged(
            f"{len(failures)} DropNet run(s) diverged, e.g. {runs[first][0].metric} seed "
            f"{runs[first][1]}: {failures[first]}"
        )
    return [results[i] for i in range(len(runs))]


def _run_group(
    model: str,
    data: DatasetSplits,
    runs: Sequence[tuple[DropNetConfig, int]],
    members: list[int],
    compact: bool | None,
    order_seed: int | None,
    on_round: Callable[[DropNet, dict], None] | None,
    done: Callable[[int, DropNetResult], None],
    failures: dict[int, str],
) -> None:
    train_cfg = runs[members[0]][0].train
    device = resolve_device(train_cfg.device)
    use_compact = compact if compact is not None else train_cfg.weight_decay == 0
    nets = {i: LockstepDropNet(model, data, runs[i][0], seed=runs[i][1]) for i in members}
    active = list(members)
    while active:
        group = [nets[i] for i in active]
        for net in group:
            net.masked.to(device)
        plans = compaction_plan([n.masked for n in group]) if use_compact else [{}] * len(group)
        modules = [
            compact_copy(n.masked, p) if p else n.masked.net for n, p in zip(group, plans, strict=True)
        ]
        seeds = [
            (n.seed if order_seed is None else order_seed) * 100_003 + n.round for n in group
        ]
        start = time.perf_counter()
        try:
            trained = train_lockstep(modules, data, train_cfg, seeds=seeds)
        except LockstepDiverged as exc:
            trained = exc.results
            for pos, message in exc.failed.items():
                failures[active[pos]] = message
        for net, module, plan in zip(group, modules, plans, strict=True):
            if plan:
                expand_into(module, net.masked, plan)
        seconds = (time.perf_counter() - start) / len(group)
        ok = [pos for pos, r in enumerate(trained) if r is not None]
        for pos in ok:
            row = group[pos].record(trained[pos], seconds)
            if on_round is not None:
                on_round(group[pos], row)
        _score(group, modules, plans, ok, data)
        still = []
        for pos in ok:
            net = group[pos]
            if net.stop_reason is not None or net.prune_step() == 0:
                done(active[pos], net.result())
            else:
                still.append(active[pos])
        active = still


def _score(
    group: list[LockstepDropNet], modules: list[nn.Module], plans: list[dict], positions: list[int],
    data: DatasetSplits,
) -> None:
    """Batched activation scores for the runs that go on and score by activations."""
    wanted: dict[int | None, list[int]] = {}
    for pos in positions:
        net = group[pos]
        if net.stop_reason is None and net.metric.criterion in BATCHED_CRITERIA:
            wanted.setdefault(net.config.score_samples, []).append(pos)
    for samples, chosen in wanted.items():
        stats = lockstep_activation_stats(
            [group[p].masked for p in chosen], data.x_train,
            modules=[modules[p] for p in chosen], plans=[plans[p] for p in chosen],
            samples=samples, batch_size=group[chosen[0]].config.train.eval_batch_size,
            zeros_needed=any(group[p].metric.criterion == "apoz" for p in chosen),
        )
        for pos, st in zip(chosen, stats, strict=True):
            group[pos].pending_scores = scores_from_stats(group[pos].metric.criterion, st)
