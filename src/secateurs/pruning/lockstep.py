"""DropNet runs in lockstep: many runs of one architecture trained round by round as batches.

Each run is an ordinary ``DropNet`` (same construction, seeds, ``record``, ``prune_step``,
``reset`` and ``select``); only its training, its measurements and its activation scores are
computed together with the other runs' by ``training.lockstep``. So the K trajectories are those
of K separate runs, up to floating-point reassociation in batched kernels (docs/lockstep.md).

What makes a lockstep round cheaper than K separate rounds:

- the runs train as one batched model (``StackedNetwork``), which removes the per-step overhead
  that dominates small networks on a CPU and fills a GPU;
- ``compact``: units that every network of a batch has dropped are not computed at all. Each
  round the layers shrink to the largest number of units still alive in any network of the batch
  (dead units pad the others; they output exactly zero and get zero gradients), and the trained
  weights are scattered back into the full-width networks afterwards. Dropped units never change
  in a separate run either (their gradients are exactly zero), so this changes only the order of
  floating-point sums. It is off by default when weight decay is on (decay does move dropped
  weights), and asking for it then is an error;
- every split is measured for all runs in one stacked pass per split, in cache-sized chunks, and
  the pass over the training split also collects the activation scores (``DropNet.record`` and
  ``DropNet.choose`` take the figures instead of measuring again);
- on CPU, a round trains in sub-batches whose activations stay in cache (``step_bytes``), runs of
  similar widths together.

Oracle runs and models the engine cannot batch (grouped convolutions, forwards that differ
between train and eval mode, ...) run one after another, as ``DropNet.run`` does, with a warning
saying why. BatchNorm is batched and compacted (its per-unit tensors are sliced with their
layer); models with dropout are batched, not compacted.
"""

from __future__ import annotations

import copy
import json
import math
import time
import warnings
from collections.abc import Callable, Sequence

import torch
from torch import fx, nn
from torch.nn import functional as F

from ..data.splits import DatasetSplits
from ..errors import ConfigError, TrainingDiverged
from ..training.hook import TrainFn
from ..training.lockstep import (
    LockstepDiverged,
    LockstepUnsupported,
    Stacked,
    StackedNetwork,
    StackedOp,
    eval_chunk,
    evaluate_lockstep,
    register_stacker,
    trace_stackable,
    train_lockstep,
)
from ..training.trainer import TrainResult, resolve_device
from .dropnet import DropNet, DropNetConfig, DropNetResult
from .importance import ActivationStats, scores_from_stats
from .masks import MaskedNetwork, UnitMask

_DROPOUT_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_DROPOUT_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d}

# Criteria whose scores need a pass over the training data (batched here); the others are cheap.
BATCHED_CRITERIA = ("activation", "negative_activation", "apoz")
# On CPU, a training step's largest activation (all networks of a sub-batch together) should stay
# in cache: measured on Model B / CIFAR-10, two networks per step (2 x 8 MiB) train 1.4x faster
# than separate runs, four (33 MiB) no faster.
CPU_STEP_BYTES = 16 * 2**20


class LockstepFallback(UserWarning):
    """Some runs were not batched and ran one after another (the message says why)."""


@register_stacker(UnitMask)
class StackedUnitMask(StackedOp):
    """K masks (K, units) multiplying (K, B, units, ...) or (B, K, units, ...) activations."""

    def __init__(self, modules: Sequence[nn.Module]):
        super().__init__(modules, ("mask",))
        self.dim = getattr(modules[0], "dim", 1)

    def run(self, x: Stacked) -> Stacked:
        k, units = self.mask.shape
        if self.dim == -1 and x.t.dim() > (2 if x.layout == "shared" else 3):
            raise LockstepUnsupported("lockstep batches masks on dim 1 only (a per-token Linear)")
        t, layout = (x.t.unsqueeze(1), "bk") if x.layout == "shared" else (x.t, x.layout)
        tail = (1,) * (t.dim() - 3)
        shape = (k, 1, units, *tail) if layout == "kb" else (1, k, units, *tail)
        return Stacked(t * self.mask.view(shape), layout)


# --------------------------------------------------------------------- compacting dead units
def _alive_union(net: MaskedNetwork, group: tuple[str, ...]) -> torch.Tensor:
    masks = net.get_masks()
    union = torch.zeros(net.widths[group[0]], dtype=torch.bool)
    for layer in group:
        union |= masks[layer].cpu()
    return union


