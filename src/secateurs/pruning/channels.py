"""Channel flow: where each prunable layer's units go in the traced graph, and whether export can
remove them.

From each mask, the analysis follows the tensor through the graph and keeps, for every node, a
``Space``: which axis holds the tracked channels and what lies along it (segments of prunable
layers' channels, or fixed channels, after a ``torch.cat``; each channel repeated over the
positions a flatten spread it over). Ops are handled by kind, from one table:

- zero-preserving per-channel ops (activations with f(0) = 0, dropout, identity, clone, dtype
  casts), pooling, interpolation / upsampling and zero padding of other dims, and elementwise
  multiplication or division by a number or by a tensor that is constant along the channel
  axis (either side of ``*``): the channels pass through;
- additions of two tracked tensors: their layers' channels are *coupled* (one channel group);
- ``torch.cat`` along the channel axis: the segments are concatenated;
- reshapes (flatten, view, squeeze, unsqueeze), permutes / transposes, indexing and reductions
  over other dims: the channel axis moves;
- a Linear / RNN reading the last dim, a convolution reading dim 1: a consumer whose input
  weights lose the removed channels (``space_of``);
- what a masked recurrent module returns (``out, (h_n, c_n) = lstm(x)``, ``out, h_n = gru(x)``):
  the output sequence carries its last layer's units on the last dim; h_n / c_n stack the layers
  on dim 0, so ``h_n[k]`` (any int, e.g. ``h_n[-1]``) carries one layer's (and direction's) units
  (with one unidirectional layer, h_n is followed like any tensor: ``h_n.squeeze(0)``); other
  reads of stacked states are barriers; a bidirectional output is [forward, backward] units;
- a prunable depthwise convolution: its output channels are its input channels, so it joins the
  producer's channel group (as Torch-Pruning's dependency graph couples them).

Anything else a tracked tensor reaches (LayerNorm, a BatchNorm after the mask, a channel-mixing
op, an addition of a constant, a network output, a module called twice) is a *barrier*: that
group's dead channels are kept and zeroed by export, and ``barriers`` says why.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from .layers import consumer_kind, is_depthwise, is_grouped, unit_dim

# Elementwise ops with f(0) == 0: a dead channel stays exactly zero through them.
ZERO_PRESERVING_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Tanh,
    nn.Hardswish, nn.Mish, nn.Softsign, nn.Tanhshrink, nn.Hardshrink, nn.Softshrink,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.Identity,
)  # (not AlphaDropout: in training it maps 0 to a non-zero value; it joins a mask's tail)
ZERO_PRESERVING_FUNCTIONS = {
    F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.celu, F.selu,
    F.gelu, F.silu, torch.tanh, F.tanh, F.hardswish, F.mish, F.softsign, F.tanhshrink,
    F.hardshrink, F.softshrink, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
    torch.abs, torch.neg, operator.neg, torch.clone, torch.square, torch.sin,
}
ZERO_PRESERVING_METHODS = {
    "relu", "relu_", "tanh", "tanh_", "abs", "neg", "clone", "contiguous", "float", "double",
    "half", "bfloat16", "to", "type_as", "detach", "square", "sin",
}
# Ops over the positions (dims >= 2) of an (N, C, ...) tensor, channel by channel, f(0) == 0.
SPATIAL_MODULES: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.LPPool1d, nn.LPPool2d, nn.Upsample,
    nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d,
)
SPATIAL_FUNCTIONS = {
    F.max_pool1d, F.max_pool2d, F.max_pool3d, F.avg_pool1d, F.avg_pool2d, F.avg_pool3d,
    F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, F.adaptive_max_pool1d,
    F.adaptive_max_pool2d, F.adaptive_max_pool3d, F.lp_pool1d, F.lp_pool2d, F.interpolate,
    F.upsample, F.upsample_nearest, F.upsample_bilinear,
}
PAD_MODULES: tuple[type[nn.Module], ...] = (
    nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ReflectionPad1d, nn.ReflectionPad2d,
    nn.ReplicationPad1d, nn.ReplicationPad2d, nn.ConstantPad1d, nn.ConstantPad2d,
)
ADD_FUNCTIONS = {operator.add, operator.iadd, operator.sub, operator.isub, torch.add, torch.sub}
ADD_METHODS = {"add", "add_", "sub", "sub_"}
MUL_FUNCTIONS = {operator.mul, operator.imul, torch.mul}
MUL_METHODS = {"mul", "mul_"}
DIV_FUNCTIONS = {operator.truediv, operator.itruediv, torch.div, torch.true_divide}
DIV_METHODS = {"div", "div_", "true_divide"}
REDUCE_FUNCTIONS = {torch.mean, torch.sum, torch.amax, torch.amin, torch.nansum, torch.nanmean}
REDUCE_METHODS = {"mean", "sum", "amax", "amin", "nansum", "nanmean"}
VALUES_INDEX_FUNCTIONS = {torch.max, torch.min, torch.median, torch.mode}
VALUES_INDEX_METHODS = {"max", "min", "median", "mode"}
RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}
RESHAPE_METHODS = {"flatten", "view", "reshape", "squeeze", "unsqueeze", "unflatten"}
PERMUTE_FUNCTIONS = {torch.permute, torch.transpose, torch.swapaxes, torch.movedim, torch.t}
PERMUTE_METHODS = {"permute", "transpose", "swapaxes", "movedim", "t"}
CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}
SHAPE_METHODS = {"size", "dim", "numel", "ndimension"}  # read the shape, not the values


@dataclass(frozen=True)
class Space:
    """What lies along axis ``dim`` of a tensor: ``outer`` copies of the concatenated segments,
    each segment's channels repeated ``inner`` times in a row (after a flatten). A segment is
    ``(layer, width)``: a prunable layer's channels (its group's, once coupled) or ``None`` for
    channels no mask tracks (kept as they are)."""

    dim: int
    segments: tuple[tuple[str | None, int], ...]
    inner: int = 1
    outer: int = 1

    @property
    def width(self) -> int:
        return sum(w for _, w in self.segments)

    @property
    def length(self) -> int:
        return self.outer * self.width * self.inner

    def layers(self) -> list[str]:
        return [s for s, _ in self.segments if s is not None]

    def moved(self, dim: int) -> Space:
        return Space(dim, self.segments, self.inner, self.outer)

    def input_index(self, keep: dict[str, list[int]]) -> list[int]:
        """The positions along ``dim`` that stay when each layer keeps ``keep[layer]``."""
        width, out = self.width, []
        for o in range(self.outer):
            offset = 0
            for layer, w in self.segments:
                kept = range(w) if layer is None else keep[layer]
                for c in kept:
                    base = (o * width + offset + c) * self.inner
                    out.extend(range(base, base + self.inner))
                offset += w
        return out


@dataclass
class ChannelFlow:
    """Where each prunable layer's output channels go, read off the traced graph(s).

    ``tails[layer]``: the nodes from the layer's call to its mask (exclusive of the mask).
    ``space_of[module]``: for each consumer module whose input carries masked channels, the
    ``Space`` of that input (which positions of its input dim are which layer's channels).
    ``barriers[layer]``: why that layer's channels cannot be physically removed (they are then
    kept and zeroed by export).
    """

    layers: tuple[str, ...]
    tails: dict[str, list[fx.Node]]
    mask_nodes: dict[str, fx.Node]
    space_of: dict[str, Space] = field(default_factory=dict)
    barriers: dict[str, list[str]] = field(default_factory=dict)
    called: dict[str, int] = field(default_factory=dict)  # consumer module -> calls
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

    def block(self, layer: str, why: str) -> None:
        reasons = self.barriers.setdefault(layer, [])
        if why not in reasons:
            reasons.append(why)

    def barrier_reasons(self, layer: str) -> list[str]:
        """Why the channels of ``layer``'s group cannot be removed (empty if they can)."""
        return [r for x in self.group_of(layer) for r in self.barriers.get(x, [])]

    def merge(self, other: ChannelFlow) -> None:
        """Add what another mode's graph says (train vs eval): couplings, barriers, consumers;
        a consumer that reads different channels in the two graphs becomes a barrier."""
        for layer in self.layers:
            self.union(layer, other.root(layer))
            for why in other.barriers.get(layer, []):
                self.block(layer, why)
        for name, space in other.space_of.items():
            mine = self.space_of.get(name)
            if mine is None or mine != space:
                for layer in {*space.layers(), *(mine.layers() if mine else [])}:
                    self.block(layer, f"{name!r} reads them differently in train and eval mode")
                self.space_of.pop(name, None)
        for name in set(self.space_of) - set(other.space_of):
            if other.called.get(name):
                for layer in self.space_of.pop(name).layers():
                    self.block(layer, f"{name!r} reads them differently in train and eval mode")


