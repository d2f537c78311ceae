"""Train K networks of one architecture as one batched computation ("lockstep").

Small networks waste a machine: a Model A step at batch 32 costs far more in per-step overhead
(Python, autograd, the optimizer) than in arithmetic, and on a GPU it leaves the device idle.
``StackedNetwork`` reads the traced graph of K structurally identical models, stacks each layer's
tensors along a new first dimension (``(K, ...)``) and runs all K as one batched model: linear
layers as batched matrix products (computed feature-major, y^T = W x^T, the fast form on CPU for
any width), convolutions as one grouped convolution (channels-last on CPU), pointwise ops and
pooling on the stacked activations.

``train_lockstep`` (``LockstepTrainer``) is ``trainer.train`` for K models at once, network by
network the same thing: each model keeps its own data order (its own seeded generator; when all
seeds are equal the networks share one order and read one shared input), its own slice of the
optimizer state (elementwise optimizers on stacked parameters are per-network identical to
separate ones, because each network's gradient is that of its own mean loss), and its own early
stopping and restore-best; a network that stops is removed from the stack (parameters and
optimizer state are sliced), so it costs nothing afterwards.

The results equal K calls of ``train`` up to floating-point reassociation (batched kernels sum in
another order): see docs/lockstep.md for the tolerances the tests hold. Supported: Linear,
Conv2d (groups=1, zero padding), BatchNorm1d/2d/3d (one BatchNorm over the K*C channels of the
stacked activation: per-network statistics are per-channel statistics), dropout (each network
draws its own masks from its own generator, seeded per network, at its own activation shape),
pointwise activations, pooling, Flatten, additions and other binary ops (``alpha=`` included);
more module types can be registered with ``register_stacker``. Every model must configure each
module alike (stride, slopes, ...), and a forward must not differ between train and eval mode
other than in functional dropouts' ``training`` flag. Learning-rate schedules are followed (every
network of a batch is at the same epoch and step); augmentation (``augment``) is refused.
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import fx, nn
from torch.nn import functional as F

from ..data.splits import DatasetSplits
from ..errors import ConfigError, TrainingDiverged
from .config import TrainConfig
from .fused_chain import FusedChain, Stage
from .progress import progress_bar
from .schedules import learning_rate, schedule_is_constant, set_learning_rate
from .trainer import EpochRecord, PlainSGD, TrainResult, fast_optimizer, resolve_device

LAYOUTS = ("shared", "kb", "bk")
# Bytes that stacked evaluation may spend on one activation tensor (the chunk size follows):
# measured on CPU, conv activations that stay in cache evaluate 2x faster than batches of 2048.
EVAL_MEMORY_BUDGET = 8 * 2**20
GPU_EVAL_MEMORY_BUDGET = 512 * 2**20


class LockstepUnsupported(ConfigError):
    """The model has an operation that the lockstep engine cannot batch exactly."""


class LockstepDiverged(TrainingDiverged):
    """Some networks diverged; the others finished. ``results[i]`` is None for a failed network
    and ``failed[i]`` says why."""

    def __init__(self, message: str, results: list[TrainResult | None], failed: dict[int, str]):
        super().__init__(message)
        self.results = results
        self.failed = failed


@dataclass
class Stacked:
    """An activation of K networks: ``shared`` (B, ...) is the same for all K (the input before any
    parameter), ``kb`` is (K, B, ...), ``bk`` is (B, K, ...) (what grouped convolutions read)."""

    t: torch.Tensor
    layout: str

    def kb(self, k: int) -> torch.Tensor:
        """The (K, B, ...) view (an expanded view for a shared tensor)."""
        if self.layout == "kb":
            return self.t
        if self.layout == "bk":
            return self.t.transpose(0, 1)
        return self.t.unsqueeze(0).expand(k, *self.t.shape)

    def bk(self, k: int) -> torch.Tensor:
        if self.layout == "bk":
            return self.t
        if self.layout == "kb":
            return self.t.transpose(0, 1)
        return self.t.unsqueeze(1).expand(self.t.shape[0], k, *self.t.shape[1:])


class StackedOp(nn.Module):
    """K copies of one module, their tensors (``names``) stacked along a new first dimension."""

    def __init__(self, modules: Sequence[nn.Module], names: Sequence[str] = ()):
        super().__init__()
        self.tensor_names: list[str] = []
        for name in names:
            first = getattr(modules[0], name, None)
            if first is None:
                setattr(self, name, None)
                continue
            data = torch.stack([getattr(m, name).detach() for m in modules]).contiguous()
            if isinstance(first, nn.Parameter):
                self.register_parameter(name, nn.Parameter(data, requires_grad=first.requires_grad))
            else:
                self.register_buffer(name, data)
            self.tensor_names.append(name)

    def run(self, x: Stacked) -> Stacked:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def fused_stage(self) -> Stage | None:
        """What this op is to ``FusedChain`` (None: not a link it can train by hand)."""
        return None

    def select(self, keep: torch.Tensor) -> dict[nn.Parameter, nn.Parameter]:
        """Keep only the networks at positions ``keep``; returns old -> new parameters."""
        mapping = {}
        for name in self.tensor_names:
            old = getattr(self, name)
            data = old.detach().index_select(0, keep.to(old.device))
            if isinstance(old, nn.Parameter):
                new = nn.Parameter(data, requires_grad=old.requires_grad)
                setattr(self, name, new)
                mapping[old] = new
            else:
                setattr(self, name, data)
        return mapping

    @torch.no_grad()
    def write_back(self, module: nn.Module, position: int) -> None:
        for name in self.tensor_names:
            getattr(module, name).copy_(getattr(self, name)[position])


_STACKERS: dict[type, Callable[[Sequence[nn.Module]], StackedOp]] = {}


def register_stacker(module_type: type):
    """Decorator: ``factory(modules) -> StackedOp`` batches K modules of ``module_type``; the
    tracer treats that type as a leaf."""

    def wrap(factory):
        _STACKERS[module_type] = factory
        return factory

    return wrap


def _stacker_for(module: nn.Module):
    for cls in type(module).__mro__:
        if cls in _STACKERS:
            return _STACKERS[cls]
    return None


@register_stacker(nn.Linear)
class StackedLinear(StackedOp):
    """Weights (K, out, in): one batched product for K networks (a shared input is broadcast
    without a copy)."""

    def __init__(self, modules: Sequence[nn.Module]):
        super().__init__(modules, ("weight", "bias"))

    def run(self, x: Stacked) -> Stacked:
        t = x.kb(self.weight.shape[0])
        if t.dim() != 3:
            raise LockstepUnsupported("lockstep Linear layers need (N, features) inputs")
        xt = t.transpose(1, 2)
        if self.bias is None:
            yt = torch.bmm(self.weight, xt)
        else:
            yt = torch.baddbmm(self.bias.unsqueeze(2), self.weight, xt)
        return Stacked(yt.transpose(1, 2), "kb")

    def fused_stage(self) -> Stage | None:
        return Stage("linear", self.weight, self.bias)


@register_stacker(nn.Conv2d)
class StackedConv2d(StackedOp):
    """Weights (K, out, in, kh, kw) run as one convolution with ``groups=K`` on (B, K*C, H, W)."""

    channels_last: bool | None = None  # None: on CPU only (oneDNN's grouped kernels want it)

    def __init__(self, modules: Sequence[nn.Module]):
        m = modules[0]
        if m.groups != 1 or m.padding_mode != "zeros":
            raise LockstepUnsupported(
                f"lockstep supports Conv2d with groups=1 and zero padding, got groups={m.groups}, "
                f"padding_mode={m.padding_mode!r}"
            )
        super().__init__(modules, ("weight", "bias"))
        self.stride, self.padding, self.dilation = m.stride, m.padding, m.dilation

    def run(self, x: Stacked) -> Stacked:
        k = self.weight.shape[0]
        w = self.weight.flatten(0, 1)
        b = None if self.bias is None else self.bias.flatten()
        shared = x.layout == "shared"
        t = x.t if shared else x.bk(k)
        if t.dim() != (4 if shared else 5):
            raise LockstepUnsupported("lockstep Conv2d layers need (N, C, H, W) inputs")
        if not shared:
            t = t.reshape(t.shape[0], -1, *t.shape[3:])
        cl = self.channels_last if self.channels_last is not None else t.device.type == "cpu"
        if cl:
            t = t.contiguous(memory_format=torch.channels_last)
        y = F.conv2d(t, w, b, self.stride, self.padding, self.dilation, 1 if shared else k)
        return Stacked(y.view(y.shape[0], k, -1, *y.shape[2:]), "bk")


def _per_channel(fn: Callable[[torch.Tensor], torch.Tensor], x: Stacked) -> Stacked:
    """Apply ``fn``, written for one network's (N, C, ...) tensors and acting on each sample and
    channel alone (pooling), to K stacked networks: (K, B, C, ...) runs as (K*B, C, ...) and
    (B, K, C, ...) as (B, K*C, ...), both views of the same memory (channels-last included)."""
    if x.layout == "shared":
        return Stacked(fn(x.t), "shared")
    a, b, c = x.t.shape[:3]
    if x.layout == "kb":
        y = fn(x.t.reshape(a * b, *x.t.shape[2:]))
        return Stacked(y.view(a, b, *y.shape[1:]), "kb")
    y = fn(x.t.reshape(a, b * c, *x.t.shape[3:]))
    return Stacked(y.view(a, b, c, *y.shape[2:]), "bk")


def _flatten_stacked(x: Stacked) -> Stacked:
    """Flatten each network's sample to (features,) in (C, H, W) order."""
    if x.layout == "shared":
        return Stacked(x.t.flatten(1), "shared")
    return Stacked(x.t.flatten(2), x.layout)


