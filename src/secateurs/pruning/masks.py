"""DropNet's masks: one per-unit mask at the post-activation point of every prunable layer.

``MaskedNetwork`` traces a model with ``torch.fx`` and inserts a ``UnitMask`` after each prunable
layer's per-channel tail (BatchNorm, activation, dropout), so that a dropped unit outputs exactly
zero from that point on and its DropNet score (mean |post-activation|) is read at the mask.

- **Which layers** (``discovery``): from the traced graph; output layers, shared layers and
  layers the forward never calls are not prunable.
- **Train and eval mode**: ``torch.fx`` bakes ``self.training`` into the graph, so the model is
  traced once per mode; the two graphs share every module (so every weight and mask), and the
  masked network runs the one of its current mode, as the model itself would.
- **Units**: a Linear's on its output's last dim (per-token layers), a convolution's on dim 1.
- **Recurrent layers** (``recurrent``): layer k of an ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` called
  ``lstm`` is the prunable layer ``lstm.l{k}``; its units are masked in the weights (the module's
  call is replaced by a ``RecurrentUnits`` call), so a dropped unit's h_t is exactly 0.
- **Outputs**: the traced graph returns what the model returns; ``MaskedNetwork.forward``
  returns the *logits* that training, scoring and evaluation use: the model's output if it is a
  tensor, else its first tensor (a tuple's first element, a dict's first value), or the element
  named by ``output=`` (an index or key; or the model's ``secateurs_output`` attribute).

The same traces give the channel flow that ``surgery.export_pruned`` uses (``channels``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.utils import _pytree as pytree

from ..errors import ConfigError
from .channels import ChannelFlow, analyse_channel_flow, is_zero_preserving, shape_of
from .discovery import check_declared, discover, module_calls, no_layers_error
from .layers import unit_dim, units_of, unsliceable_modules
from .recurrent import (
    RECURRENT_ATTR,
    RecurrentUnitMask,
    RecurrentUnits,
    check_input,
    layer_names,
    resolve,
)
from .tracing import check_gradients_survive, propagate_shapes, traced_graphs

__all__ = [
    "MASKS_ATTR", "ChannelFlow", "MaskedNetwork", "UnitMask", "is_zero_preserving",
    "select_output",
]

MASKS_ATTR = "secateurs_unit_masks"

# Per-unit elementwise ops that may sit between a layer and its mask (the "post-activation" tail).
_TAIL_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Softplus,
    nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.Dropout,
    nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.Identity,
)  # AlphaDropout moves 0 (SELU's self-normalising dropout): the mask must come after it
_NORM_TAIL: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def norm_kind(module: nn.Module, units_last: bool) -> str | None:
    """How a normalisation after a layer treats its units: "unit" when each unit is normalised on
    its own (BatchNorm, InstanceNorm, a GroupNorm with a group per channel: per-channel units on
    dim 1), "mixed" when they are normalised together (a GroupNorm with fewer groups, a
    LayerNorm over a Linear's units: a dropped unit changes the others' statistics, so it can
    be masked after the norm but not removed); None for anything else."""
    if isinstance(module, (*_NORM_TAIL, nn.modules.instancenorm._InstanceNorm)):
        return "unit"
    if isinstance(module, nn.GroupNorm):
        return "unit" if module.num_groups == module.num_channels else "mixed"
    if isinstance(module, nn.LayerNorm) and units_last and len(module.normalized_shape) == 1:
        return "mixed"
    return None
_TAIL_FUNCTIONS = {
    F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.celu, F.selu,
    F.gelu, F.silu, F.softplus, torch.tanh, F.tanh, torch.sigmoid, F.sigmoid, F.hardtanh,
    F.hardswish, F.hardsigmoid, F.mish, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d,
    F.alpha_dropout, F.feature_alpha_dropout,
}
_TAIL_METHODS = {"relu", "relu_", "tanh", "tanh_", "sigmoid", "sigmoid_"}


class UnitMask(nn.Module):
    """Multiplies its input by a per-unit 0/1 mask over dim 1 (``dim=1``: (N, C, ...) inputs)
    or over the last dim (``dim=-1``: a Linear's (N, ..., units) output).

    The mask is a plain float32 buffer (no parameters, no Python-side state) so that the network
    works with ``torch.func.functional_call`` and ``vmap`` over stacked parameters and buffers.
    """

    def __init__(self, units: int, dim: int = 1):
        super().__init__()
        if units < 1:
            raise ConfigError(f"a mask needs at least one unit, got {units}")
        if dim not in (1, -1):
            raise ConfigError(f"a mask's dim must be 1 or -1, got {dim}")
        self.dim = dim
        self.register_buffer("mask", torch.ones(units, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.mask.to(x.dtype)  # 0/1 in the activations' dtype: a bfloat16 net stays so
        if self.dim == -1 or x.dim() <= 2:
            return x * mask
        return x * mask.reshape((-1,) + (1,) * (x.dim() - 2))

    def extra_repr(self) -> str:
        return f"units={self.mask.shape[0]}" + ("" if self.dim == 1 else ", dim=-1")


def select_output(out, rule: int | str | None = None) -> torch.Tensor:
    """The logits among a model's outputs: ``out`` itself if a tensor; else the element at index
    or key ``rule``; else the first tensor (a dict's in insertion order)."""
    if rule is None:
        if isinstance(out, torch.Tensor):
            return out
        for leaf in pytree.tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                return leaf
        raise ConfigError(f"the model returns no tensor ({type(out).__name__}); nothing to train")
    try:
        value = out[rule]
    except (KeyError, IndexError, TypeError) as exc:
        keys = list(out) if isinstance(out, Mapping) else f"{len(out)} items" if isinstance(
            out, (tuple, list)) else type(out).__name__
        raise ConfigError(f"output={rule!r} is not among the model's outputs ({keys})") from exc
    if not isinstance(value, torch.Tensor):
        raise ConfigError(f"output={rule!r} is a {type(value).__name__}, not a tensor")
    return value


def _mask_key(layer: str) -> str:
    return layer.replace(".", "__")


def _is_tail_op(
    node: fx.Node, gm: fx.GraphModule, calls, on_dim1: bool, units_last: bool = False
) -> bool:
    if node.op == "call_module":
        module = gm.get_submodule(str(node.target))
        kind = norm_kind(module, units_last)
        if kind is not None:
            # BatchNorm, InstanceNorm, GroupNorm read channels on dim 1; a LayerNorm reads a
            # Linear's units on the last dim; a module with state used at two places cannot
            # be sliced for one of them
            where = units_last if isinstance(module, nn.LayerNorm) else on_dim1
            return where and len(calls[str(node.target)]) == 1
        if isinstance(module, nn.PReLU):  # a weight per unit is sliced with the layer
            return module.num_parameters == 1 or (on_dim1 and len(calls[str(node.target)]) == 1)
        return isinstance(module, _TAIL_MODULES)
    if node.op == "call_function":
        return node.target in _TAIL_FUNCTIONS
    if node.op == "call_method":
        return node.target in _TAIL_METHODS
    return False


def _follow_tail(
    start: fx.Node, gm: fx.GraphModule, calls, on_dim1: bool, units_last: bool = False
) -> list[fx.Node]:
    """From a layer's output, follow single-user per-unit elementwise ops and normalisations;
    return the chain."""
    chain = [start]
    node = start
    while len(node.users) == 1:
        (user,) = node.users
        if not (user.args and user.args[0] is node
                and _is_tail_op(user, gm, calls, on_dim1, units_last)):
            break
        if any(a is node for a in list(user.args[1:]) + list(user.kwargs.values())):
            break
        chain.append(user)
        node = user
    return chain


def _stateful_targets(gm: fx.GraphModule, chain: list[fx.Node]) -> list[str]:
    """The modules with weights or statistics in a tail (what export slices with the layer)."""
    out = []
    for node in chain:
        if node.op == "call_module":
            module = gm.get_submodule(str(node.target))
            if any(True for _ in module.parameters()) or any(True for _ in module.buffers()):
                out.append(str(node.target))
    return out


def _recurrent_wrappers(
    gm: fx.GraphModule, layers: tuple[str, ...], masks: nn.ModuleDict
) -> nn.ModuleDict:
    """One ``RecurrentUnits`` per recurrent module with prunable layers (shared by both graphs)."""
    wrappers = nn.ModuleDict()
    for layer in layers:
        found = resolve(gm, layer)
        if found is None or _mask_key(found[0]) in wrappers:
            continue
        name, rnn = found[0], found[1]
        unit_masks = []
        for x in layer_names(name, rnn):
            if x in layers:
                unit_masks.append(masks[_mask_key(x)])
            else:  # a layer the user did not declare prunable: a mask that stays all ones
                unit_masks.append(RecurrentUnitMask(rnn.hidden_size))
        wrappers[_mask_key(name)] = RecurrentUnits(name, rnn, unit_masks)
    return wrappers


def _insert_recurrent(
    gm: fx.GraphModule, wrappers: nn.ModuleDict, layers: tuple[str, ...], calls, tails, mask_nodes
) -> None:
    """Replace each recurrent module's call by its ``RecurrentUnits`` call."""
    for key, wrapper in wrappers.items():
        nodes = calls.get(wrapper.rnn_name, [])
        if not nodes:
            continue
        (node,) = nodes
        first = node.args[0] if node.args else None
        check_input(node, shape_of(first) if isinstance(first, fx.Node) else None)
        with gm.graph.inserting_after(node):
            new = gm.graph.call_module(f"{RECURRENT_ATTR}.{key}", node.args, node.kwargs)
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        for layer in layer_names(wrapper.rnn_name, wrapper.rnn):
            if layer in layers:
                tails[layer] = [new]
                mask_nodes[layer] = new


def _insert_masks(
    gm: fx.GraphModule, layers: tuple[str, ...], wrappers: nn.ModuleDict | None = None
) -> tuple[dict[str, list[fx.Node]], dict[str, fx.Node]]:
    """Insert a call of each layer's UnitMask (``gm.secateurs_unit_masks``) after its tail, and
    replace each recurrent module's call by its ``RecurrentUnits`` (``gm.secateurs_recurrent``)."""
    calls = module_calls(gm)
    tails: dict[str, list[fx.Node]] = {}
    mask_nodes: dict[str, fx.Node] = {}
    if wrappers is not None and len(wrappers):
        setattr(gm, RECURRENT_ATTR, wrappers)
        _insert_recurrent(gm, wrappers, layers, calls, tails, mask_nodes)
    for layer in layers:
        if layer in tails:
            continue
        nodes = calls.get(layer, [])
        if not nodes:  # a layer the train graph does not call (checked by discovery)
            continue
        module = gm.get_submodule(layer)
        on_dim1 = unit_dim(module) == 1 or len(shape_of(nodes[0]) or ()) == 2
        chain = _follow_tail(nodes[0], gm, calls, on_dim1, unit_dim(module) == -1)
        last = chain[-1]
        with gm.graph.inserting_after(last):
            mask_node = gm.graph.call_module(f"{MASKS_ATTR}.{_mask_key(layer)}", (last,))
        last.replace_all_uses_with(mask_node, delete_user_cb=lambda user, m=mask_node: user is not m)
        tails[layer] = chain
        mask_nodes[layer] = mask_node
    gm.graph.lint()
    gm.recompile()
    return tails, mask_nodes


class MaskedNetwork(nn.Module):
    """A model with a ``UnitMask`` at the post-activation point of each prunable layer.

    The wrapped graphs share their modules (and so their weights) with ``model``; deep-copy the
    model first if the unmasked original must stay untouched. Layers are named as in the original
    model. ``coupled_groups`` lists only groups of two or more layers (uncoupled layers are in no
    group). ``skipped``: the layers of a prunable type that discovery left out, and why.
    ``forward`` returns the logits (see ``select_output``); ``forward_all`` what the model returns.
    """

    def __init__(
        self,
        model: nn.Module,
        example_input: torch.Tensor,
        layers: Iterable[str] | None = None,
        *,
        output: int | str | None = None,
    ):
        super().__init__()
        if hasattr(model, MASKS_ATTR):
            raise ConfigError(f"the model already has an attribute {MASKS_ATTR!r}")
        graphs = traced_graphs(model)
        gm, gm_train = graphs[0], (graphs[1] if len(graphs) > 1 else None)
        self.skipped: dict[str, str] = {}
        if layers is None:
            layers = getattr(model, "prunable_layers", None)
        if layers is None:
            found = discover(model, graphs)
            layers, self.skipped = found.layers, found.skipped
            if not layers:
                raise no_layers_error(model, found)
        layers = tuple(layers)
        if not layers:
            raise ConfigError("no prunable layers given")
        if len(set(layers)) != len(layers):
            raise ConfigError(f"prunable layers repeat a name: {layers}")
        check_declared(model, layers, graphs)
        for i, g in enumerate(graphs):
            propagate_shapes(g, example_input, training=bool(i))
        check_gradients_survive(model, gm, example_input)
        masks = nn.ModuleDict()
        recurrent = set()
        for layer in layers:
            found = resolve(gm, layer)
            if found is not None:
                masks[_mask_key(layer)] = RecurrentUnitMask(found[1].hidden_size)
                recurrent.add(layer)
                continue
            module = gm.get_submodule(layer)
            masks[_mask_key(layer)] = UnitMask(units_of(module), unit_dim(module))
        wrappers = _recurrent_wrappers(gm, layers, masks)
        flows, outputs = [], []
        for i, g in enumerate(graphs):
            setattr(g, MASKS_ATTR, masks)
            tails, mask_nodes = _insert_masks(g, layers, wrappers)
            outputs.append(propagate_shapes(g, example_input, training=bool(i)))
            for x, node in mask_nodes.items():
                if x in recurrent:
                    continue
                shape = shape_of(node)
                dim = 1 if masks[_mask_key(x)].dim == 1 else -1
                if shape is None or len(shape) < 2 or shape[dim] != units_of(gm.get_submodule(x)):
                    raise ConfigError(
                        f"layer {x!r}: its output has shape {tuple(shape or ())}; expected its "
                        f"{units_of(gm.get_submodule(x))} units on dim {dim}"
                    )
            flows.append(analyse_channel_flow(g, layers, tails, mask_nodes))
        self.net = gm
        object.__setattr__(self, "train_net", gm_train)  # shares gm's modules; not registered
        self.flow: ChannelFlow = flows[0]
        if len(flows) > 1:
            self.flow.merge(flows[1])
            for x in layers:
                sliced = [_stateful_targets(gm, f.tails.get(x, flows[0].tails[x])) for f in flows]
                if sliced[0] != sliced[1]:
                    self.flow.block(x, "its per-unit tail differs between train and eval mode")
        for x in layers:
            for node in self.flow.tails.get(x, [])[1:]:
                norm = gm.get_submodule(str(node.target)) if node.op == "call_module" else None
                if norm is not None and norm_kind(norm, True) == "mixed":  # in a tail: on its units
                    self.flow.block(x, f"{str(node.target)!r} ({type(norm).__name__}) normalises "
                                       "its units together: removing one would change the "
                                       "others' statistics")
        for consumer, (why, _) in unsliceable_modules(gm).items():
            space = self.flow.space_of.get(consumer)
            for x in space.layers() if space is not None else ():
                self.flow.block(x, f"{consumer!r} reads them, and {why}: its inputs cannot be "
                                   "cut")
        self.layers: tuple[str, ...] = layers
        self.widths: dict[str, int] = {x: int(masks[_mask_key(x)].mask.numel()) for x in layers}
        self.coupled_groups: list[tuple[str, ...]] = [
            g for g in self.flow.groups() if len(g) > 1
        ]
        self.input_shape = tuple(example_input.shape[1:])
        self.input_dtype = example_input.dtype
        self.spec = getattr(model, "secateurs_spec", None)
        self.output = output if output is not None else getattr(model, "secateurs_output", None)
        logits = select_output(outputs[0], self.output)
        self.num_classes = int(logits.shape[-1]) if logits.dim() >= 2 else 0
        self.plain_output = isinstance(outputs[0], torch.Tensor)
        # The original model object (not a registered submodule: its modules are already in
        # ``net``); export deep-copies it so that the exported network keeps the user's class.
        object.__setattr__(self, "original", model)
        self._mask_names = {f"net.{MASKS_ATTR}.{_mask_key(x)}.mask" for x in layers}

    @property
    def mode_dependent(self) -> bool:
        """Whether the model's forward differs between train and eval mode (two graphs)."""
        return self.train_net is not None

    def forward_all(self, x: torch.Tensor):
        """What the model returns (tuple, dict, ...), masked, in the current mode."""
        net = self.train_net if self.training and self.train_net is not None else self.net
        return net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return select_output(self.forward_all(x), self.output)

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