def shape_of(node) -> torch.Size | None:
    meta = node.meta.get("tensor_meta") if isinstance(node, fx.Node) else None
    return getattr(meta, "shape", None)


def _is(node: fx.Node, functions: set, methods: set) -> bool:
    return (node.op == "call_function" and node.target in functions) or (
        node.op == "call_method" and node.target in methods
    )


def _arg(node: fx.Node, index: int, name: str, default=None):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _zero_preserving(node: fx.Node, module: nn.Module | None) -> bool:
    if module is not None:
        if isinstance(module, nn.Hardtanh):
            return module.min_val <= 0.0 <= module.max_val
        if isinstance(module, nn.PReLU):
            return True
        from .masks import UnitMask

        return isinstance(module, (*ZERO_PRESERVING_MODULES, UnitMask))
    if node.op == "call_function" and node.target is F.hardtanh:
        lo, hi = _arg(node, 1, "min_val", -1.0), _arg(node, 2, "max_val", 1.0)
        return lo <= 0.0 <= hi
    if node.op == "call_function" and node.target in (torch.clamp, torch.clip):
        lo, hi = _arg(node, 1, "min"), _arg(node, 2, "max")
        return all(not isinstance(v, fx.Node) for v in (lo, hi)) and (
            (lo is None or lo <= 0.0) and (hi is None or hi >= 0.0)
        )
    if node.op == "call_method" and node.target in ("clamp", "clip", "clamp_"):
        lo, hi = _arg(node, 1, "min"), _arg(node, 2, "max")
        return all(not isinstance(v, fx.Node) for v in (lo, hi)) and (
            (lo is None or lo <= 0.0) and (hi is None or hi >= 0.0)
        )
    return _is(node, ZERO_PRESERVING_FUNCTIONS, ZERO_PRESERVING_METHODS)