def has_dropout(net: nn.Module) -> bool:
    """Whether ``net`` drops activations at random in training (a dropout module with p > 0 or a
    functional dropout)."""
    for module in net.modules():
        if isinstance(module, _DROPOUT_MODULES) and module.p > 0:
            return True
    graph = getattr(net, "graph", None)
    return graph is not None and any(
        n.op == "call_function" and n.target in _DROPOUT_FUNCTIONS for n in graph.nodes
    )


def needed_widths(nets: Sequence[MaskedNetwork]) -> dict[tuple[str, ...], int]:
    """Per compactable group of layers (a coupled group shares its channels), the largest number
    of units alive in any of ``nets``; groups at full width, whose channels reach an op that
    channel flow does not understand, or whose tails hold state other than per-unit BatchNorm /
    PReLU tensors are left out. Networks with dropout are not compacted at all: each network
    draws its masks at its own full width (``training.lockstep.StackedDropout``), which a
    compacted layer would not have."""
    first = nets[0]
    flow = first.flow
    widths: dict[tuple[str, ...], int] = {}
    if has_dropout(first.net):
        return widths
    for group in flow.groups():
        if flow.barrier_reasons(group[0]) or any(
            _unsliceable_tail_state(first, x) for x in group
        ):
            continue
        width = max(int(_alive_union(net, group).sum()) for net in nets)
        if width < first.widths[group[0]]:
            widths[group] = width
    return widths


def plan_for(net: MaskedNetwork, widths: dict[tuple[str, ...], int]) -> dict[str, torch.Tensor]:
    """The original unit indices each compacted layer of ``net`` keeps: its alive units (alive in
    any layer of a coupled group), padded with dead ones up to ``widths``, in index order."""
    plan = {}
    for group, width in widths.items():
        union = _alive_union(net, group)
        alive = int(union.sum())
        if alive > width:
            raise ValueError(f"{group}: {alive} units alive, more than the width {width}")
        dead = (~union).nonzero().flatten()
        index = torch.cat([union.nonzero().flatten(), dead[: width - alive]]).sort().values
        for layer in group:
            plan[layer] = index
    return plan


def compaction_plan(nets: Sequence[MaskedNetwork]) -> list[dict[str, torch.Tensor]]:
    """Per network, the original unit indices each compactable layer keeps, all networks padded
    to the same widths (the largest alive count in the batch)."""
    widths = needed_widths(nets)
    return [plan_for(net, widths) for net in nets]


def _has_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def _per_unit_tail(module: nn.Module) -> tuple[str, ...] | None:
    """The per-unit tensors (dim 0) of a tail module that compaction slices with its layer, ()
    for a module whose state is not per unit (PReLU with one slope), None if it cannot."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return ("weight", "bias", "running_mean", "running_var")
    if isinstance(module, nn.PReLU):
        return ("weight",) if module.num_parameters > 1 else ()
    return None


def _tail_modules(masked: MaskedNetwork, layer: str) -> list[str]:
    """Names of the stateful modules in ``layer``'s tail (between the layer and its mask)."""
    out = []
    for node in masked.flow.tails[layer][1:]:
        if node.op == "call_module" and _has_state(masked.net.get_submodule(str(node.target))):
            out.append(str(node.target))
    return out


def _unsliceable_tail_state(masked: MaskedNetwork, layer: str) -> bool:
    return any(
        _per_unit_tail(masked.net.get_submodule(name)) is None
        for name in _tail_modules(masked, layer)
    )


