"""Which layers are prunable, decided from the traced graph rather than from definition order.

A layer of a prunable type (``layers.PRUNABLE``) is prunable unless:

- the forward does not call it (an optional or unused submodule);
- the forward calls it more than once (a shared layer: its units would be dropped at every
  call site at once, and its input channels come from several places);
- it is an **output layer**: its output reaches a model output without passing through another
  weighted layer (``layers.WEIGHTED``, or a functional linear / convolution / matmul). Heads,
  however many and wherever they are defined, are never pruned.

Recurrent modules (``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``) follow the same rules and give one
prunable layer per layer and direction of the module (``lstm.l0``, ``lstm.l0_reverse``,
``lstm.l1``; see ``recurrent``); a forward that passes them its own initial state is refused.

Models may still declare ``prunable_layers``; those are checked against the same rules.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import ConfigError
from .channels import SHAPE_METHODS
from .layers import (
    PRUNABLE,
    WEIGHTED,
    prunable_refusal,
    unsliceable_modules,
)
from .recurrent import call_refusal, is_recurrent, layer_names, resolve

_WEIGHTED_FUNCTIONS = {
    F.linear, F.bilinear, F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d,
    F.conv_transpose3d, F.embedding, torch.matmul, torch.mm, torch.bmm, torch.einsum,
    operator.matmul, F.scaled_dot_product_attention,
}
_WEIGHTED_METHODS = {"matmul", "mm", "bmm"}


@dataclass
class Discovery:
    """The prunable layers in forward order, and why each other candidate layer is not one."""

    layers: tuple[str, ...]
    skipped: dict[str, str] = field(default_factory=dict)


def module_calls(gm: fx.GraphModule) -> dict[str, list[fx.Node]]:
    calls: dict[str, list[fx.Node]] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls.setdefault(str(node.target), []).append(node)
    return calls


def _is_weighted(node: fx.Node, gm: fx.GraphModule) -> bool:
    if node.op == "call_module":
        return isinstance(gm.get_submodule(str(node.target)), WEIGHTED)
    if node.op == "call_function":
        return node.target in _WEIGHTED_FUNCTIONS
    if node.op == "call_method":
        return node.target in _WEIGHTED_METHODS
    return False


def _value_frontier(start: fx.Node, gm: fx.GraphModule) -> set[fx.Node]:
    """Where values of ``start`` go before a weighted layer takes them: the output node and the
    weighted layers they reach (shape reads such as ``x.size(0)`` carry no values and are not
    followed)."""
    seen, todo, ends = {start}, [start], set()
    while todo:
        for user in todo.pop().users:
            if user in seen:
                continue
            seen.add(user)
            if user.op == "output" or _is_weighted(user, gm):
                ends.add(user)
                continue
            if user.op == "call_method" and user.target in SHAPE_METHODS:
                continue
            if user.op == "call_function" and user.target is getattr and user.args[1] in (
                "shape", "dtype", "device", "ndim"
            ):
                continue
            todo.append(user)
    return ends


def reaches_output(start: fx.Node, gm: fx.GraphModule) -> bool:
    """Whether values of ``start`` reach the graph's output without a weighted layer between."""
    return any(n.op == "output" for n in _value_frontier(start, gm))


def _feeds_weighted(start: fx.Node, gm: fx.GraphModule) -> bool:
    """Whether values of ``start`` also reach a weighted layer (a hidden layer whose output the
    model returns as well, rather than a head)."""
    return any(n.op != "output" for n in _value_frontier(start, gm))


def _returns_several(gm: fx.GraphModule) -> bool:
    """Whether forward returns a tuple, list or dict of more than one value."""
    out = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    return isinstance(out, (tuple, list, dict)) and len(out) > 1


def refusal(name: str, module: nn.Module | None, graphs: list[fx.GraphModule]) -> str | None:
    """Why layer ``name`` cannot be prunable in a model traced as ``graphs`` (eval graph first;
    the train graph too if it differs); None if it can. ``name`` may name a recurrent layer
    (``lstm.l0``): the rules then apply to its module."""
    if module is None and graphs:
        found = resolve(graphs[0], name)
        if found is not None:
            name, module = found[0], found[1]
    why = prunable_refusal(module)
    if why is not None:
        return why
    for i, gm in enumerate(graphs):
        mode = "" if len(graphs) == 1 else (" in eval mode", " in train mode")[i]
        calls = module_calls(gm)
        nodes = calls.get(name, [])
        if not nodes:
            if i > 0:
                continue
            parts = name.split(".")
            for k in range(len(parts) - 1, 0, -1):
                parent = ".".join(parts[:k])
                if parent in calls:
                    kind = type(gm.get_submodule(parent)).__name__
                    return f"it is inside {parent!r} ({kind}), which forward calls as a whole"
            return f"forward does not call it{mode}"
        if len(nodes) > 1:
            return (
                f"it is a shared layer, called {len(nodes)} times in forward{mode}; a prunable "
                "layer must be called exactly once"
            )
        fixed = unsliceable_modules(gm).get(name)
        if fixed:
            return f"{fixed[0]}: {fixed[1]}"
        if reaches_output(nodes[0], gm):
            hint = (
                " (forward also returns it, as features beside the logits, say: pruning would "
                "change that output's width; to prune this layer, have forward return the "
                "logits alone)"
                if _returns_several(gm) and _feeds_weighted(nodes[0], gm) else ""
            )
            return (
                f"it is an output layer: its output reaches the model's output{mode} without "
                f"passing through another weighted layer{hint}"
            )
        if is_recurrent(module):
            why = call_refusal(nodes[0])
            if why is not None:
                return why
    return None


def discover(model: nn.Module, graphs: list[fx.GraphModule]) -> Discovery:
    """Every prunable-type layer the traced forward calls once and that is not an output layer,
    in the order the forward calls them."""
    order = {str(n.target): i for i, n in enumerate(graphs[0].graph.nodes) if n.op == "call_module"}
    layers, skipped = [], {}
    rank: dict[str, float] = {}
    for name, module in model.named_modules():
        if not isinstance(module, (*PRUNABLE, nn.RNNBase)):
            continue
        why = refusal(name, module, graphs)
        if why is not None:
            skipped[name] = why
        elif is_recurrent(module):
            names = layer_names(name, module)
            for j, layer in enumerate(names):
                layers.append(layer)
                rank[layer] = order.get(name, len(order)) + j / (len(names) + 1)
        else:
            layers.append(name)
    layers.sort(key=lambda n: rank.get(n, order.get(n, len(order))))
    return Discovery(tuple(layers), skipped)


def check_declared(model: nn.Module, layers: tuple[str, ...], graphs: list[fx.GraphModule]) -> None:
    """Raise a one-line ConfigError naming the first declared layer that cannot be prunable."""
    for name in layers:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            module = None
        why = refusal(name, module, graphs)
        if why is not None:
            raise ConfigError(f"prunable layer {name!r} cannot be pruned: {why}")


def no_layers_error(model: nn.Module, found: Discovery) -> ConfigError:
    reasons = "; ".join(f"{k}: {v}" for k, v in list(found.skipped.items())[:4])
    return ConfigError(
        f"{type(model).__name__} has no prunable layer (a Linear/Conv/LSTM/GRU/RNN layer "
        f"called once whose output feeds another weighted layer){'; ' + reasons if reasons else ''}"
    )