def is_zero_preserving(node: fx.Node, gm: fx.GraphModule) -> bool:
    """True if the op maps a channel that is exactly zero to exactly zero, channel by channel."""
    module = gm.get_submodule(str(node.target)) if node.op == "call_module" else None
    return _zero_preserving(node, module)


def _merge_groups(src: tuple[int, ...], dst: tuple[int, ...]) -> list[list[int]] | None:
    """For a reshape ``src -> dst`` that only merges neighbouring dims (and adds or drops dims
    of size 1): for each dst dim, the src dims it is made of; None for any other reshape."""
    groups: list[list[int]] = []
    i = 0
    for size in dst:
        group, prod = [], 1
        if size == 1 and (i >= len(src) or src[i] != 1):
            groups.append(group)
            continue
        while i < len(src) and (prod < size or (prod == size and not group)):
            prod *= src[i]
            group.append(i)
            i += 1
        while i < len(src) and src[i] == 1 and prod == size and (size != 1 or not group):
            group.append(i)
            i += 1
        if prod != size:
            return None
        groups.append(group)
    while i < len(src) and src[i] == 1:
        if not groups:
            return None
        groups[-1].append(i)
        i += 1
    return groups if i == len(src) else None


def _reshaped(space: Space, src: tuple[int, ...], dst: tuple[int, ...]) -> Space | None:
    groups = _merge_groups(src, dst)
    if groups is None:
        return None
    for new_dim, group in enumerate(groups):
        if space.dim in group:
            before = math.prod(src[d] for d in group if d < space.dim)
            after = math.prod(src[d] for d in group if d > space.dim)
            return Space(new_dim, space.segments, space.inner * after, space.outer * before)
    return None