class StackedPointwise(StackedOp):
    """A parameter-free module applied element by element (activations, Identity)."""

    def __init__(self, modules: Sequence[nn.Module]):
        super().__init__(modules)
        object.__setattr__(self, "fn", modules[0])

    def run(self, x: Stacked) -> Stacked:
        return Stacked(self.fn(x.t), x.layout)

    def fused_stage(self) -> Stage | None:
        return Stage("relu") if type(self.fn) is nn.ReLU else None


class StackedPerChannel(StackedPointwise):
    """A parameter-free module acting on each sample and channel on its own (pooling)."""

    def run(self, x: Stacked) -> Stacked:
        return _per_channel(self.fn, x)


class StackedFlatten(StackedPointwise):
    def run(self, x: Stacked) -> Stacked:
        return _flatten_stacked(x)

    def fused_stage(self) -> Stage | None:
        return Stage("flatten")


_POINTWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Softplus,
    nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.Identity,
)
_PER_CHANNEL_MODULES = (
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.MaxPool1d,
    nn.AvgPool1d, nn.AdaptiveAvgPool1d,
)
for _cls in _POINTWISE_MODULES:
    register_stacker(_cls)(StackedPointwise)
for _cls in _PER_CHANNEL_MODULES:
    register_stacker(_cls)(StackedPerChannel)


@register_stacker(nn.Flatten)
def _flatten(modules: Sequence[nn.Module]) -> StackedOp:
    m = modules[0]
    if m.start_dim != 1 or m.end_dim != -1:
        raise LockstepUnsupported(f"lockstep supports Flatten(1, -1) only, got {m}")
    return StackedFlatten(modules)


# -- BatchNorm: K networks' C channels are one BatchNorm over K*C channels ---------------------
_BN_DIMS = {nn.BatchNorm1d: (2, 3), nn.BatchNorm2d: (4,), nn.BatchNorm3d: (5,)}


