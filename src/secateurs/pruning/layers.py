"""Which module types have units DropNet can drop, which read channels, and how to slice them.

One table, so that a new layer type is one entry here rather than ``isinstance`` checks spread
over tracing, channel flow, export and scoring:

- ``PRUNABLE``: types whose output units may be masked and removed (Linear, Conv1d/2d/3d,
  ConvTranspose1d/2d/3d). A Linear's units are on the **last** dim of its output (it may be
  applied per time step or token), a convolution's on dim 1.
- ``consumer_kind``: types whose *inputs* can lose channels (the same layers plus the recurrent
  layers, whose input features are the last dim).
- Recurrent layers (``nn.LSTM``, ``nn.GRU``, ``nn.RNN``) also have prunable hidden units, one
  prunable layer per layer of the module (``lstm.l0``, ``lstm.l1``): their masking, slicing and
  refusals are in ``recurrent`` (``recurrent_refusal`` is what ``prunable_refusal`` says for them).
- ``WEIGHTED``: every type that counts as "another weighted layer" for the output-layer rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd, _ConvTransposeNd

WEIGHTED: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Bilinear, _ConvNd, nn.RNNBase, nn.Embedding, nn.EmbeddingBag,
    nn.MultiheadAttention, nn.Transformer, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer,
)
PRUNABLE: tuple[type[nn.Module], ...] = (nn.Linear, _ConvNd)
PRUNABLE_NAMES = (
    "nn.Linear, nn.Conv1d/2d/3d, nn.ConvTranspose1d/2d/3d, or a layer of an nn.LSTM / nn.GRU / "
    "nn.RNN (named like lstm.l0)"
)


def _set(module: nn.Module, name: str, dim: int, keep: list[int]) -> None:
    tensor = getattr(module, name, None)
    if tensor is None:
        return
    index = torch.tensor(keep, dtype=torch.long, device=tensor.device)
    new = tensor.detach().index_select(dim, index).clone()
    if isinstance(tensor, nn.Parameter):
        setattr(module, name, nn.Parameter(new, requires_grad=tensor.requires_grad))
    else:
        setattr(module, name, new)


def tied_modules(root: nn.Module) -> dict[str, list[str]]:
    """Modules that hold a parameter another module holds too (tied weights: an embedding and
    its decoder), each with the other holders' names. Slicing such a weight for one of them
    would untie it, so their units and inputs are kept."""
    owners: dict[int, list[str]] = {}
    for name, module in root.named_modules():
        for param in module.parameters(recurse=False):
            holders = owners.setdefault(id(param), [])
            if name not in holders:
                holders.append(name)
    out: dict[str, list[str]] = {}
    for holders in owners.values():
        for name in holders if len(holders) > 1 else ():
            out.setdefault(name, []).extend(h for h in holders if h != name)
    return out


def _computed_weight(module: nn.Module) -> str | None:
    """What computes this module's weights, if not the module: a parametrization
    (``torch.nn.utils.parametrizations.weight_norm``, ``spectral_norm``, ``register_parametrization``)
    or an old-style pre-hook (``torch.nn.utils.weight_norm``). Its own tensors (``weight_g``,
    ``original0``, ``_u``) have the unit dimension too, so slicing the visible weight is not enough."""
    from torch.nn.utils import parametrize
    from torch.nn.utils.spectral_norm import SpectralNorm
    from torch.nn.utils.weight_norm import WeightNorm

    if parametrize.is_parametrized(module):
        names = ", ".join(
            f"{tensor} ({', '.join(type(p).__name__.lstrip('_') for p in chain)})"
            for tensor, chain in module.parametrizations.items()
        )
        return f"its {names} is computed by a parametrization"
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, (WeightNorm, SpectralNorm)):
            return f"its {hook.name} is computed by torch.nn.utils.{type(hook).__name__}'s hook"
    return None


REMOVE_PARAMETRIZATION = (
    "remove it first to prune here (torch.nn.utils.parametrize.remove_parametrizations, or "
    "remove_weight_norm / remove_spectral_norm for the old hooks)"
)


def unsliceable_modules(root: nn.Module) -> dict[str, tuple[str, str]]:
    """Modules whose weights cannot be cut, each with why: tied weights (cutting would untie
    them), weights computed by a parametrization (cutting the visible weight leaves the
    parametrization's own tensors whole) and, in a traced ``root``, weights forward also reads
    directly (``F.linear(h, self.fc.weight)``). Their units and inputs are kept. Each maps to
    (why, what it would take to prune it)."""
    out = {
        name: (
            f"its weights are tied to {others[0]!r} (one parameter in two layers)",
            "removing its units would untie them",
        )
        for name, others in tied_modules(root).items()
    }
    for name, module in root.named_modules():
        why = _computed_weight(module)
        if why is not None and name not in out:
            out[name] = (why, REMOVE_PARAMETRIZATION)
    graph = getattr(root, "graph", None)  # a traced model: forward may read a layer's weight
    for node in graph.nodes if graph is not None else ():
        owner, _, attr = str(node.target).rpartition(".")
        if node.op != "get_attr" or not owner or owner in out:
            continue
        try:
            module = root.get_submodule(owner)
        except AttributeError:
            continue
        if attr in module._parameters or attr in module._buffers:
            out[owner] = (
                f"forward also reads its {attr} directly (self.{node.target}, in F.linear say)",
                "cutting it would break that use; call the layer itself instead",
            )
    return out


def is_depthwise(module: nn.Module) -> bool:
    """A convolution whose every output channel reads exactly its own input channel."""
    return (
        isinstance(module, _ConvNd) and module.groups > 1
        and module.groups == module.in_channels == module.out_channels
    )


def is_grouped(module: nn.Module) -> bool:
    return isinstance(module, _ConvNd) and module.groups > 1 and not is_depthwise(module)


def units_of(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def unit_dim(module: nn.Module) -> int:
    """Where the units are in the layer's output: -1 (last) for Linear, 1 for convolutions."""
    return -1 if isinstance(module, nn.Linear) else 1


def weight_out_dim(module: nn.Module) -> int:
    """The weight's axis of output units (ConvTranspose stores (in, out / groups, ...))."""
    return 1 if isinstance(module, _ConvTransposeNd) else 0


def slice_outputs(module: nn.Module, keep: list[int]) -> None:
    """Keep only output units ``keep`` (a depthwise conv loses the same input channels)."""
    if isinstance(module, nn.Linear):
        _set(module, "weight", 0, keep)
        _set(module, "bias", 0, keep)
        module.out_features = len(keep)
    elif isinstance(module, _ConvNd):
        depthwise = is_depthwise(module)
        _set(module, "weight", weight_out_dim(module), keep)
        _set(module, "bias", 0, keep)
        module.out_channels = len(keep)
        if depthwise:
            module.in_channels = module.groups = len(keep)
    elif isinstance(module, nn.PReLU):
        if module.num_parameters > 1:
            _set(module, "weight", 0, keep)
            module.num_parameters = len(keep)
    elif isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)):
        for name in ("weight", "bias", "running_mean", "running_var"):
            _set(module, name, 0, keep)
        module.num_features = len(keep)
    elif isinstance(module, nn.GroupNorm):  # a group per channel (others are never sliced)
        _set(module, "weight", 0, keep)
        _set(module, "bias", 0, keep)
        module.num_channels = module.num_groups = len(keep)
    else:  # pragma: no cover - callers only pass the types above
        raise TypeError(f"cannot slice the outputs of {type(module).__name__}")