def _dims(value, ndim: int) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value % ndim,)
    if isinstance(value, (tuple, list)) and all(isinstance(v, int) for v in value):
        return tuple(v % ndim for v in value)
    return None


def _index_dims(index, ndim: int) -> tuple[list[int | None], list] | None:
    """For ``x[index]``: per input dim, its output dim (None if an integer removed it), and the
    index item of each input dim; None if the index is not made of ints, slices, None and
    Ellipsis."""
    items = list(index) if isinstance(index, tuple) else [index]
    if not all(i is None or i is Ellipsis or isinstance(i, (int, slice)) for i in items):
        return None
    if sum(i is Ellipsis for i in items) > 1:
        return None
    used = sum(1 for i in items if i is not None and i is not Ellipsis)
    expanded = []
    for i in items:
        expanded.extend([slice(None)] * (ndim - used) if i is Ellipsis else [i])
    if sum(1 for i in expanded if i is not None) < ndim:
        expanded += [slice(None)] * (ndim - sum(1 for i in expanded if i is not None))
    mapping: list[int | None] = []
    out = 0
    for i in expanded:
        if i is None:
            out += 1
        elif isinstance(i, int):
            mapping.append(None)
        else:
            mapping.append(out)
            out += 1
    return mapping, expanded


_OPERATORS = {
    "add": "+", "iadd": "+=", "sub": "-", "mul": "*", "imul": "*=", "truediv": "/",
    "floordiv": "//", "matmul": "@", "getitem": "[...] (indexing)", "neg": "unary -",
}


def describe(node: fx.Node) -> str:
    """An fx node roughly as the forward wrote it (``torch.cat``, ``.max()``, ``+``,
    ``self.pool``), with its graph name, for messages: not the graph's own notation."""
    target = node.target
    if node.op == "call_module":
        what = f"self.{target}"
    elif node.op == "call_method":
        what = f".{target}()"
    elif node.op == "call_function":
        name = getattr(target, "__name__", str(target))
        module = getattr(target, "__module__", "") or ""
        if module in ("_operator", "operator"):
            what = _OPERATORS.get(name, f"operator.{name}")
        elif module.startswith("torch.nn.functional"):
            what = f"F.{name}"
        elif module.startswith("torch") or module == "builtins" and hasattr(torch, name):
            what = f"torch.{name}"
        else:
            what = name
    else:
        what = node.op
    return f"{what} (node {node.name!r})"