class StackedBatchNorm(StackedOp):
    """K BatchNorms (C channels each) as one over K*C channels of the (B, K*C, ...) view of a
    ``bk`` activation: a channel's statistics are over samples and positions only, so network
    j's channel c is channel j*C + c, with its own batch statistics, affine parameters and running
    statistics (the stacked (K, C) buffers, updated in place through their (K*C,) views).
    ``num_batches_tracked`` is (K,); with ``momentum=None`` (cumulative average) each network's
    factor is 1 / its own count."""

    def __init__(self, modules: Sequence[nn.Module]):
        m = modules[0]
        super().__init__(
            modules, ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        )
        self.eps, self.momentum = m.eps, m.momentum
        self.track_running_stats = m.track_running_stats
        self.dims = next(d for cls, d in _BN_DIMS.items() if isinstance(m, cls))
        self.kind = type(m).__name__

    def _check(self, t: torch.Tensor, stacked_dims: int) -> None:
        if t.dim() - stacked_dims not in self.dims:
            want = " or ".join(f"{d}-d" for d in self.dims)
            raise LockstepUnsupported(
                f"lockstep {self.kind} needs {want} inputs per network, got {t.dim() - stacked_dims}-d"
            )

    def run(self, x: Stacked) -> Stacked:
        stateless = not self.tensor_names
        if x.layout == "shared" and stateless:  # the same normalisation for every network
            self._check(x.t, 0)
            return Stacked(F.batch_norm(x.t, None, None, None, None, True, 0.0, self.eps), "shared")
        k = x.t.shape[0 if x.layout == "kb" else 1] if x.layout != "shared" else \
            getattr(self, self.tensor_names[0]).shape[0]
        t = x.bk(k)
        self._check(t, 1)
        b, c = t.shape[0], t.shape[2]
        # contiguous: CPU batch_norm on a channels-last tensor (what grouped convolutions write
        # on CPU) is measured ~70x less accurate (2e-4 against 3e-6 for a channel of mean 3,
        # deviation 0.05; gradients 25x), which training then amplifies
        flat = t.reshape(b, k * c, *t.shape[3:]).contiguous()
        factor = 0.0 if self.momentum is None else self.momentum
        per_network_factor = None
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                counts = self.num_batches_tracked
                if bool((counts == counts[0]).all()):
                    factor = 1.0 / float(counts[0])
                else:
                    per_network_factor = 1.0 / counts.double()
        batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        use_running = (not self.training or self.track_running_stats) and per_network_factor is None
        rm = self.running_mean.view(-1) if use_running and self.running_mean is not None else None
        rv = self.running_var.view(-1) if use_running and self.running_var is not None else None
        w = None if self.weight is None else self.weight.view(-1)
        bias = None if self.bias is None else self.bias.view(-1)
        y = F.batch_norm(flat, rm, rv, w, bias, batch_stats, factor, self.eps)
        if per_network_factor is not None:
            self._update_running(flat.detach(), per_network_factor, c)
        return Stacked(y.view(b, k, c, *y.shape[2:]), "bk")

    @torch.no_grad()
    def _update_running(self, flat: torch.Tensor, factor: torch.Tensor, c: int) -> None:
        """``momentum=None`` with networks at different counts: each network's own average."""
        dims = [0, *range(2, flat.dim())]
        mean = flat.mean(dims).view(-1, c)
        var = flat.var(dims, unbiased=True).view(-1, c)
        f = factor.to(mean.dtype).unsqueeze(1)
        if self.running_mean is not None:
            self.running_mean.mul_(1 - f).add_(f * mean)
            self.running_var.mul_(1 - f).add_(f * var)


for _cls in _BN_DIMS:
    register_stacker(_cls)(StackedBatchNorm)


# -- Dropout: each network draws its own masks from its own generator ---------------------------
def dropout_seed(seed: int) -> int:
    """The seed of a network's dropout generator, derived from its training seed (a separate
    stream from its data order, which ``seed`` itself seeds)."""
    return (int(seed) * 6364136223846793005 + 1442695040888963407) % 2**63


class DropoutGenerators:
    """One generator per network of a stack, shared by every dropout op of that network, created
    on the device of the first tensor drawn for (seeded from ``seeds``). A network's masks depend
    only on its seed and on its own activations' shapes, never on which networks share its
    batch."""

    def __init__(self, seeds: Sequence[int]):
        self.seeds = [int(s) for s in seeds]
        self._gens: dict[torch.device, list[torch.Generator]] = {}

    def reseed(self, seeds: Sequence[int]) -> None:
        self.seeds = [int(s) for s in seeds]
        self._gens = {}

    def select(self, keep: Sequence[int]) -> None:
        self.seeds = [self.seeds[i] for i in keep]
        self._gens = {d: [g[i] for i in keep] for d, g in self._gens.items()}

    def for_device(self, device: torch.device) -> list[torch.Generator]:
        if device not in self._gens:
            self._gens[device] = [
                torch.Generator(device=device).manual_seed(dropout_seed(s)) for s in self.seeds
            ]
        return self._gens[device]


class StackedDropout(StackedOp):
    """Dropout for K networks: network j's mask is drawn from network j's generator at network
    j's own activation shape (B, C, ...) (``channelwise``: (B, C, 1, ...), as Dropout1d/2d/3d),
    so it is the same mask whether the network is stacked alone or with others. ``always``: a
    functional ``F.dropout(..., training=True)``, active in eval mode too."""

    def __init__(self, modules: Sequence[nn.Module], p: float, channelwise: bool = False,
                 always: bool = False):
        super().__init__(modules)
        self.p, self.channelwise, self.always = float(p), channelwise, always
        self.generators: DropoutGenerators | None = None  # set by StackedNetwork

    def run(self, x: Stacked) -> Stacked:
        if self.p == 0 or not (self.training or self.always):
            return x
        gens = self.generators.for_device(x.t.device)
        k = len(gens)
        t = x.kb(k) if x.layout != "bk" else x.t
        dim = 0 if x.layout != "bk" else 1
        per_net = t.select(dim, 0).shape  # (B, C, ...)
        shape = (*per_net[:2], *(1,) * (len(per_net) - 2)) if self.channelwise else per_net
        if self.p == 1:
            noise = torch.zeros((), dtype=t.dtype, device=t.device)
            return Stacked(t * noise, "kb" if dim == 0 else "bk")
        masks = [
            torch.empty(shape, dtype=t.dtype, device=t.device).bernoulli_(1 - self.p, generator=g)
            for g in gens
        ]
        noise = torch.stack(masks, dim).div_(1 - self.p)
        return Stacked(t * noise, "kb" if dim == 0 else "bk")


def _dropout_factory(channelwise: bool):
    def factory(modules: Sequence[nn.Module]) -> StackedOp:
        return StackedDropout(modules, modules[0].p, channelwise)

    return factory


register_stacker(nn.Dropout)(_dropout_factory(False))
for _cls in (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d):
    register_stacker(_cls)(_dropout_factory(True))