def _input_index(masked: MaskedNetwork, plan: dict[str, torch.Tensor], module: str):
    space = masked.flow.space_of.get(module)
    if space is None or not any(x in plan for x in space.layers()):
        return None
    keep = {
        x: plan[x].tolist() if x in plan else list(range(masked.widths[x])) for x in space.layers()
    }
    return torch.tensor(space.input_index(keep), dtype=torch.long)


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
    mask_names = _mask_module_names(masked)
    for layer, index in plan.items():
        module = net.get_submodule(layer)
        _take(module, "weight", 0, index)
        _take(module, "bias", 0, index)
        if isinstance(module, nn.Linear):
            module.out_features = len(index)
        else:
            module.out_channels = len(index)
        _take(net.get_submodule(mask_names[layer]), "mask", 0, index)
        for name in _tail_modules(masked, layer):
            tail = net.get_submodule(name)
            for tensor in _per_unit_tail(tail) or ():
                _take(tail, tensor, 0, index)
            if isinstance(tail, nn.modules.batchnorm._BatchNorm):
                tail.num_features = len(index)
            elif isinstance(tail, nn.PReLU) and tail.num_parameters > 1:
                tail.num_parameters = len(index)
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
    """Scatter the weights of a ``compact_copy`` back into the full-width ``masked`` network:
    sliced layers and their tails' per-unit tensors (BatchNorm's affine parameters and running
    statistics) at the kept units, every other tensor whole. A dropped unit left out of the plan
    keeps its BatchNorm running statistics (a separate run would update them from the dropped
    unit's pre-mask output, which its mask zeroes: they never reach any output)."""
    sliced_tails = {name: plan[x] for x in plan for name in _tail_modules(masked, x)}
    masks = set(_mask_module_names(masked).values())
    for name, module in masked.net.named_modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            if name in masks or not _has_state(module):
                continue
            small = compact.get_submodule(name)
            per_unit = _per_unit_tail(module) or () if name in sliced_tails else ()
            for tensor_name, tensor in [*module.named_parameters(recurse=False),
                                        *module.named_buffers(recurse=False)]:
                if tensor_name in per_unit:
                    tensor[sliced_tails[name].to(tensor.device)] = getattr(small, tensor_name)
                else:  # whole: num_batches_tracked, a BatchNorm nothing compacts, PReLU(1)
                    tensor.copy_(getattr(small, tensor_name))
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
class _ActivationTaps:
    """Running sums of post-activation statistics for K stacked networks, fed by taps on their
    UnitMask modules: per unit, |spatial mean| summed over samples and the count of exact zeros."""

    def __init__(self, nets: Sequence[MaskedNetwork], stacked: StackedNetwork, zeros_needed: bool):
        device = next(stacked.parameters()).device
        self.names = _mask_module_names(nets[0])
        widths = {x: stacked.ops[_op_key(n)].mask.shape[1] for x, n in self.names.items()}
        k = stacked.k
        self.sums = {x: torch.zeros(k, w, dtype=torch.float64, device=device) for x, w in widths.items()}
        self.zeros = {x: torch.zeros(k, w, dtype=torch.float64, device=device) for x, w in widths.items()}
        self.positions: dict[str, int] = {}
        self.zeros_needed = zeros_needed
        self.taps = {name: self._tap(layer) for layer, name in self.names.items()}

    def _tap(self, layer: str):
        def record(out: torch.Tensor) -> None:  # (K, N, C, *spatial), possibly a strided view
            spatial = tuple(range(3, out.dim()))
            mean = out.mean(spatial) if spatial else out
            self.sums[layer] += mean.abs().sum(1).double()
            if self.zeros_needed:
                self.zeros[layer] += (out == 0).sum((1, *spatial)).double()
            self.positions[layer] = math.prod(out.shape[3:])

        return record

    def stats(self, j: int, net: MaskedNetwork, plan: dict[str, torch.Tensor], n: int) -> ActivationStats:
        """Network ``j``'s statistics over ``n`` samples, at its full width (dropped units score as
        a masked unit does: |a| = 0, all zeros)."""
        mean_abs, apoz = {}, {}
        for layer in self.names:
            m = (self.sums[layer][j] / max(n, 1)).float().cpu()
            z = (self.zeros[layer][j] / max(n * self.positions.get(layer, 1), 1)).float().cpu()
            if layer in plan:
                full_m, full_z = torch.zeros(net.widths[layer]), torch.ones(net.widths[layer])
                full_m[plan[layer]], full_z[plan[layer]] = m, z
                m, z = full_m, full_z
            mean_abs[layer], apoz[layer] = m, z
        return ActivationStats(mean_abs, apoz, n)


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
    graph: fx.Graph | None = None,
) -> list[ActivationStats]:
    """``importance.activation_stats`` for K networks in one stacked pass over ``x``.

    ``modules``/``plans``: compact copies to run instead of the networks themselves, and how to
    map their units back. ``zeros_needed=False`` skips counting zeros (``apoz`` is then 0).
    ``graph``: ``trace_stackable`` of the modules, if known.
    """
    if samples is not None:
        x = x[:samples]
    n = len(x)
    modules = list(modules) if modules is not None else [net.net for net in nets]
    plans = list(plans) if plans is not None else [{} for _ in nets]
    stacked = StackedNetwork(modules, graph).eval()
    device = next(stacked.parameters()).device
    taps = _ActivationTaps(nets, stacked, zeros_needed)
    chunk = eval_chunk(
        stacked.k, stacked.elements_per_sample(x[:1].to(device)), batch_size, device
    )
    for i in range(0, n, chunk):
        stacked(x[i : i + chunk].to(device), "shared", taps=taps.taps)
    return [taps.stats(j, net, plan, n) for j, (net, plan) in enumerate(zip(nets, plans, strict=True))]