def analyse_channel_flow(
    gm: fx.GraphModule,
    layers: tuple[str, ...],
    tails: dict[str, list[fx.Node]],
    mask_nodes: dict[str, fx.Node],
) -> ChannelFlow:
    """Propagate ``Space``s through a shape-annotated masked graph, from every mask onwards."""
    from .recurrent import RecurrentUnits

    flow = ChannelFlow(layers, tails, mask_nodes)
    space: dict[fx.Node, Space] = {}
    # values a recurrent module returns (its output tuple, the (h_n, c_n) pair, stacked states)
    recurrent: dict[fx.Node, tuple[str, RecurrentUnits]] = {}
    recurrent_layers = set()
    for x in layers:
        if mask_nodes[x].op == "call_module" and isinstance(
            gm.get_submodule(str(mask_nodes[x].target)), RecurrentUnits
        ):
            recurrent_layers.add(x)  # seeded where the module's outputs are read
            continue
        shape = shape_of(mask_nodes[x])
        dim = 1 if unit_dim(gm.get_submodule(x)) == 1 else len(shape) - 1
        space[mask_nodes[x]] = Space(dim, ((x, int(shape[dim])),))
    tail_nodes = {n for chain in tails.values() for n in chain}
    consumer_calls: dict[str, list[Space | None]] = {}
    prunable = set(layers)

    def block_all(spaces, why: str) -> None:
        for s in spaces:
            for layer in s.layers():
                flow.block(layer, why)

    for x in layers:
        if x in recurrent_layers:
            continue
        if is_grouped(gm.get_submodule(x)):
            flow.block(x, f"{x!r} is a grouped convolution: its channels can only go group by group")

    for node in gm.graph.nodes:
        if node in space or node.op in ("placeholder", "get_attr"):
            continue
        tracked = [a for a in node.all_input_nodes if a in space]
        module = gm.get_submodule(str(node.target)) if node.op == "call_module" else None
        name = str(node.target)
        if isinstance(module, RecurrentUnits):  # masked recurrent module: a consumer of its input
            recurrent[node] = ("call", module)
            name, module = module.rnn_name, module.rnn
        from_recurrent = [a for a in node.all_input_nodes if a in recurrent]
        if from_recurrent:
            result = _recurrent_value(node, recurrent, space, flow)
            if isinstance(result, Space):
                space[node] = result
            elif isinstance(result, tuple):
                recurrent[node] = result
            else:
                for a in from_recurrent:
                    for layer in _recurrent_layers(recurrent[a][1], flow):
                        flow.block(layer, result)
                block_all([space[a] for a in tracked], result)
            continue
        kind = consumer_kind(module) if module is not None else None
        if kind is not None:
            first = node.args[0] if node.args else None
            src = space.get(first) if isinstance(first, fx.Node) else None
            consumer_calls.setdefault(name, []).append(src)
            others = [a for a in tracked if a is not first]
            block_all([space[a] for a in others], f"{describe(node)} reads them as a weight")
            if src is None:
                if is_depthwise(module) and name in prunable:
                    flow.block(name, f"depthwise convolution {name!r}: its channels are its "
                                     "input's, which no mask tracks")
                continue
            ndim = len(shape_of(first) or ())
            refusal = kind.refuse(module)
            if refusal is not None:
                block_all([src], f"{name!r}: {refusal}")
            elif kind.reads_last_dim and src.dim != ndim - 1:
                block_all([src], f"{name!r} reads its last dim, not the one they are on")
            elif not kind.reads_last_dim and (src.dim != 1 or src.inner != 1 or src.outer != 1):
                block_all([src], f"{name!r} reads channels on dim 1, not where they are")
            elif is_depthwise(module):
                if name in prunable and len(src.segments) == 1 and src.segments[0][0]:
                    flow.union(src.segments[0][0], name)  # its channels are its input's
                else:
                    block_all([src], f"depthwise convolution {name!r} is not prunable, its "
                                     "channels are tied to theirs")
            continue
        if node in tail_nodes and not tracked:
            continue
        if not tracked:
            continue
        if node.op == "call_method" and node.target in SHAPE_METHODS:
            continue
        if node.op == "call_function" and node.target is getattr and node.args[1] in (
            "shape", "dtype", "device", "ndim"
        ):
            continue
        if node.op == "output":
            block_all([space[a] for a in tracked], "its channels are a network output")
            continue
        try:
            result = _propagate(node, module, space, tracked, flow)
        except Exception:  # an op used in a way the table does not foresee: keep its channels
            result = None
        if isinstance(result, Space):
            space[node] = result
        else:
            why = result or (
                f"its channels reach {describe(node)}, which export cannot follow (not a "
                "zero-preserving per-channel op or a layer's input)"
            )
            block_all([space[a] for a in tracked], why)
    for name, calls in consumer_calls.items():
        flow.called[name] = len(calls)
        if len(calls) > 1:
            block_all([c for c in calls if c is not None],
                      f"module {name!r} reads them and is called {len(calls)} times")
        elif calls[0] is not None:
            flow.space_of[name] = calls[0]
    return flow


def _recurrent_layers(wrapper, flow: ChannelFlow) -> list[str | None]:
    """The prunable layer of each layer and direction of a masked recurrent module, in h_n order
    (None: not prunable)."""
    from .recurrent import layer_names

    return [x if x in flow.layers else None for x in layer_names(wrapper.rnn_name, wrapper.rnn)]


