"""The stacked engine's pruning side: many DropNet runs of one architecture as one batched model.

``pruning.driver`` trains a batch of runs with ``training.lockstep``; this module gives it what
is specific to pruning, so that a batch of K runs computes what K separate runs compute, up to
floating-point reassociation in batched kernels (docs/lockstep.md):

- ``StackedUnitMask``: the K runs' masks on stacked activations;
- compaction: units that every network of a batch has dropped are not computed at all. Each
  round the layers shrink to the largest number of units still alive in any network of the batch
  (dead units pad the others; they output exactly zero and get zero gradients), and the trained
  weights are scattered back into the full-width networks afterwards. Dropped units never change
  in a separate run either (their gradients are exactly zero), so this changes only the order of
  floating-point sums. It is off by default when weight decay is on (decay does move dropped
  weights);
- measuring: every split for all runs in one stacked pass per split, in cache-sized chunks; the
  pass over the training split also collects the activation statistics the runs score by;
- ``masked_unsupported_reason``: whether a model can be stacked at all.

BatchNorm is batched and compacted (its per-unit tensors are sliced with their layer); models with
dropout are batched (per-network generators), not compacted.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import fx, nn
from torch.nn import functional as F

from ..data.splits import DatasetSplits
from ..training.fused_chain import Stage
from ..training.lockstep import (
    LockstepUnsupported,
    Stacked,
    StackedNetwork,
    StackedOp,
    eval_chunk,
    evaluate_lockstep,
    register_stacker,
)
from ..training.stacked_recurrent import StackedRecurrent
from .dropnet import DropNet, DropNetConfig
from .importance import ActivationStats
from .masks import MaskedNetwork, UnitMask, norm_kind, select_output
from .recurrent import RecurrentUnits, resolve

_DROPOUT_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
_DROPOUT_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d}

# Criteria whose scores need a pass over the training data (batched here); the others are cheap.
BATCHED_CRITERIA = ("activation", "negative_activation", "apoz")
# On CPU, a training step's largest activation (all networks of a sub-batch together) should stay
# in cache: measured on Model B / CIFAR-10, two networks per step (2 x 8 MiB) train 1.4x faster
# than separate runs, four (33 MiB) no faster.
CPU_STEP_BYTES = 16 * 2**20


class LockstepFallback(UserWarning):  # raised by pruning.driver
    """Some runs were not batched and ran one after another (the message says why)."""


@register_stacker(UnitMask)
class StackedUnitMask(StackedOp):
    """K masks (K, units) multiplying (K, B, units, ...) or (B, K, units, ...) activations."""

    def __init__(self, modules: Sequence[nn.Module]):
        super().__init__(modules, ("mask",))
        self.dim = getattr(modules[0], "dim", 1)

    def run(self, x: Stacked) -> Stacked:
        k, units = self.mask.shape
        t, layout = (x.t.unsqueeze(1), "bk") if x.layout == "shared" else (x.t, x.layout)
        # Units on dim 1 of each network's tensor (channels), or last (a Linear's units, also
        # when it runs per time step on (N, T, F)).
        shape = [1] * t.dim()
        shape[0 if layout == "kb" else 1] = k
        shape[2 if self.dim == 1 else -1] = units
        return Stacked(t * self.mask.view(shape), layout)

    def fused_stage(self) -> Stage | None:
        return Stage("scale", self.mask)


@register_stacker(RecurrentUnits)
class StackedRecurrentUnits(StackedRecurrent):
    """K masked recurrent modules (``RecurrentUnits``): their weights and their layers' unit
    masks, which the activation taps of the masks see through ``tapped_modules``."""

    def __init__(self, wrappers: Sequence[nn.Module]):
        super().__init__(
            [w.rnn for w in wrappers], [[m.mask for m in w.unit_masks] for w in wrappers],
            [m.score for m in wrappers[0].unit_masks],
        )

    def owned_modules(self, module: nn.Module) -> list[nn.Module]:
        return [module.rnn, *module.unit_masks]

    def tapped_modules(self, module: nn.Module) -> list[nn.Module]:
        return list(module.unit_masks)

    @torch.no_grad()
    def write_back(self, module: nn.Module, position: int) -> None:
        super().write_back(module.rnn, position)
        for j, unit_mask in enumerate(module.unit_masks):
            unit_mask.mask.copy_(self.unit_mask[position, j])


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
    # compact_copy slices the input side of Linear and Conv2d consumers only (not, say, a GRU's
    # weight_ih fed by a per-token Linear)
    fed_elsewhere = {
        x for name, space in flow.space_of.items()
        if not isinstance(first.net.get_submodule(name), (nn.Linear, nn.Conv2d))
        for x in space.layers()
    }
    for group in flow.groups():
        if flow.barrier_reasons(group[0]) or any(
            _unsliceable_tail_state(first, x) or resolve(first.net, x) is not None
            or x in fed_elsewhere for x in group
        ):  # recurrent layers are not compacted: all layers of a module share one width
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
    """Whether compaction cannot slice the tail with its layer: state that is not per unit, or
    a norm other than BatchNorm (its sizes are attributes, and some mix units)."""
    for node in masked.flow.tails[layer][1:]:
        if node.op != "call_module":
            continue
        module = masked.net.get_submodule(str(node.target))
        if (_has_state(module) or norm_kind(module, True) is not None) and (
            _per_unit_tail(module) is None
        ):
            return True
    return False


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
        widths = {  # a recurrent layer's mask lives inside its module's op, never compacted
            x: stacked.ops[_op_key(n)].mask.shape[1] if _op_key(n) in stacked.ops
            else nets[0].widths[x] for x, n in self.names.items()
        }
        k = stacked.k
        self.sums = {x: torch.zeros(k, w, dtype=torch.float64, device=device) for x, w in widths.items()}
        self.zeros = {x: torch.zeros(k, w, dtype=torch.float64, device=device) for x, w in widths.items()}
        self.positions: dict[str, int] = {}
        self.zeros_needed = zeros_needed
        masks = nets[0].mask_modules()
        # A per-token Linear's mask sees (K, N, T, units); a recurrent op taps (K, N, units, T).
        units_last = {
            layer for layer in self.names
            if getattr(masks[layer], "dim", 1) == -1 and resolve(nets[0].net, layer) is None
        }
        self.taps = {
            name: self._tap(layer, layer in units_last) for layer, name in self.names.items()
        }

    def _tap(self, layer: str, units_last: bool):
        def record(out: torch.Tensor) -> None:  # (K, N, C, *spatial), possibly a strided view
            if units_last and out.dim() > 3:
                out = out.movedim(-1, 2)
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
# Recurrent models are stacked exactly (``training.stacked_recurrent``), but on CPU PyTorch's own
# LSTM kernel trains one network faster than a batch of K runs its share: a batched lstm-a step
# ran 0.61x (K=1), 0.98x (K=6), 0.75x (K=30) as fast (BENCHMARKS.md, "Lockstep kernels"), as
# the batched time loop saves only dispatch overhead that PyTorch's C++ loop does not have. So the driver runs them
# one after another on CPU unless this is set. On CUDA, where each of a network's time steps
# is a few kernel launches that batching shares, batches of RECURRENT_CUDA_MIN_RUNS or more are
# stacked (an estimate: no GPU has measured it yet; benchmarks/gpu_check.py checks equivalence).
BATCH_RECURRENT_ON_CPU = False
RECURRENT_CUDA_MIN_RUNS = 4


def separate_is_faster(masked: MaskedNetwork, device: torch.device, runs: int = 1) -> str | None:
    """Why ``runs`` separate runs of ``masked`` are faster than one stacked batch on ``device``
    (None when the stacked engine is the faster one)."""
    recurrent = [x for x in masked.layers if resolve(masked.net, x) is not None]
    if not recurrent:
        return None
    if torch.device(device).type == "cpu":
        if BATCH_RECURRENT_ON_CPU:
            return None
        return f"recurrent layers ({recurrent[0]}) train faster in PyTorch's own kernel on CPU"
    if runs < RECURRENT_CUDA_MIN_RUNS:
        return f"fewer than {RECURRENT_CUDA_MIN_RUNS} runs of a recurrent model"
    return None


def lockstep_unsupported_reason(model: str | nn.Module, data: DatasetSplits) -> str | None:
    """Why runs of ``model`` (a registry spec, or a module, left untouched) cannot be batched
    (None if they can)."""
    if isinstance(model, nn.Module):
        model = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        masked = DropNet(model, data, DropNetConfig(), seed=0).masked
    return masked_unsupported_reason(masked, data.x_train[:2])


def masked_unsupported_reason(masked: MaskedNetwork, x: torch.Tensor) -> str | None:
    """Why the stacked engine cannot batch ``masked`` (None if it can). Some ops refuse only when
    they see their input, so sample ``x`` goes through a stack of one in every input layout and
    must give the model's own logits."""
    if masked.mode_dependent:
        return "the model's forward differs between train and eval mode (two traced graphs)"
    if not masked.plain_output and masked.output is not None:
        return (
            f"the model's logits are its output {masked.output!r} among several; lockstep "
            "takes the first tensor it returns"
        )
    net = copy.deepcopy(masked.net).cpu().eval()
    x = x[:2].cpu()  # two samples: a forward may squeeze a batch of one
    try:
        stacked = StackedNetwork([net]).eval()
        with torch.no_grad():
            want = select_output(net(x))
            outs = {lay: stacked(t, lay)[0] for lay, t in
                    (("shared", x), ("kb", x.unsqueeze(0)), ("bk", x.unsqueeze(1)))}
    except LockstepUnsupported as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - an op the engine batches wrongly for this model
        return f"the stacked forward fails ({type(exc).__name__}: {exc})"
    for layout, got in outs.items():
        if got.shape != want.shape or not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
            return f"the stacked forward ({layout} input) does not reproduce the model's logits"
    return None
