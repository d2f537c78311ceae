"""DropNet's masks: one per-unit mask at the post-activation point of every prunable layer.

``MaskedNetwork`` traces a model with ``torch.fx`` and inserts a ``UnitMask`` after each prunable
Linear/Conv2d layer's per-channel tail (BatchNorm, activation, dropout), so that a dropped unit
outputs exactly zero from that point on and its DropNet score (mean |post-activation|) is read at
the mask. The same trace gives the channel flow that ``surgery.export_pruned`` uses to remove
units physically: which layers' channels meet in a residual addition (coupled groups), which
Linear/Conv2d layers consume which channels, and where a channel cannot be removed safely.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import ConfigError
from ..models import find_prunable_layers

MASKS_ATTR = "secateurs_unit_masks"

# Per-channel elementwise ops that may sit between a layer and its mask (the "post-activation" tail).
_TAIL_MODULES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU,
    nn.GELU, nn.SiLU, nn.Softplus, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
    nn.Mish, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity,
)
_TAIL_FUNCTIONS = {
    F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.celu, F.selu,
    F.gelu, F.silu, F.softplus, torch.tanh, F.tanh, torch.sigmoid, F.sigmoid, F.hardtanh,
    F.hardswish, F.hardsigmoid, F.mish, F.dropout, F.dropout1d, F.dropout2d,
}
_TAIL_METHODS = {"relu", "relu_", "tanh", "tanh_", "sigmoid", "sigmoid_"}

# Ops with f(0) == 0 channel by channel: a dropped (zero) channel stays exactly zero through them.
_ZERO_PRESERVING_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Tanh,
    nn.Hardswish, nn.Mish, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity,
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
)
_ZERO_PRESERVING_FUNCTIONS = {
    F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.celu, F.selu,
    F.gelu, F.silu, torch.tanh, F.tanh, F.hardswish, F.mish, F.dropout, F.dropout1d, F.dropout2d,
    F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d, torch.mean, torch.amax,
}
_ZERO_PRESERVING_METHODS = {"relu", "relu_", "tanh", "tanh_", "mean", "amax", "contiguous"}
_FLATTEN_FUNCTIONS = {torch.flatten, torch.reshape}
_FLATTEN_METHODS = {"flatten", "view", "reshape"}
_ADD_FUNCTIONS = {operator.add, operator.iadd, operator.sub, operator.isub, torch.add, torch.sub}
_ADD_METHODS = {"add", "add_", "sub", "sub_"}
_SCALE_FUNCTIONS = {operator.mul, operator.imul, operator.truediv, torch.mul}
_SCALE_METHODS = {"mul", "mul_", "div", "div_"}
_HARMLESS_METHODS = {"size", "dim"}  # read the shape, not the values


class UnitMask(nn.Module):
    """Multiplies its input by a per-unit 0/1 mask over dim 1 ((N, C) or (N, C, H, W) inputs).

    The mask is a plain float32 buffer (no parameters, no Python-side state) so that the network
    works with ``torch.func.functional_call`` and ``vmap`` over stacked parameters and buffers.
    """

    def __init__(self, units: int):
        super().__init__()
        if units < 1:
            raise ConfigError(f"a mask needs at least one unit, got {units}")
        self.register_buffer("mask", torch.ones(units, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask.reshape((-1,) + (1,) * (x.dim() - 2))

    def extra_repr(self) -> str:
        return f"units={self.mask.shape[0]}"


@dataclass
class ChannelFlow:
    """Where each prunable layer's output channels go, read off the traced graph.

    ``tails[layer]``: the nodes from the layer's call to its mask (exclusive of the mask).
    ``space_of[consumer_module]``: for each Linear/Conv2d module whose input carries masked
    channels, ``(producer_layer, repeat)``: input feature ``j`` is the producer group's channel
    ``j // repeat`` (``repeat`` > 1 after a flatten of ``repeat`` spatial positions).
    ``barriers[layer]``: why that layer's channels cannot be physically removed (they are then kept
    and zeroed by export); empty for layers whose channels reach only Linear/Conv2d inputs through
    zero-preserving per-channel ops.
    """

    layers: tuple[str, ...]
    tails: dict[str, list[fx.Node]]
    mask_nodes: dict[str, fx.Node]
    space_of: dict[str, tuple[str, int]] = field(default_factory=dict)
    barriers: dict[str, list[str]] = field(default_factory=dict)
    _parent: dict[str, str] = field(default_factory=dict)

    def root(self, layer: str) -> str:
        while self._parent.get(layer, layer) != layer:
            layer = self._parent[layer]
        return layer

    def union(self, a: str, b: str) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            first, second = sorted((ra, rb), key=self.layers.index)
            self._parent[second] = first

    def group_of(self, layer: str) -> tuple[str, ...]:
        r = self.root(layer)
        return tuple(x for x in self.layers if self.root(x) == r)

    def groups(self) -> list[tuple[str, ...]]:
        seen: dict[str, tuple[str, ...]] = {}
        for layer in self.layers:
            seen.setdefault(self.root(layer), self.group_of(layer))
        return list(seen.values())

    def barrier_reasons(self, layer: str) -> list[str]:
        """Why the channels of ``layer``'s group cannot be removed (empty if they can)."""
        return [r for x in self.group_of(layer) for r in self.barriers.get(x, [])]