def zero_outputs(module: nn.Module, positions: list[int]) -> None:
    """Make output units ``positions`` exactly zero (weights and bias; a norm's weight and bias)."""
    if not positions:
        return
    dim = weight_out_dim(module) if isinstance(module, _ConvNd) else 0
    idx = torch.tensor(positions, dtype=torch.long, device=module.weight.device)
    with torch.no_grad():
        module.weight.index_fill_(dim, idx, 0.0)
        if module.bias is not None:
            module.bias.index_fill_(0, idx, 0.0)


def out_weight_rows(module: nn.Module) -> torch.Tensor:
    """The weight as (units, everything else), for incoming-weight norms."""
    return module.weight.detach().movedim(weight_out_dim(module), 0).flatten(1)


@dataclass(frozen=True)
class ConsumerKind:
    """A module type that reads channels: on which input dim, and how to drop some of them."""

    reads_last_dim: bool  # Linear / RNN: the last dim; convolutions: dim 1
    slice_inputs: Callable[[nn.Module, list[int]], None]
    # None if the module can lose input channels; else why not (grouped convolution, ...)
    refuse: Callable[[nn.Module], str | None] = lambda m: None


def _linear_inputs(module: nn.Module, keep: list[int]) -> None:
    _set(module, "weight", 1, keep)
    module.in_features = len(keep)


def _conv_inputs(module: nn.Module, keep: list[int]) -> None:
    if is_depthwise(module):  # its input channels are its output channels: sliced with those
        return
    _set(module, "weight", 0 if isinstance(module, _ConvTransposeNd) else 1, keep)
    module.in_channels = len(keep)


def _rnn_inputs(module: nn.Module, keep: list[int]) -> None:
    for suffix in ("", "_reverse"):
        _set(module, f"weight_ih_l0{suffix}", 1, keep)
    module.input_size = len(keep)
    if hasattr(module, "_flat_weights"):  # the recurrent layers cache their weight list
        module._init_flat_weights()


def _conv_refuse(module: nn.Module) -> str | None:
    if is_grouped(module):
        return (
            f"grouped convolution (groups={module.groups}) reads them; its channels can only go "
            "group by group"
        )
    return None


def consumer_kind(module: nn.Module) -> ConsumerKind | None:
    """How ``module`` reads channels, or None if it is not a layer that can lose input channels."""
    if isinstance(module, nn.Linear):
        return ConsumerKind(True, _linear_inputs)
    if isinstance(module, _ConvNd):
        return ConsumerKind(False, _conv_inputs, _conv_refuse)
    if isinstance(module, nn.RNNBase):
        return ConsumerKind(True, _rnn_inputs)
    return None


def prunable_refusal(module: nn.Module | None) -> str | None:
    """Why a module cannot be a prunable layer at all (None if it can)."""
    if module is None:
        return "it is not a submodule of the model"
    if not isinstance(module, PRUNABLE):
        if isinstance(module, nn.RNNBase):
            from .recurrent import is_recurrent, recurrent_refusal

            if not is_recurrent(module):
                return f"{type(module).__name__} hidden units are not prunable (only nn.LSTM, " \
                       "nn.GRU and nn.RNN's are)"
            return recurrent_refusal(module)
        return f"it is a {type(module).__name__}; prunable layers are {PRUNABLE_NAMES}"
    return None