def _op_key(name: str) -> str:
    return name.replace(".", "__")


def measure_splits(
    nets: Sequence[MaskedNetwork],
    data: DatasetSplits,
    *,
    modules: Sequence[nn.Module] | None = None,
    plans: Sequence[dict[str, torch.Tensor]] | None = None,
    stats_for: Sequence[int] = (),
    zeros_needed: bool = False,
    graph: fx.Graph | None = None,
) -> tuple[list[dict[str, float]], dict[int, ActivationStats]]:
    """What ``training.split_metrics`` gives for each network (loss and accuracy on every split),
    in one stacked pass per split; the pass over the training split also collects the activation
    statistics of the networks at positions ``stats_for`` (over every training sample).
    ``graph``: ``trace_stackable`` of the modules, if known."""
    modules = list(modules) if modules is not None else [net.net for net in nets]
    plans = list(plans) if plans is not None else [{} for _ in nets]
    stacked = StackedNetwork(modules, graph).eval()
    device = next(stacked.parameters()).device
    per_sample = stacked.elements_per_sample(data.x_train[:1].to(device))
    chunk = eval_chunk(stacked.k, per_sample, 2048, device)
    taps = _ActivationTaps(nets, stacked, zeros_needed) if stats_for else None
    metrics: list[dict[str, float]] = [{} for _ in nets]
    for split in ("train", "val", "test"):
        x, y = data.split(split)
        tapped = taps.taps if taps is not None and split == "train" else None
        for j, (loss, acc) in enumerate(evaluate_lockstep(stacked, x, y, chunk, taps=tapped)):
            metrics[j][f"{split}_loss"], metrics[j][f"{split}_acc"] = loss, acc
    n = len(data.y_train)
    stats = {j: taps.stats(j, nets[j], plans[j], n) for j in stats_for} if taps else {}
    return metrics, stats


# ------------------------------------------------------------------------------ the driver
def lockstep_unsupported_reason(model: str | nn.Module, data: DatasetSplits) -> str | None:
    """Why runs of ``model`` (a registry spec, or a module, left untouched) cannot be batched
    (None if they can). Some ops refuse only when they see their input, so one sample goes
    through the stack in every input layout and must give the model's own logits."""
    if isinstance(model, nn.Module):
        model = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        masked = DropNet(model, data, DropNetConfig(), seed=0).masked
    if masked.mode_dependent:
        return "the model's forward differs between train and eval mode (two traced graphs)"
    if not masked.plain_output:
        return "the model does not return a single tensor of logits"
    net = masked.net.eval()
    x = data.x_train[:1]
    try:
        stacked = StackedNetwork([net]).eval()
        with torch.no_grad():
            want = net(x)
            outs = {lay: stacked(t, lay)[0] for lay, t in
                    (("shared", x), ("kb", x.unsqueeze(0)), ("bk", x.unsqueeze(1)))}
    except LockstepUnsupported as exc:
        return str(exc)
    except RuntimeError as exc:  # an op the engine batches wrongly for this model
        return f"the stacked forward fails ({type(exc).__name__}: {exc})"
    for layout, got in outs.items():
        if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
            return f"the stacked forward ({layout} input) does not reproduce the model's logits"
    return None