def _module_calls(gm: fx.GraphModule) -> dict[str, list[fx.Node]]:
    calls: dict[str, list[fx.Node]] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls.setdefault(str(node.target), []).append(node)
    return calls


def _is_tail_op(node: fx.Node, gm: fx.GraphModule, calls: dict[str, list[fx.Node]]) -> bool:
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        if not isinstance(module, _TAIL_MODULES):
            return False
        # A module with state (BatchNorm) used at two places cannot be sliced for one of them.
        has_state = any(True for _ in module.parameters()) or any(True for _ in module.buffers())
        return not (has_state and len(calls[str(node.target)]) > 1)
    if node.op == "call_function":
        return node.target in _TAIL_FUNCTIONS
    if node.op == "call_method":
        return node.target in _TAIL_METHODS
    return False


def _follow_tail(start: fx.Node, gm: fx.GraphModule, calls) -> list[fx.Node]:
    """From a layer's output, follow single-user per-channel elementwise ops; return the chain."""
    chain = [start]
    node = start
    while len(node.users) == 1:
        (user,) = node.users
        if not (user.args and user.args[0] is node and _is_tail_op(user, gm, calls)):
            break
        if any(a is node for a in list(user.args[1:]) + list(user.kwargs.values())):
            break
        chain.append(user)
        node = user
    return chain


def is_zero_preserving(node: fx.Node, gm: fx.GraphModule) -> bool:
    """True if the op maps a channel that is exactly zero to exactly zero, channel by channel."""
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        if isinstance(module, nn.Hardtanh):
            return module.min_val <= 0.0 <= module.max_val
        return isinstance(module, (*_ZERO_PRESERVING_MODULES, UnitMask))
    if node.op == "call_function":
        if node.target is F.hardtanh:
            lo = node.kwargs.get("min_val", node.args[1] if len(node.args) > 1 else -1.0)
            hi = node.kwargs.get("max_val", node.args[2] if len(node.args) > 2 else 1.0)
            return lo <= 0.0 <= hi
        return node.target in _ZERO_PRESERVING_FUNCTIONS
    if node.op == "call_method":
        return node.target in _ZERO_PRESERVING_METHODS
    return False


def _shape(node) -> torch.Size | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return getattr(meta, "shape", None)


