"""The stacked engine's building blocks: K copies of one module as one batched op.

An activation of K networks is a ``Stacked`` tensor in one of three layouts; a ``StackedOp`` holds
K modules' tensors stacked along a new first dimension and runs them on it. ``register_stacker``
adds a module type (``stacked_recurrent`` registers LSTM / GRU / RNN and Embedding this way); the
functions the engine batches are listed here too. ``stacked_network`` assembles them from a
traced graph.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from .fused_chain import Stage
from .seeding import dropout_seed


class LockstepUnsupported(ConfigError):
    """The model has an operation that the lockstep engine cannot batch exactly."""


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

    def owned_modules(self, module: nn.Module) -> list[nn.Module]:
        """Modules other than ``module`` (model 0's copy of what this op stacks) whose tensors
        this op holds, e.g. what a wrapper module runs."""
        return []

    def tapped_modules(self, module: nn.Module) -> list[nn.Module]:
        """Modules inside this op whose outputs it passes to ``tap_callbacks`` (by position in
        this list) when ``StackedNetwork.forward`` is given taps for them."""
        return []

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
        k = self.weight.shape[0]
        t = x.kb(k)  # a view
        if t.dim() < 3:
            raise LockstepUnsupported("lockstep Linear layers need (N, ..., features) inputs")
        n, lead = t.shape[1], t.shape[2:-1]
        # A Linear applied per time step or position, (N, T, ..., F), is one product over N*T
        # rows; a shared input is flattened before it is broadcast, so it is never copied K times.
        if lead and x.layout == "shared":
            t = Stacked(x.t.reshape(-1, t.shape[-1]), "shared").kb(k)
        elif lead:
            t = t.reshape(k, -1, t.shape[-1])
        xt = t.transpose(1, 2)
        if self.bias is None:
            yt = torch.bmm(self.weight, xt)
        else:
            yt = torch.baddbmm(self.bias.unsqueeze(2), self.weight, xt)
        return Stacked(yt.transpose(1, 2).reshape(k, n, *lead, yt.shape[1]), "kb")

    def fused_stage(self) -> Stage | None:
        return Stage("linear", self.weight, self.bias)


@register_stacker(nn.Conv2d)
class StackedConv2d(StackedOp):
    """Weights (K, out, in, kh, kw) run as one convolution with ``groups=K`` on (B, K*C, H, W)."""

    # None: on CPU only, for grouped convolutions (oneDNN's grouped kernels want it)
    channels_last: bool | None = None

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
        groups = 1 if shared else k
        if groups > 1:
            cl = self.channels_last if self.channels_last is not None else t.device.type == "cpu"
            if cl:
                t = t.contiguous(memory_format=torch.channels_last)
        elif w.shape[2:] == (1, 1) and max(self.stride) > 1 and t.device.type == "cpu":
            # oneDNN's AVX2 kernel for the weight gradient of an ungrouped 1x1 strided
            # convolution on channels-last input with 2-7 input channels corrupts memory
            # (torch 2.13, measured on an AVX2-only CPU); the standard layout is safe
            t = t.contiguous()
        y = F.conv2d(t, w, b, self.stride, self.padding, self.dilation, groups)
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