def run_dropnet_lockstep(
    model: str,
    data: DatasetSplits,
    runs: Sequence[tuple[DropNetConfig, int]],
    *,
    compact: bool | None = None,
    order_seed: int | None = None,
    group_size: int | None = None,
    step_bytes: int | None = None,
    on_round: Callable[[DropNet, dict], None] | None = None,
    on_finish: Callable[[int, DropNetResult], None] | None = None,
    train_fn: TrainFn | None = None,
) -> list[DropNetResult]:
    """Run every ``(config, seed)`` of ``model`` (a registry spec) to its stop rule, as
    ``DropNet(model, data, config, seed=seed).run()`` would, training the runs as batches.

    Runs with the same training settings form a batch (at most ``group_size`` runs; default all).
    Each round, a batch trains in sub-batches whose largest activation in a step stays within
    ``step_bytes`` (default: 16 MiB on CPU, where activations that stay in cache train faster;
    no limit on GPU), runs of similar widths together. ``compact`` (default: on unless weight decay
    is on) skips units dropped in every network of a sub-batch; ``compact=True`` with weight decay
    is a ``ConfigError`` (decay moves dropped weights, which a compacted batch never computes).
    ``order_seed``: give every run the data order of a run with that seed (one shared order;
    the first layer becomes one wide product) instead of its own. ``on_round(run, row)`` follows
    each recorded round, ``on_finish(i, result)`` each finished run (``i`` indexes ``runs``).
    Results come back in the order of ``runs``. Oracle runs and architectures the engine cannot
    batch run one after another (``LockstepFallback`` warning). If some runs diverge, the others
    finish (batched or not) and a ``TrainingDiverged`` error naming them is raised at the end.
    With a training hook (``train_fn``, which trains each network its own way) or augmented
    training (``augment``, drawn per network), runs are not batched either (same warning): the
    runs then are exactly ``DropNet(model, data, config, seed=seed, train_fn=train_fn).run()``.
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
    why_alone = None
    if train_fn is not None and batched:
        why_alone = "a training hook (train_fn) trains each network itself"
    elif any(runs[i][0].train.augment for i in batched):
        why_alone = "augmented training (augment=true) is not batched"
    if why_alone is not None:
        warnings.warn(
            f"lockstep disabled: {why_alone}; running {len(batched)} runs one after another",
            LockstepFallback, stacklevel=2,
        )
        alone, batched = sorted(alone + batched), []
    if compact:
        decayed = [i for i in batched if runs[i][0].train.weight_decay > 0]
        if decayed:
            cfg, seed = runs[decayed[0]]
            raise ConfigError(
                f"compact=True cannot be used with weight decay (weight_decay="
                f"{cfg.train.weight_decay} in the {cfg.metric} run with seed {seed}): decay moves "
                "the weights of dropped units in a separate run, and a compacted batch does not "
                "compute them; leave compact=None (off with weight decay) or set weight_decay=0"
            )
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
            _run_group(model, data, runs, chunk, compact, order_seed, on_round, done, failures,
                       step_bytes)
    for i in alone:
        cfg, seed = runs[i]
        try:
            result = DropNet(model, data, cfg, seed=seed, train_fn=train_fn).run(on_round)
        except TrainingDiverged as exc:  # the others go on, as in a batch
            failures[i] = str(exc)
            continue
        done(i, result)
    if failures:
        first = min(failures)
        raise TrainingDiverged(
            f"{len(failures)} DropNet run(s) diverged, e.g. {runs[first][0].metric} seed "
            f"{runs[first][1]}: {failures[first]}"
        )
    return [results[i] for i in range(len(runs))]


def _subgroups(
    group: list[DropNet], elements: int, batch_size: int, budget: int | None,
    compact: bool,
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
    step_bytes: int | None,
) -> None:
    train_cfg = runs[members[0]][0].train
    device = resolve_device(train_cfg.device)
    use_compact = compact if compact is not None else train_cfg.weight_decay == 0
    if step_bytes is None and device.type == "cpu":
        step_bytes = CPU_STEP_BYTES
    nets = {i: DropNet(model, data, runs[i][0], seed=runs[i][1]) for i in members}
    first = nets[members[0]].masked
    elements = StackedNetwork([first.net]).elements_per_sample(data.x_train[:1])
    active = list(members)
    scores: dict[DropNet, dict[str, torch.Tensor]] = {}  # computed in the batch, used by prune_step
    while active:
        group = [nets[i] for i in active]
        for net in group:
            net.masked.to(device)
        for sub in _subgroups(group, elements, train_cfg.batch_size, step_bytes, use_compact):
            _round(
                [group[p] for p in sub], [active[p] for p in sub], data, use_compact, order_seed,
                on_round, failures, scores,
            )
        still = []
        for i, net in zip(active, group, strict=True):
            if i in failures:
                continue
            if net.stop_reason is not None or net.prune_step(scores.pop(net, None)) == 0:
                done(i, net.result())
            else:
                still.append(i)
        active = still


def _round(
    group: list[DropNet],
    indices: list[int],
    data: DatasetSplits,
    use_compact: bool,
    order_seed: int | None,
    on_round: Callable[[DropNet, dict], None] | None,
    failures: dict[int, str],
    scores: dict[DropNet, dict[str, torch.Tensor]],
) -> None:
    """One round of a batch of runs: train together, measure, record, score (not prune)."""
    train_cfg = group[0].config.train
    plans = compaction_plan([n.masked for n in group]) if use_compact else [{}] * len(group)
    modules = [
        compact_copy(n.masked, p) if p else n.masked.net for n, p in zip(group, plans, strict=True)
    ]
    graph = trace_stackable(modules)  # once for training, measuring and scoring
    seeds = [(n.seed if order_seed is None else order_seed) * 100_003 + n.round for n in group]
    start = time.perf_counter()
    try:
        trained = train_lockstep(modules, data, train_cfg, seeds=seeds, graph=graph)
    except LockstepDiverged as exc:
        trained = exc.results
        for pos, message in exc.failed.items():
            failures[indices[pos]] = message
    for net, module, plan in zip(group, modules, plans, strict=True):
        if plan:
            expand_into(module, net.masked, plan)
    seconds = (time.perf_counter() - start) / len(group)
    ok = [pos for pos, r in enumerate(trained) if r is not None]
    if ok:
        _measure_record_score(
            [group[p] for p in ok], [modules[p] for p in ok], [plans[p] for p in ok],
            [trained[p] for p in ok], seconds, data, on_round, graph, scores,
        )


def _measure_record_score(
    group: list[DropNet],
    modules: list[nn.Module],
    plans: list[dict[str, torch.Tensor]],
    trained: list[TrainResult],
    seconds: float,
    data: DatasetSplits,
    on_round: Callable[[DropNet, dict], None] | None,
    graph: fx.Graph | None,
    scores: dict[DropNet, dict[str, torch.Tensor]],
) -> None:
    """Measure every split of every network in one stacked pass per split (the training-split
    pass also scores the runs that score by activations over all training samples), record each
    run's round, and leave scores for the runs that go on (those scoring on their first
    ``score_samples`` rows get one more stacked pass per sample count)."""
    scored = [
        j for j, net in enumerate(group)
        if net.metric.criterion in BATCHED_CRITERIA and net.config.score_samples is None
    ]
    metrics, stats = measure_splits(
        [net.masked for net in group], data, modules=modules, plans=plans, stats_for=scored,
        zeros_needed=any(group[j].metric.criterion == "apoz" for j in scored), graph=graph,
    )
    wanted: dict[int, list[int]] = {}  # score_samples -> positions
    for j, net in enumerate(group):
        row = net.record(trained[j], seconds, metrics[j])
        if on_round is not None:
            on_round(net, row)
        if net.stop_reason is not None or net.metric.criterion not in BATCHED_CRITERIA:
            continue
        if j in stats:
            scores[net] = scores_from_stats(net.metric.criterion, stats[j])
        else:
            wanted.setdefault(net.config.score_samples, []).append(j)
    for samples, chosen in wanted.items():
        chosen_stats = lockstep_activation_stats(
            [group[j].masked for j in chosen], data.x_train,
            modules=[modules[j] for j in chosen], plans=[plans[j] for j in chosen],
            samples=samples, batch_size=group[chosen[0]].config.train.eval_batch_size,
            zeros_needed=any(group[j].metric.criterion == "apoz" for j in chosen), graph=graph,
        )
        for j, st in zip(chosen, chosen_stats, strict=True):
            scores[group[j]] = scores_from_stats(group[j].metric.criterion, st)