def _recurrent_value(node: fx.Node, recurrent: dict, space: dict, flow: ChannelFlow):
    """What ``node`` makes of a value a masked recurrent module returned: a ``Space`` (the output
    sequence, one layer's states), another such value (the (h_n, c_n) pair, stacked states), or
    why export cannot follow it (str)."""
    sources = [a for a in node.all_input_nodes if a in recurrent]
    kind, wrapper = recurrent[sources[0]]
    layers = _recurrent_layers(wrapper, flow)
    width = wrapper.rnn.hidden_size

    def layer_space(k: int) -> Space:
        return Space(2, ((layers[k], width),))

    if node.op == "output":
        return "its channels are a network output"
    getitem = node.op == "call_function" and node.target is operator.getitem and len(sources) == 1
    if not getitem or node.args[0] is not sources[0]:
        return f"{describe(node)} reads the states of {wrapper.rnn_name!r} (not followed)"
    index = node.args[1]
    if kind in ("call", "pair") and isinstance(index, int):
        if kind == "call" and index % 2 == 0:  # the output: [forward units, backward units]
            count = 2 if wrapper.rnn.bidirectional else 1
            return Space(2, tuple((x, width) for x in layers[len(layers) - count:]))
        if kind == "call" and isinstance(wrapper.rnn, nn.LSTM):
            return ("pair", wrapper)
        # h_n or c_n: (layers, batch, units); one layer: an ordinary space along the last dim
        return layer_space(0) if len(layers) == 1 else ("stack", wrapper)
    if kind == "stack":
        first = index[0] if isinstance(index, tuple) and index else index
        if isinstance(first, int) and not isinstance(first, bool):
            k = first % len(layers)
            return _propagate(node, None, {**space, node.args[0]: layer_space(k)},
                              [node.args[0]], flow)
    return (f"{describe(node)} reads the stacked states of {wrapper.rnn_name!r} (index them "
            "by layer, e.g. h_n[-1])")