_POINTWISE_FUNCTIONS = {
    F.relu, torch.relu, F.relu6, F.leaky_relu, F.elu, F.celu, F.selu, F.gelu, F.silu, F.softplus,
    torch.tanh, F.tanh, torch.sigmoid, F.sigmoid, F.hardtanh, F.hardswish, F.hardsigmoid, F.mish,
}
_PER_CHANNEL_FUNCTIONS = {
    F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.max_pool1d,
    F.avg_pool1d, F.adaptive_avg_pool1d,
}
_POINTWISE_METHODS = {"relu", "tanh", "sigmoid", "contiguous"}
_DROPOUT_FUNCTIONS = {F.dropout, F.dropout1d, F.dropout2d, F.dropout3d}
_BINARY = {
    operator.add: torch.add, torch.add: torch.add, operator.sub: torch.sub, torch.sub: torch.sub,
    operator.mul: torch.mul, torch.mul: torch.mul, operator.truediv: torch.div,
}


# Keyword arguments of the binary functions that the engine passes through (``torch.add(a, b,
# alpha=2)``); any other keyword is refused rather than dropped.
_BINARY_KWARGS = {"alpha"}


def _binary(fn, a, b) -> Stacked:
    """``fn(a, b)`` where at least one of ``a``, ``b`` is a stacked activation (``fn`` holds any
    keyword arguments)."""
    if not isinstance(a, Stacked):
        a, b, fn = b, a, (lambda u, v, f=fn: f(v, u))
    if not isinstance(b, Stacked):
        return Stacked(fn(a.t, b), a.layout)
    if a.layout == b.layout:
        return Stacked(fn(a.t, b.t), a.layout)
    if a.layout == "shared":
        return Stacked(fn(a.t.unsqueeze(0 if b.layout == "kb" else 1), b.t), b.layout)
    if b.layout == "shared":
        return Stacked(fn(a.t, b.t.unsqueeze(0 if a.layout == "kb" else 1)), a.layout)
    return Stacked(fn(a.t, b.t.transpose(0, 1)), a.layout)


def _flatten_args(args, kwargs) -> tuple[int, int]:
    start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
    end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
    return start, end


class _LeafTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return _stacker_for(m) is not None or super().is_leaf_module(m, qualname)


def _trace(model: nn.Module) -> fx.Graph:
    try:
        return _LeafTracer().trace(model)
    except Exception as exc:  # fx raises many types
        raise LockstepUnsupported(
            f"cannot trace {type(model).__name__} for lockstep ({type(exc).__name__}: {exc})"
        ) from exc


FOLLOWS_MODE = "secateurs_dropout_follows_mode"


def _trace_in_mode(model: nn.Module, training: bool) -> fx.Graph:
    modes = {m: m.training for m in model.modules()}
    model.train(training)
    try:
        return _trace(model)
    finally:
        for m, mode in modes.items():
            m.training = mode


def _node_signature(node: fx.Node, drop_training: bool) -> tuple:
    kwargs = dict(node.kwargs)
    args = list(node.args)
    if drop_training:
        kwargs.pop("training", None)
        args = args[:2] + args[3:]
    return node.op, str(node.target), str(args), str(kwargs), node.name


def _mark_mode_following_dropouts(train: fx.Graph, eval_: fx.Graph) -> None:
    """A forward whose train and eval graphs differ only in the ``training`` flag of functional
    dropouts (``F.dropout(x, p, training=self.training)``): mark those dropouts in the train graph
    as following the stack's mode; any other difference is refused."""
    a, b = list(train.nodes), list(eval_.nodes)
    same = len(a) == len(b)
    marks = []
    for u, v in zip(a, b, strict=False) if same else ():
        dropout = u.op == "call_function" and u.target in _DROPOUT_FUNCTIONS
        if _node_signature(u, dropout) != _node_signature(v, dropout):
            same = False
            break
        if dropout and _node_signature(u, False) != _node_signature(v, False):
            marks.append(u)
    if not same:
        raise LockstepUnsupported(
            "the model's forward differs between train and eval mode (other than in dropout's "
            "training flag); lockstep runs one graph in both modes"
        )
    for u in marks:
        u.meta[FOLLOWS_MODE] = True


def trace_stackable(models: Sequence[nn.Module]) -> fx.Graph:
    """The traced graph of ``models[0]`` (in train mode; traced in eval mode too, which must give
    the same graph up to functional dropouts' ``training`` flag), after checking that every model
    traces to the same code; pass it to ``StackedNetwork`` (or ``train_lockstep``) to stack these
    models again without tracing them again."""
    if not models:
        raise ConfigError("lockstep needs at least one model")
    graph = _trace_in_mode(models[0], True)
    code = graph.python_code("self").src
    eval_graph = _trace_in_mode(models[0], False)
    if eval_graph.python_code("self").src != code:
        _mark_mode_following_dropouts(graph, eval_graph)
    for i, m in enumerate(models[1:], 1):
        if _trace_in_mode(m, True).python_code("self").src != code:
            raise ConfigError(f"model {i} does not have the architecture of model 0")
    return graph


def _settings(module: nn.Module) -> str:
    return f"{type(module).__name__}({module.extra_repr()})"


def _check_same_settings(name: str, modules: Sequence[nn.Module]) -> None:
    """Every model's module ``name`` has model 0's type and settings (stride, padding, slopes,
    pool sizes: what ``extra_repr`` shows). Stacked ops take those settings from model 0, so any
    difference would silently run the other models with model 0's settings."""
    ref = modules[0]
    for i, module in enumerate(modules[1:], 1):
        if type(module) is not type(ref) or module.extra_repr() != ref.extra_repr():
            raise LockstepUnsupported(
                f"module {name!r} has other settings in model {i} than in model 0: "
                f"{_settings(module)} against {_settings(ref)}; lockstep batches only models "
                "whose modules are configured alike"
            )


def _key(name: str) -> str:
    return name.replace(".", "__")