def analyse_channel_flow(
    gm: fx.GraphModule, layers: tuple[str, ...], tails: dict[str, list[fx.Node]],
    mask_nodes: dict[str, fx.Node],
) -> ChannelFlow:
    """Propagate "which producer's channels are on dim 1" through a shape-annotated masked graph."""
    flow = ChannelFlow(layers, tails, mask_nodes)
    space: dict[fx.Node, tuple[str, int]] = {mask_nodes[x]: (x, 1) for x in layers}
    tail_nodes = {n for chain in tails.values() for n in chain}
    consumer_calls: dict[str, list[tuple[fx.Node, tuple[str, int] | None]]] = {}

    def block(layer: str, why: str) -> None:
        reasons = flow.barriers.setdefault(layer, [])
        if why not in reasons:
            reasons.append(why)

    for node in gm.graph.nodes:
        if node in space or node.op in ("placeholder", "get_attr"):
            continue
        tracked = [a for a in node.all_input_nodes if a in space]
        module = gm.get_submodule(str(node.target)) if node.op == "call_module" else None
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            first = node.args[0] if node.args else None
            src = space.get(first) if isinstance(first, fx.Node) else None
            consumer_calls.setdefault(str(node.target), []).append((node, src))
            if src is not None:
                dims = len(_shape(first) or ())
                if isinstance(module, nn.Conv2d) and module.groups != 1:
                    block(src[0], f"grouped convolution {node.target!r} reads its channels")
                elif dims != (2 if isinstance(module, nn.Linear) else 4):
                    block(src[0], f"{node.target!r} reads them from a {dims}-d tensor")
            continue
        if not tracked or node in tail_nodes:
            continue
        where = f"{node.format_node()}"
        first = node.args[0] if node.args else None
        in_shape, out_shape = _shape(first), _shape(node)
        src = space.get(first) if isinstance(first, fx.Node) else None
        if node.op == "call_method" and node.target in _HARMLESS_METHODS:
            continue
        if node.op == "call_function" and node.target is getattr and node.args[1] == "shape":
            continue
        same_channels = (
            in_shape is not None and out_shape is not None and len(in_shape) >= 2
            and len(out_shape) >= 2 and in_shape[:2] == out_shape[:2]
        )
        is_add = (node.op == "call_function" and node.target in _ADD_FUNCTIONS) or (
            node.op == "call_method" and node.target in _ADD_METHODS
        )
        is_scale = (node.op == "call_function" and node.target in _SCALE_FUNCTIONS) or (
            node.op == "call_method" and node.target in _SCALE_METHODS
        )
        is_flatten = (
            (node.op == "call_module" and isinstance(module, nn.Flatten))
            or (node.op == "call_function" and node.target in _FLATTEN_FUNCTIONS)
            or (node.op == "call_method" and node.target in _FLATTEN_METHODS)
        )
        if src is not None and len(tracked) == 1 and tracked[0] is first and same_channels and (
            is_zero_preserving(node, gm)
            or (is_scale and len(node.args) == 2 and isinstance(node.args[1], (int, float)))
        ):
            if node.op == "call_function" and node.target in (torch.mean, torch.amax) or (
                node.op == "call_method" and node.target in ("mean", "amax")
            ):
                dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
                dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
                if not dims or any(d % len(in_shape) < 2 for d in dims):
                    for a in tracked:
                        block(space[a][0], f"{where} mixes channels")
                    continue
            space[node] = src
            continue
        if src is not None and len(tracked) == 1 and tracked[0] is first and is_flatten and (
            in_shape is not None and out_shape is not None and len(out_shape) == 2
            and len(in_shape) >= 2 and in_shape[0] == out_shape[0]
        ):
            space[node] = (src[0], src[1] * int(torch.Size(in_shape[2:]).numel()))
            continue
        if is_add and len(node.args) >= 2:
            a, b = node.args[0], node.args[1]
            sa = space.get(a) if isinstance(a, fx.Node) else None
            sb = space.get(b) if isinstance(b, fx.Node) else None
            if sa is not None and sb is not None and sa[1] == sb[1] and (
                _shape(a) == _shape(b) == out_shape
            ):
                flow.union(sa[0], sb[0])
                space[node] = sa
                continue
        for a in tracked:
            block(space[a][0], f"its channels reach {where}, which is not a zero-preserving "
                               "per-channel op or a Linear/Conv2d input")
    for name, calls in consumer_calls.items():
        sources = {c[1] for c in calls}
        if len(calls) > 1:
            for src in sources - {None}:
                block(src[0], f"module {name!r} is called {len(calls)} times")
        elif calls[0][1] is not None:
            flow.space_of[name] = calls[0][1]
    for node in gm.graph.nodes:
        if node.op == "output":
            for a in node.all_input_nodes:
                if a in space:
                    block(space[a][0], "its channels are a network output")
    return flow