def _propagate(node: fx.Node, module, space: dict, tracked: list, flow: ChannelFlow):
    """The Space of ``node``'s output, or a reason (str) / None if export cannot follow it."""
    first = node.args[0] if node.args else None
    src = space.get(first) if isinstance(first, fx.Node) else None
    in_shape, out_shape = shape_of(first), shape_of(node)
    only_first = src is not None and tracked == [first] and all(
        a is not first for a in list(node.args[1:]) + list(node.kwargs.values())
    )
    # -- max / min over another dim: a (values, indices) pair whose values keep the channels
    if only_first and _is(node, VALUES_INDEX_FUNCTIONS, VALUES_INDEX_METHODS):
        ndim = len(in_shape or ())
        dims = _dims(_arg(node, 1, "dim"), ndim) if ndim else None
        meta = node.meta.get("tensor_meta")
        if dims is None or len(dims) != 1 or src.dim in dims or not isinstance(meta, (tuple, list)):
            return f"{describe(node)} reduces over them"
        keep = bool(_arg(node, 2, "keepdim", False))
        return src.moved(src.dim if keep else src.dim - (dims[0] < src.dim))
    # -- the values of max / min over another dim (``torch.max(x, 2)[0]``, ``.values``); the
    # pair itself has no one shape, so before the shape checks below
    if only_first and node.op == "call_function" and isinstance(first.meta.get("tensor_meta"), (
        tuple, list)) and _is(first, VALUES_INDEX_FUNCTIONS, VALUES_INDEX_METHODS) and (
        node.target is operator.getitem and node.args[1] == 0
        or node.target is getattr and node.args[1] == "values"
    ):
        return src
    if out_shape is None or (src is not None and in_shape is None):
        return None
    ndim, odim = len(in_shape or ()), len(out_shape)
    if isinstance(module, nn.PReLU) and module.num_parameters > 1:
        return f"{describe(node)} has a weight per channel"
    # -- elementwise, zero-preserving, one tensor
    if only_first and tuple(in_shape) == tuple(out_shape) and _zero_preserving(node, module):
        return src
    # -- pooling / interpolation over the positions of (N, C, ...)
    spatial = (module is not None and isinstance(module, SPATIAL_MODULES)) or (
        node.op == "call_function" and node.target in SPATIAL_FUNCTIONS
    )
    if spatial and only_first:
        if src.dim == 1 and src.inner == src.outer == 1 and tuple(in_shape[:2]) == tuple(
            out_shape[:2]
        ):
            return src
        return f"{describe(node)} pools over the dim that holds them"
    # -- padding
    pad_fn = node.op == "call_function" and node.target is F.pad
    if only_first and (pad_fn or (module is not None and isinstance(module, PAD_MODULES))):
        width = len(module.padding) if module is not None else len(_arg(node, 1, "pad", ()))
        value = getattr(module, "value", 0.0) if module is not None else _arg(node, 3, "value", 0)
        mode = "constant" if module is None else None
        if pad_fn:
            mode = _arg(node, 2, "mode", "constant")
        padded = width // 2
        if src.dim < ndim - padded and (value in (0, 0.0, None)) and mode in ("constant", None):
            return src
        if src.dim < ndim - padded and module is not None and not isinstance(
            module, (nn.ConstantPad1d, nn.ConstantPad2d)
        ):
            return src  # reflection / replication of a zero channel is zero
        return f"{describe(node)} pads them with a non-zero value or along their dim"
    # -- elementwise with a number or a tensor constant along the channel axis
    is_mul = _is(node, MUL_FUNCTIONS, MUL_METHODS)
    is_div = _is(node, DIV_FUNCTIONS, DIV_METHODS)
    is_add = _is(node, ADD_FUNCTIONS, ADD_METHODS)
    if (is_mul or is_div or is_add) and len(node.args) >= 2:
        a, b = node.args[0], node.args[1]
        sa = space.get(a) if isinstance(a, fx.Node) else None
        sb = space.get(b) if isinstance(b, fx.Node) else None
        if is_add:
            if sa is not None and sb is not None and tuple(shape_of(a)) == tuple(
                shape_of(b)
            ) == tuple(out_shape) and _add_compatible(sa, sb):
                for (la, _), (lb, _) in zip(sa.segments, sb.segments, strict=True):
                    if la is not None:
                        flow.union(la, lb)
                return sa
            if "alpha" in node.kwargs:
                return None
            return f"{describe(node)} adds something else to them (a dead channel would " \
                   "not stay zero)"
        if sa is not None and sb is not None:
            return f"{describe(node)} multiplies two tracked tensors"
        tracked_space, tracked_node, other = (sa, a, b) if sa is not None else (sb, b, a)
        if is_div and sa is None:
            return f"{describe(node)} divides by them"
        if tuple(shape_of(tracked_node)) != tuple(out_shape):
            return f"{describe(node)} broadcasts them"
        if isinstance(other, (int, float, bool)):
            return tracked_space
        other_shape = shape_of(other) if isinstance(other, fx.Node) else None
        if other_shape is not None:
            offset = odim - len(other_shape)
            pos = tracked_space.dim - offset
            if pos < 0 or other_shape[pos] == 1:
                return tracked_space
        return f"{describe(node)} scales them channel by channel with an untracked tensor"
    # -- reductions over other dims
    if only_first and _is(node, REDUCE_FUNCTIONS, REDUCE_METHODS):
        dims = _dims(_arg(node, 1, "dim"), ndim)
        if dims is None or src.dim in dims:
            return f"{describe(node)} reduces over them"
        keep = bool(_arg(node, 2, "keepdim", False))
        return src.moved(src.dim if keep else src.dim - sum(d < src.dim for d in dims))
    # -- reshapes
    is_flatten_module = module is not None and isinstance(module, (nn.Flatten, nn.Unflatten))
    if only_first and (is_flatten_module or _is(node, RESHAPE_FUNCTIONS, RESHAPE_METHODS)):
        moved = _reshaped(src, tuple(in_shape), tuple(out_shape))
        if moved is not None and moved.length == out_shape[moved.dim]:
            sizes = _literal_sizes(node)
            if sizes is not None and moved.dim < len(sizes) and isinstance(
                sizes[moved.dim], int
            ) and sizes[moved.dim] != -1:
                return f"{describe(node)} hard-codes their number ({sizes[moved.dim]})"
            return moved
        return f"{describe(node)} reshapes the dim that holds them"
    # -- permutes / transposes
    if only_first and _is(node, PERMUTE_FUNCTIONS, PERMUTE_METHODS):
        new = _permuted(node, src.dim, ndim)
        if new is not None and out_shape[new] == in_shape[src.dim]:
            return src.moved(new)
        return None
    # -- indexing
    if only_first and node.op == "call_function" and node.target is operator.getitem:
        mapped = _index_dims(node.args[1], ndim)
        if mapped is None:
            return f"{describe(node)} indexes them"
        mapping, expanded = mapped
        item = expanded[src.dim]
        if item == slice(None) and mapping[src.dim] is not None:
            return src.moved(mapping[src.dim])
        return f"{describe(node)} selects some of them"
    # -- concatenation
    if node.op == "call_function" and node.target in CAT_FUNCTIONS:
        return _concatenated(node, space, out_shape)
    return None