class StackedNetwork(nn.Module):
    """K models of one architecture as one module whose parameters are stacked ``(K, ...)``.

    ``forward(x, layout)`` takes a shared batch (B, ...) or per-network batches (K, B, ...)
    (``kb``) or (B, K, ...) (``bk``) and returns logits (K, B, classes). ``write_back`` copies each
    network's slice into its model; ``select`` drops networks from the stack.
    """

    def __init__(self, models: Sequence[nn.Module], graph: fx.Graph | None = None):
        """``graph``: ``trace_stackable(models)`` or the graph of a previous stack of these
        models (skips tracing and comparing every model's code; tensor shapes and module settings
        are still checked)."""
        super().__init__()
        if not models:
            raise ConfigError("lockstep needs at least one model")
        if graph is None:
            graph = trace_stackable(models)
        shapes0 = {k: tuple(v.shape) for k, v in models[0].state_dict().items()}
        for i, m in enumerate(models[1:], 1):
            if {k: tuple(v.shape) for k, v in m.state_dict().items()} != shapes0:
                raise ConfigError(f"model {i} has other tensor shapes than model 0")
        self.graph = graph
        self.k = len(models)
        self.ops = nn.ModuleDict()
        self._module_names: dict[str, str] = {}
        self._program: list[tuple[fx.Node, Callable]] = []
        self._output: fx.Node | None = None
        self._input: fx.Node | None = None
        self.input_layout = "kb"
        # per-network dropout generators (default seeds: the positions; ``seed_dropout`` sets
        # each network's own)
        self.dropout_generators = DropoutGenerators(range(self.k))
        self.functional_dropouts = nn.ModuleList()  # follows .train()/.eval()
        covered: set[str] = set()
        for node in graph.nodes:
            self._compile(node, models, covered)
        stateful = {
            name for name, mod in models[0].named_modules()
            if any(True for _ in mod.parameters(recurse=False))
            or any(True for _ in mod.buffers(recurse=False))
        }
        missing = stateful - covered
        if missing:
            raise LockstepUnsupported(
                f"lockstep reads parameters only through modules; {sorted(missing)[:3]} hold "
                "tensors that forward uses another way"
            )

    # -- building ------------------------------------------------------------------------
    def _compile(self, node: fx.Node, models: Sequence[nn.Module], covered: set[str]) -> None:
        if node.op == "placeholder":
            if self._input is not None:
                raise LockstepUnsupported("lockstep models take exactly one input tensor")
            self._input = node
            return
        if node.op == "output":
            out = node.args[0]
            if not isinstance(out, fx.Node):
                raise LockstepUnsupported("lockstep models must return one tensor")
            self._output = out
            return
        if node.op == "get_attr":
            raise LockstepUnsupported(
                f"forward reads the tensor {node.target!r} directly; lockstep needs modules"
            )
        if node.op == "call_module":
            name = str(node.target)
            module = models[0].get_submodule(name)
            factory = _stacker_for(module)
            if factory is None:
                raise LockstepUnsupported(
                    f"lockstep cannot batch {type(module).__name__} ({name!r}) exactly"
                )
            key = _key(name)
            if key not in self.ops:
                modules = [m.get_submodule(name) for m in models]
                _check_same_settings(name, modules)
                self.ops[key] = factory(modules)
                if isinstance(self.ops[key], StackedDropout):
                    self.ops[key].generators = self.dropout_generators
                self._module_names[key] = name
                covered.add(name)
                if isinstance(self.ops[key], StackedConv2d) and self.input_layout == "kb":
                    self.input_layout = "bk"
            op = self.ops[key]
            self._program.append((node, lambda env, op=op, n=node: op.run(env[n.args[0]])))
            return
        self._program.append((node, self._function(node)))

    def _function(self, node: fx.Node) -> Callable:
        target, args, kwargs = node.target, node.args, node.kwargs

        def arg(env, a):
            return env[a] if isinstance(a, fx.Node) else a

        def first_only(env) -> Stacked:
            if any(isinstance(a, fx.Node) for a in list(args[1:]) + list(kwargs.values())):
                raise LockstepUnsupported(f"{node.format_node()} takes several tensors")
            return env[args[0]]

        if node.op == "call_function" and target in _BINARY:
            unknown = set(kwargs) - _BINARY_KWARGS
            if unknown or len(args) != 2 or any(isinstance(v, fx.Node) for v in kwargs.values()):
                raise LockstepUnsupported(
                    f"lockstep cannot batch {node.format_node()}: it passes binary operations "
                    f"two arguments and the keywords {sorted(_BINARY_KWARGS)} only"
                )
            base = _BINARY[target]
            fn = (lambda u, v: base(u, v, **kwargs)) if kwargs else base
            return lambda env: _binary(fn, arg(env, args[0]), arg(env, args[1]))
        if node.op == "call_function" and target in _POINTWISE_FUNCTIONS or (
            node.op == "call_method" and target in _POINTWISE_METHODS
        ):
            call = (lambda t: getattr(t, target)(*args[1:], **kwargs)) if node.op == "call_method" \
                else (lambda t: target(t, *args[1:], **kwargs))
            return lambda env: (lambda s: Stacked(call(s.t), s.layout))(first_only(env))
        if node.op == "call_function" and target in _PER_CHANNEL_FUNCTIONS:
            return lambda env: _per_channel(lambda t: target(t, *args[1:], **kwargs), first_only(env))
        if node.op == "call_function" and target in _DROPOUT_FUNCTIONS:
            return self._functional_dropout(node)
        if (node.op == "call_function" and target is torch.flatten) or (
            node.op == "call_method" and target == "flatten"
        ):
            start, end = _flatten_args(args, kwargs)
            if start != 1 or end != -1:
                raise LockstepUnsupported(f"lockstep supports flatten(x, 1) only: {node.format_node()}")
            return lambda env: _flatten_stacked(first_only(env))
        raise LockstepUnsupported(f"lockstep cannot batch {node.format_node()}")

    def _functional_dropout(self, node: fx.Node) -> Callable:
        """``F.dropout(x, p, training)`` with constant ``p`` and ``training`` (as traced: a
        ``training=self.training`` is a constant in each traced graph)."""
        names = ("input", "p", "training", "inplace")
        given = dict(zip(names, node.args, strict=False)) | dict(node.kwargs)
        if any(isinstance(v, fx.Node) for k, v in given.items() if k != "input"):
            raise LockstepUnsupported(f"lockstep needs constant dropout settings: {node.format_node()}")
        p, training = float(given.get("p", 0.5)), bool(given.get("training", True))
        src = node.args[0] if node.args else node.kwargs["input"]
        if not training or p == 0:
            return lambda env: env[src]
        always = not node.meta.get(FOLLOWS_MODE, False)  # F.dropout(x, p): on in eval mode too
        op = StackedDropout([], p, node.target is not F.dropout, always=always)
        op.generators = self.dropout_generators
        self.functional_dropouts.append(op)
        return lambda env: op.run(env[src])

    def seed_dropout(self, seeds: Sequence[int]) -> None:
        """Seed network ``i``'s dropout generator from ``seeds[i]`` (``dropout_seed``): its masks
        then depend on that seed only, not on the other networks of the stack."""
        if len(seeds) != self.k:
            raise ConfigError(f"{self.k} networks but {len(seeds)} dropout seeds")
        self.dropout_generators.reseed(seeds)

    # -- running -------------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        layout: str = "shared",
        taps: dict[str, Callable[[torch.Tensor], None]] | None = None,
    ) -> torch.Tensor:
        """Logits (K, B, classes). ``taps`` maps module names to callbacks that receive that
        module's output as a (K, B, ...) tensor (possibly a strided view)."""
        if layout not in LAYOUTS:
            raise ConfigError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        env: dict[fx.Node, Stacked] = {self._input: Stacked(x, layout)}
        taps_by_node = {}
        if taps:
            for node, _ in self._program:
                if node.op == "call_module" and str(node.target) in taps:
                    taps_by_node[node] = taps[str(node.target)]
        for node, step in self._program:
            env[node] = step(env)
            if node in taps_by_node:
                taps_by_node[node](env[node].kb(self.k))
        return env[self._output].kb(self.k)

    def fused_stages(self) -> list[Stage] | None:
        """The program as ``FusedChain`` stages if it is a plain chain of ops that each have one
        (a flatten only before the first layer), else None."""
        stages: list[Stage] = []
        previous = self._input
        for node, _ in self._program:
            if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
                return None
            if node.args[0] is not previous or len(previous.users) != 1:
                return None
            stage = self.ops[_key(str(node.target))].fused_stage()
            if stage is None or (stage.kind == "flatten" and stages):
                return None
            stages.append(stage)
            previous = node
        return stages if previous is self._output else None

    def select(self, keep: Sequence[int]) -> dict[nn.Parameter, nn.Parameter]:
        """Keep the networks at positions ``keep`` (in that order); old -> new parameters."""
        index = torch.as_tensor(list(keep), dtype=torch.long)
        mapping = {}
        for op in self.ops.values():
            mapping.update(op.select(index))
        self.dropout_generators.select(index.tolist())
        self.k = len(index)
        return mapping

    def write_back(self, model: nn.Module, position: int) -> None:
        """Copy the network at ``position`` into ``model`` (same architecture)."""
        for key, op in self.ops.items():
            op.write_back(model.get_submodule(self._module_names[key]), position)

    def slice_state(self, position: int) -> dict[str, torch.Tensor]:
        """A copy of one network's tensors (keyed by stacked name), for ``load_slice``."""
        return {k: v[position].detach().clone() for k, v in self.state_dict().items()}

    @torch.no_grad()
    def load_slice(self, position: int, state: dict[str, torch.Tensor]) -> None:
        own = self.state_dict()
        for k, v in state.items():
            own[k][position].copy_(v)

    @torch.no_grad()
    def elements_per_sample(self, example: torch.Tensor) -> int:
        """The largest activation of one sample of one network, in elements (for chunking)."""
        largest = 0

        def see(t: torch.Tensor) -> None:
            nonlocal largest
            largest = max(largest, t[0, 0].numel())

        was_training = self.training
        self.eval()  # train mode would move BatchNorm statistics and draw dropout masks
        try:
            self.forward(example[:1], "shared", taps={self._module_names[k]: see for k in self.ops})
        finally:
            self.train(was_training)
        return max(largest, int(example[:1].numel()))