@dataclass(frozen=True)
class _TraceResult:
    gm: fx.GraphModule
    tails: dict[str, list[fx.Node]]
    mask_nodes: dict[str, fx.Node]


def _mask_key(layer: str) -> str:
    return layer.replace(".", "__")


def trace_with_masks(model: nn.Module, layers: tuple[str, ...]) -> _TraceResult:
    """Trace ``model`` and insert a UnitMask after each prunable layer's per-channel tail."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, ...)
        raise ConfigError(
            f"cannot trace {type(model).__name__} with torch.fx ({type(exc).__name__}: {exc}); "
            "masks need a forward pass without data-dependent Python control flow"
        ) from exc
    if hasattr(gm, MASKS_ATTR):
        raise ConfigError(f"the model already has an attribute {MASKS_ATTR!r}")
    calls = _module_calls(gm)
    masks = nn.ModuleDict()
    setattr(gm, MASKS_ATTR, masks)
    tails: dict[str, list[fx.Node]] = {}
    mask_nodes: dict[str, fx.Node] = {}
    for layer in layers:
        try:
            module = gm.get_submodule(layer)
        except AttributeError:
            module = None
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            what = "missing" if module is None else type(module).__name__
            raise ConfigError(
                f"prunable layer {layer!r} must be an nn.Linear or nn.Conv2d used in forward "
                f"(got {what})"
            )
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise ConfigError(f"prunable layer {layer!r} is a grouped convolution; not supported")
        nodes = calls.get(layer, [])
        if len(nodes) != 1:
            raise ConfigError(
                f"prunable layer {layer!r} is called {len(nodes)} times in forward; "
                "a prunable layer must be called exactly once"
            )
        chain = _follow_tail(nodes[0], gm, calls)
        last = chain[-1]
        key = _mask_key(layer)
        units = module.out_features if isinstance(module, nn.Linear) else module.out_channels
        masks[key] = UnitMask(units)
        with gm.graph.inserting_after(last):
            mask_node = gm.graph.call_module(f"{MASKS_ATTR}.{key}", (last,))
        last.replace_all_uses_with(mask_node, delete_user_cb=lambda user, m=mask_node: user is not m)
        tails[layer] = chain
        mask_nodes[layer] = mask_node
    gm.graph.lint()
    gm.recompile()
    return _TraceResult(gm, tails, mask_nodes)


def propagate_shapes(gm: fx.GraphModule, example_input: torch.Tensor) -> None:
    """Annotate every node with its output shape by running ``example_input`` once in eval mode,
    without gradients and without touching BatchNorm running statistics."""
    modes = {name: m.training for name, m in gm.named_modules()}
    gm.eval()
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(example_input)
    except Exception as exc:
        raise ConfigError(
            f"the model fails on an example input of shape {tuple(example_input.shape)} "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    finally:
        for name, m in gm.named_modules():
            m.training = modes.get(name, m.training)


class MaskedNetwork(nn.Module):
    """A model with a ``UnitMask`` at the post-activation point of each prunable layer.

    The wrapped graph shares its modules (and so its weights) with ``model``; deep-copy the model
    first if the unmasked original must stay untouched. Layers are named as in the original model.
    ``coupled_groups`` lists only groups of two or more layers (uncoupled layers are in no group).
    """

    def __init__(
        self, model: nn.Module, example_input: torch.Tensor, layers: Iterable[str] | None = None
    ):
        super().__init__()
        layers = tuple(find_prunable_layers(model) if layers is None else layers)
        if not layers:
            raise ConfigError("no prunable layers given")
        if len(set(layers)) != len(layers):
            raise ConfigError(f"prunable layers repeat a name: {layers}")
        traced = trace_with_masks(model, layers)
        self.net = traced.gm
        propagate_shapes(self.net, example_input)
        self.layers: tuple[str, ...] = layers
        self.widths: dict[str, int] = {
            x: int(getattr(self.net, MASKS_ATTR)[_mask_key(x)].mask.numel()) for x in layers
        }
        for x in layers:
            shape = _shape(traced.mask_nodes[x])
            if shape is None or len(shape) < 2 or shape[1] != self.widths[x]:
                raise ConfigError(
                    f"layer {x!r}: the mask point's output has shape {tuple(shape or ())}, "
                    f"expected (N, {self.widths[x]}, ...)"
                )
        self.flow = analyse_channel_flow(self.net, layers, traced.tails, traced.mask_nodes)
        self.coupled_groups: list[tuple[str, ...]] = [
            g for g in self.flow.groups() if len(g) > 1
        ]
        self.input_shape = tuple(example_input.shape[1:])
        self.spec = getattr(model, "secateurs_spec", None)
        # The original model object (not a registered submodule: its modules are already in
        # ``net``); export deep-copies it so that the exported network keeps the user's class.
        object.__setattr__(self, "original", model)
        self._mask_names = {f"net.{MASKS_ATTR}.{_mask_key(x)}.mask" for x in layers}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def mask_modules(self) -> dict[str, UnitMask]:
        masks = getattr(self.net, MASKS_ATTR)
        return {x: masks[_mask_key(x)] for x in self.layers}

    def get_masks(self) -> dict[str, torch.Tensor]:
        """Alive units per layer, as bool tensors (on the mask's device)."""
        return {x: m.mask > 0.5 for x, m in self.mask_modules().items()}

    def set_masks(self, masks: Mapping[str, torch.Tensor]) -> None:
        """Set some or all layers' masks (bool, or 0/1 numbers); every layer keeps >= 1 unit."""
        modules = self.mask_modules()
        checked = {}
        for layer, value in masks.items():
            if layer not in modules:
                raise ConfigError(f"no prunable layer {layer!r}; layers are: {', '.join(self.layers)}")
            value = torch.as_tensor(value)
            if value.shape != (self.widths[layer],):
                raise ConfigError(
                    f"mask for {layer!r} has shape {tuple(value.shape)}, "
                    f"expected ({self.widths[layer]},)"
                )
            if value.dtype != torch.bool:
                if not bool(((value == 0) | (value == 1)).all()):
                    raise ConfigError(f"mask for {layer!r} must be boolean or 0/1")
                value = value != 0
            if not bool(value.any()):
                raise ConfigError(f"mask for {layer!r} drops every unit; a layer keeps at least 1")
            checked[layer] = value
        with torch.no_grad():
            for layer, value in checked.items():
                buf = modules[layer].mask
                buf.copy_(value.to(device=buf.device, dtype=buf.dtype))

    def weight_state_dict(self) -> dict[str, torch.Tensor]:
        """``state_dict()`` without the mask buffers (cloned), for "reset to initial weights"."""
        return {
            k: v.detach().clone() for k, v in self.state_dict().items() if k not in self._mask_names
        }

    def load_weight_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load weights (every non-mask entry, nothing else); the masks are left as they are."""
        expected = set(self.state_dict()) - self._mask_names
        got = set(state)
        if got != expected:
            missing, extra = sorted(expected - got), sorted(got - expected)
            raise ConfigError(f"weight state mismatch: missing {missing[:5]}, unexpected {extra[:5]}")
        masks = {k: v.clone() for k, v in self.state_dict().items() if k in self._mask_names}
        self.load_state_dict({**state, **masks}, strict=True)

    def remaining_per_layer(self) -> dict[str, float]:
        return {x: float(m.sum()) / m.numel() for x, m in self.get_masks().items()}

    def remaining_fraction(self) -> float:
        masks = self.get_masks()
        return sum(int(m.sum()) for m in masks.values()) / sum(self.widths.values())