def _literal_sizes(node: fx.Node) -> list | None:
    """The sizes a view / reshape asks for (ints, -1 or nodes), or None for other reshapes."""
    if node.op == "call_method" and node.target in ("view", "reshape"):
        sizes = list(node.args[1:])
    elif node.op == "call_function" and node.target is torch.reshape:
        sizes = list(node.args[1:2]) or [node.kwargs.get("shape")]
    else:
        return None
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = list(sizes[0])
    return sizes


def _add_compatible(a: Space, b: Space) -> bool:
    if a.dim != b.dim or a.inner != b.inner or a.outer != b.outer:
        return False
    if len(a.segments) != len(b.segments):
        return False
    return all(
        wa == wb and (la is None) == (lb is None)
        for (la, wa), (lb, wb) in zip(a.segments, b.segments, strict=True)
    )


def _permuted(node: fx.Node, dim: int, ndim: int) -> int | None:
    target = node.target
    rest = list(node.args[1:])
    if target in (torch.t, "t"):
        return {0: 1, 1: 0}.get(dim, dim)
    if target in (torch.permute, "permute"):
        order = rest[0] if len(rest) == 1 and isinstance(rest[0], (tuple, list)) else rest
        if not order:
            order = node.kwargs.get("dims", ())
        order = [o % ndim for o in order]
        return order.index(dim) if dim in order else None
    if target in (torch.movedim, "movedim"):
        s, d = _dims(rest[0] if rest else None, ndim), _dims(rest[1] if len(rest) > 1 else None, ndim)
        if s is None or d is None or len(s) != 1:
            return None
        order = [i for i in range(ndim) if i != s[0]]
        order.insert(d[0], s[0])
        return order.index(dim)
    if len(rest) >= 2 and all(isinstance(v, int) for v in rest[:2]):
        a, b = rest[0] % ndim, rest[1] % ndim
        return b if dim == a else a if dim == b else dim
    return None


def _concatenated(node: fx.Node, space: dict, out_shape) -> Space | str | None:
    tensors = _arg(node, 0, "tensors")
    if not isinstance(tensors, (tuple, list)) or not all(isinstance(t, fx.Node) for t in tensors):
        return None
    dim = _arg(node, 1, "dim", 0) % len(out_shape)
    spaces = [space.get(t) for t in tensors]
    if any(s is not None and s.dim != dim for s in spaces):
        # along another dim: every piece must carry the same channels
        if all(s is not None for s in spaces) and len({s for s in spaces}) == 1:
            return spaces[0]
        return f"{describe(node)} concatenates them along another dim"
    segments: list[tuple[str | None, int]] = []
    for t, s in zip(tensors, spaces, strict=True):
        if s is None:
            segments.append((None, int(shape_of(t)[dim])))
        elif s.inner != 1 or s.outer != 1:
            return f"{describe(node)} concatenates flattened channels"
        else:
            segments.extend(s.segments)
    return Space(dim, tuple(segments))