def eval_chunk(
    k: int, elements_per_sample: int, batch_size: int, device: torch.device | str = "cpu"
) -> int:
    """Samples per stacked forward so that one activation of K networks fits the memory budget
    (``EVAL_MEMORY_BUDGET`` on CPU, ``GPU_EVAL_MEMORY_BUDGET`` elsewhere), at most
    ``batch_size``."""
    budget = EVAL_MEMORY_BUDGET if torch.device(device).type == "cpu" else GPU_EVAL_MEMORY_BUDGET
    return max(1, min(batch_size, budget // max(1, k * elements_per_sample * 4)))


@torch.no_grad()
def evaluate_lockstep(
    stacked: StackedNetwork,
    x: torch.Tensor,
    y: torch.Tensor,
    chunk: int | None = None,
    *,
    taps: dict[str, Callable[[torch.Tensor], None]] | None = None,
) -> list[tuple[float, float]]:
    """Per network (mean cross-entropy, accuracy) on the shared ``(x, y)``, in eval mode.

    ``chunk`` samples go through at a time (default: what fits ``EVAL_MEMORY_BUDGET``; large
    batches of large activations run from memory instead of cache, several times slower on CPU).
    Losses are summed per chunk in float32 and accumulated in float64. ``taps`` (see
    ``StackedNetwork.forward``) see every sample, so that one pass can both measure the networks
    and collect activation statistics.
    """
    was_training = stacked.training
    stacked.eval()
    device = next(stacked.parameters()).device
    k, n = stacked.k, len(y)
    if chunk is None:
        chunk = eval_chunk(k, stacked.elements_per_sample(x[:1].to(device)), 2048, device)
    edges = [*range(0, n, chunk), n]
    loss_sum = torch.zeros(k, dtype=torch.float64, device=device)
    correct = torch.zeros(k, dtype=torch.int64, device=device)
    for i, j in zip(edges[:-1], edges[1:], strict=True):
        yb = y[i:j].to(device, non_blocking=True)
        logits = stacked(x[i:j].to(device, non_blocking=True), taps=taps)
        scores = logits.transpose(1, 2)
        target = yb.expand(k, -1)
        loss_sum += F.cross_entropy(scores, target, reduction="none").sum(1).double()
        correct += (logits.contiguous().argmax(2) == target).sum(1)
    stacked.train(was_training)
    n = max(n, 1)
    return [(s / n, c / n) for s, c in zip(loss_sum.tolist(), correct.tolist(), strict=True)]


def _optimizer(stacked: StackedNetwork, config: TrainConfig):
    """``make_optimizer``'s optimizer for the stacked parameters (elementwise updates on stacked
    parameters are each network's own), in as few calls as possible."""
    return fast_optimizer(stacked, config)


def _rebuild_optimizer(
    old, stacked: StackedNetwork, config: TrainConfig,
    mapping: dict[nn.Parameter, nn.Parameter], keep: torch.Tensor, k_old: int,
):
    """A new optimizer for the sliced parameters carrying the kept networks' state."""
    new = _optimizer(stacked, config)
    for p_old, p_new in mapping.items():
        state = old.state.get(p_old)
        if not state:
            continue
        new.state[p_new] = {
            name: (
                v.index_select(0, keep.to(v.device))
                if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == k_old
                else v
            )
            for name, v in state.items()
        }
    return new


def _batches(perms: torch.Tensor, batch_size: int, layout: str) -> list[torch.Tensor]:
    """Each step's sample indices, flattened in the order the stacked input needs: network-major
    for ``kb`` ((K, B) -> K*B), sample-major for ``bk``. One copy per epoch; steps are views."""
    k, n = perms.shape
    steps, rest = divmod(n, batch_size)
    parts = []
    if steps:
        main = perms[:, : steps * batch_size].view(k, steps, batch_size)
        main = (main.transpose(0, 1) if layout == "kb" else main.permute(1, 2, 0)).contiguous()
        parts = list(main.view(steps, -1))
    if rest:
        tail = perms[:, steps * batch_size :]
        parts.append((tail if layout == "kb" else tail.t()).reshape(-1))
    return parts


@dataclass
class _Member:
    """One network's training state (what ``trainer.train`` keeps in local variables)."""

    key: int
    model: nn.Module
    generator: torch.Generator
    result: TrainResult
    best_loss: float = math.inf
    bad_epochs: int = 0
    best_state: dict | None = None
    seconds: float = 0.0


@dataclass
class Finished:
    """A network that stopped training: its model holds its final weights (the best epoch's with
    ``restore_best``); ``result`` is None and ``error`` says why if its loss diverged; ``seconds``
    is its share of the batch's training time."""

    key: int
    result: TrainResult | None
    seconds: float
    error: str | None = None


class LockstepTrainer:
    """Networks of one architecture trained together, epoch by epoch, each exactly as
    ``trainer.train`` would train it alone (own data order, early stopping, restore-best).

    All networks start together; a network that stops leaves the batch (parameters and optimizer
    state are sliced). Networks do not join a running batch: a newcomer's optimizer state would
    be at another step, and refilling freed slots with DropNet runs' next rounds was measured to
    gain nothing (the batch then keeps the widths of its least pruned member, which costs what
    the fuller batch saves), so the DropNet driver keeps its rounds in step.
    """

    fused_steps: bool = True  # False: every step through autograd (to compare the two)

    def __init__(
        self,
        models: Sequence[nn.Module],
        seeds: Sequence[int],
        data: DatasetSplits,
        config: TrainConfig | None = None,
        *,
        graph: fx.Graph | None = None,
        dropout_seeds: Sequence[int] | None = None,
    ):
        """Network ``i`` is ``models[i]`` with the data order of ``seeds[i]`` (equal seeds for
        all: one generator, one shared input) and dropout masks from a generator seeded by
        ``dropout_seeds[i]`` (default ``seeds[i]``); ``graph`` as in ``StackedNetwork``."""
        self.config = config or TrainConfig()
        if self.config.augment:
            raise LockstepUnsupported(
                "augment=true: lockstep training does not batch augmentation; train the models "
                "one by one (trainer.train)"
            )
        self.scheduled = not schedule_is_constant(self.config)
        self.device = resolve_device(self.config.device)
        self.x_train, self.y_train = data.x_train.to(self.device), data.y_train.to(self.device)
        self.x_val, self.y_val = data.x_val, data.y_val
        self.n = len(self.y_train)
        if self.n == 0:
            raise ConfigError("the training split is empty")
        if len(set(seeds)) == 1:  # one shared order: one generator for all
            generators = [torch.Generator().manual_seed(int(seeds[0]))] * len(models)
        else:
            generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        self.members = [
            _Member(i, model.to(self.device), gen, TrainResult())
            for i, (model, gen) in enumerate(zip(models, generators, strict=True))
        ]
        self.stacked: StackedNetwork | None = StackedNetwork(models, graph).to(self.device)
        self.stacked.seed_dropout(list(dropout_seeds) if dropout_seeds is not None else seeds)
        self.optimizer = _optimizer(self.stacked, self.config)
        self.fused = self._fused_chain()
        self.per_sample = self.stacked.elements_per_sample(self.x_train[:1])
        self.chunk = self._eval_chunk()

    def _fused_chain(self) -> FusedChain | None:
        """The hand-written step where it computes what autograd would (see ``fused_chain``)."""
        if not self.fused_steps or not isinstance(self.optimizer, PlainSGD):
            return None
        stages = self.stacked.fused_stages()
        flat = len(self.x_train.shape) == 2 or (stages and stages[0].kind == "flatten")
        return FusedChain.of(stages) if flat and self.stacked.input_layout == "kb" else None

    def __len__(self) -> int:
        return len(self.members)

    def _eval_chunk(self) -> int:
        return eval_chunk(
            self.stacked.k, self.per_sample, self.config.eval_batch_size, self.device
        )

    def epoch(self) -> list[Finished]:
        """Train every network one epoch; returns those that stopped (and leave the batch)."""
        config, stacked, device = self.config, self.stacked, self.device
        members, ka, n, bs = self.members, len(self.members), self.n, self.config.batch_size
        sample = self.x_train.shape[1:]
        shared = len({id(m.generator) for m in members}) == 1  # one order (or one network)
        layout = "shared" if shared else stacked.input_layout
        start = time.perf_counter()
        stacked.train()
        losses_seen, predictions = [], []
        if shared:
            perm = torch.randperm(n, generator=members[0].generator).to(device)
            xs, ys = self.x_train[perm], self.y_train[perm]
            batches = [(xs[i : i + bs], ys[i : i + bs]) for i in range(0, n, bs)]
        else:
            perms = torch.stack([torch.randperm(n, generator=m.generator) for m in members])
            perms = perms.to(device)
            rows = _batches(perms, bs, layout)
            by_network = rows if layout == "kb" else _batches(perms, bs, "kb")
            targets = self.y_train.index_select(0, torch.cat(by_network))
            batches = list(zip(rows, targets.split([len(r) for r in rows]), strict=True))
        epoch_index = members[0].result.epochs  # every member started with the batch
        # a step's inputs, overwritten by the next step (nothing keeps them past their step)
        rows_buffer = self.x_train.new_empty((0 if shared else ka * bs, *sample))
        for step, (xb, yb) in enumerate(batches):
            if self.scheduled:
                set_learning_rate(
                    self.optimizer, learning_rate(config, epoch_index, step, len(batches))
                )
            b = len(yb) // (1 if shared else ka)
            if not shared:
                shape = (ka, b) if layout == "kb" else (b, ka)
                if len(xb) == len(rows_buffer):  # one buffer for every full step: no allocation
                    xb = torch.index_select(self.x_train, 0, xb, out=rows_buffer)
                else:
                    xb = self.x_train.index_select(0, xb)
                xb = xb.view(*shape, *sample)
            # network-major targets, as the logits are flattened
            target = (yb.repeat(ka) if shared else yb).view(ka, b)
            if self.fused is not None:
                lr = self.optimizer.param_groups[0]["lr"]
                losses, logits = self.fused.step(xb, shared, target, lr)
            else:
                logits = stacked(xb, "shared" if shared else layout)
                # The sum of per-network mean losses: each network's gradient is its own
                # loss's. Classes on dim 1, (K, classes, B): the layout the last linear layer
                # writes and the fast one for log-softmax over few classes.
                losses = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
                self.optimizer.zero_grad(set_to_none=True)
                (losses.sum() / b).backward()
                self.optimizer.step()
            losses_seen.append(losses.detach())
            predictions.append(logits.detach().contiguous().argmax(2) == target)  # fast dim
        train_losses = [v / n for v in torch.cat(losses_seen, 1).sum(1).tolist()]
        train_accs = [c / n for c in torch.cat(predictions, 1).sum(1).tolist()]
        val = evaluate_lockstep(stacked, self.x_val, self.y_val, self.chunk)
        share = (time.perf_counter() - start) / ka
        finished: list[Finished] = []
        stopped: list[int] = []
        for pos, m in enumerate(members):
            m.seconds += share
            if not math.isfinite(train_losses[pos]):
                stopped.append(pos)
                finished.append(Finished(
                    m.key, None, m.seconds,
                    f"training diverged at epoch {m.result.epochs + 1}: the loss is "
                    f"{train_losses[pos]}; try a smaller learning rate (now {config.lr})",
                ))
                continue
            result = m.result
            epoch = result.epochs + 1
            val_loss, val_acc = val[pos]
            result.history.append(
                EpochRecord(epoch, train_losses[pos], train_accs[pos], val_loss, val_acc)
            )
            result.epochs = epoch
            if val_loss < m.best_loss:
                m.best_loss, m.bad_epochs, result.best_epoch = val_loss, 0, epoch
                if config.restore_best:
                    m.best_state = stacked.slice_state(pos)
            else:
                m.bad_epochs += 1
            early = config.patience is not None and m.bad_epochs >= config.patience
            if early or epoch >= config.max_epochs:
                result.stopped_early = early
                stopped.append(pos)
                finished.append(Finished(m.key, result, m.seconds))
        if stopped:
            for pos in stopped:
                m = members[pos]
                if config.restore_best and m.best_state is not None:
                    stacked.load_slice(pos, m.best_state)
                stacked.write_back(m.model, pos)
            keep = [p for p in range(ka) if p not in set(stopped)]
            self.members = [members[p] for p in keep]
            if keep:
                mapping = stacked.select(keep)
                index = torch.tensor(keep, dtype=torch.long)
                self.optimizer = _rebuild_optimizer(
                    self.optimizer, stacked, config, mapping, index, ka
                )
                self.fused = self._fused_chain()
                self.chunk = self._eval_chunk()  # fewer networks: larger chunks fit the budget
            else:
                self.stacked = None
        return finished


def train_lockstep(
    models: Sequence[nn.Module],
    data: DatasetSplits,
    config: TrainConfig | None = None,
    *,
    seeds: Sequence[int],
    progress: bool = False,
    description: str = "lockstep",
    graph: fx.Graph | None = None,
    dropout_seeds: Sequence[int] | None = None,
) -> list[TrainResult]:
    """Train K models of one architecture in place, as ``[train(m, data, config, seed=s)]`` would.

    Each model gets the data order of ``seeds[i]``; when all seeds are equal the K networks read
    the same batches. Dropout masks: network ``i`` draws its own from a generator seeded by
    ``dropout_seeds[i]`` (default ``seeds[i]``), so they do not depend on the other networks
    (they are not those of ``train``, which draws from torch's global generator). ``graph``: the
    traced graph of these models (``StackedNetwork.graph``), to skip tracing them again. Raises ``LockstepUnsupported`` for models it cannot batch exactly, and
    ``LockstepDiverged`` (after finishing the others) when some networks' loss became NaN or
    infinite.
    """
    config = config or TrainConfig()
    seeds = [int(s) for s in seeds]
    if len(seeds) != len(models):
        raise ConfigError(f"{len(models)} models but {len(seeds)} seeds; give one seed per model")
    if dropout_seeds is not None and len(dropout_seeds) != len(models):
        raise ConfigError(
            f"{len(models)} models but {len(dropout_seeds)} dropout seeds; give one per model"
        )
    trainer = LockstepTrainer(models, seeds, data, config, graph=graph, dropout_seeds=dropout_seeds)
    results: list[TrainResult | None] = [None] * len(models)
    failed: dict[int, str] = {}
    with progress_bar(progress) as bar:
        task = bar.add_task(description, total=config.max_epochs, info="")
        while len(trainer):
            for f in trainer.epoch():
                results[f.key] = f.result
                if f.error is not None:
                    failed[f.key] = f.error
            bar.update(task, advance=1, info=f"{len(trainer)} of {len(models)} networks training")
    if failed:
        first = min(failed)
        raise LockstepDiverged(
            f"{len(failed)} of {len(models)} networks diverged (network {first}: {failed[first]})",
            results, failed,
        )
    return results  # type: ignore[return-value]
