"""Hidden units of ``nn.LSTM``, ``nn.GRU`` and ``nn.RNN`` as DropNet's prunable units.

- **Names**: layer ``k`` of a recurrent module ``lstm`` is the prunable layer ``lstm.l{k}``
  (``lstm.l0``, ``lstm.l1``, ...; PyTorch's own ``weight_ih_l{k}`` suffix), and the backward
  direction of a bidirectional module is ``lstm.l{k}_reverse``. Each layer (and direction) is a
  prunable layer of its own; a real submodule of that name wins.
- **Masking**: the module's call in the traced graph is replaced by a ``RecurrentUnits`` call,
  which runs the layers one at a time with masked weights: a dropped unit's rows in every gate of
  ``weight_ih_l{k}``, ``weight_hh_l{k}`` and both biases are zero, and so are its column in
  ``weight_hh_l{k}`` and in ``weight_ih_l{k+1}`` (both directions'). From the zero initial
  state its h_t is then exactly 0 (LSTM: i = f = o = 0.5, g = 0, so c = 0 and h = 0; GRU:
  z = 0.5, n = 0; RNN: act(0)), and its weights get zero gradients.
- **Score**: each layer's output sequence goes through its ``RecurrentUnitMask`` (batch first), so
  the DropNet score is the mean over samples and time steps of |h_t| (``"abs_mean"``); the
  alternative ``"mean_abs"`` (per sample the time mean, then its absolute value) is the
  convolutional rule applied to time (``set_recurrent_score``).
- **Export**: ``slice_units`` removes units (rows of every gate, in PyTorch's order: LSTM i, f, g,
  o; GRU r, z, n; RNN one); all layers and directions of one module share ``hidden_size``, so the
  exported module keeps the largest count and pads the others with dropped units whose weights
  are zeroed (they output exactly 0). A bidirectional output is [forward units, backward units].
- **Refused**: ``proj_size > 0``, subclasses with their own forward, and a forward that passes
  its own initial state (h0 / c0: its width is built where export cannot see it).
"""

from __future__ import annotations

import re

import torch
import torch.fx
import torch.nn.functional as F
from torch import _VF, nn

from ..errors import ConfigError

RECURRENT_TYPES: tuple[type[nn.Module], ...] = (nn.LSTM, nn.GRU, nn.RNN)
RECURRENT_ATTR = "secateurs_recurrent"
SCORES = ("abs_mean", "mean_abs")
_LAYER = re.compile(r"^(.+)\.l(\d+)(_reverse)?$")


def gates(module: nn.Module) -> int:
    """Gate blocks stacked in each weight (PyTorch's order: LSTM i, f, g, o; GRU r, z, n)."""
    return 4 if isinstance(module, nn.LSTM) else 3 if isinstance(module, nn.GRU) else 1


def directions(module: nn.Module) -> int:
    return 2 if module.bidirectional else 1


def layer_names(name: str, module: nn.Module) -> list[str]:
    """The prunable layers of a recurrent module, in PyTorch's h_n order (layer, direction)."""
    return [f"{name}.l{k}{'_reverse' if d else ''}"
            for k in range(module.num_layers) for d in range(directions(module))]


def is_recurrent(module: nn.Module | None) -> bool:
    return isinstance(module, RECURRENT_TYPES)


def resolve(root: nn.Module, layer: str) -> tuple[str, nn.Module, int, bool] | None:
    """``(module name, module, layer index, reverse direction)`` if ``layer`` names a layer of a
    recurrent module."""
    try:
        root.get_submodule(layer)
        return None  # a real submodule of that name
    except AttributeError:
        pass
    match = _LAYER.match(layer)
    if match is None:
        return None
    try:
        module = root.get_submodule(match.group(1))
    except AttributeError:
        return None
    k, reverse = int(match.group(2)), match.group(3) is not None
    if not is_recurrent(module) or k >= module.num_layers or (reverse and not module.bidirectional):
        return None
    return match.group(1), module, k, reverse


def recurrent_refusal(module: nn.Module) -> str | None:
    """Why a recurrent module's hidden units cannot be pruned (None if they can)."""
    kind = type(module).__name__
    if type(module).forward not in (nn.LSTM.forward, nn.GRU.forward, nn.RNN.forward):
        return f"{kind} overrides forward; only nn.LSTM / nn.GRU / nn.RNN's own forward is masked"
    if getattr(module, "proj_size", 0):
        return (
            f"{kind} with proj_size={module.proj_size}: projected hidden states are not "
            "prunable (use proj_size=0)"
        )
    return None


def call_refusal(node) -> str | None:
    """Why the traced call of a recurrent module cannot be masked (a user-passed state)."""
    extra = list(node.args[1:]) + [v for v in node.kwargs.values() if v is not None]
    if extra:
        hint = (
            ": it is all zeros, which is the default, so drop the argument (self.lstm(x))"
            if all(_is_zeros(v) for v in extra) else ""
        )
        return (
            "the forward passes its own initial state (h0 / c0) to it; prunable recurrent "
            f"layers need the default zero state{hint}"
        )
    return None


_ZEROS = {torch.zeros, torch.zeros_like}


def _is_zeros(value) -> bool:
    """Whether a traced argument is a zero tensor built in forward (or a tuple of them)."""
    if isinstance(value, (tuple, list)):
        return bool(value) and all(_is_zeros(v) for v in value)
    if not hasattr(value, "op"):
        return False
    if value.op == "call_function" and value.target in _ZEROS:
        return True
    if value.op == "get_attr":  # a constant made while tracing: torch.zeros(1, 32, 10)
        owner = value.graph.owning_module
        try:
            tensor = owner.get_parameter(str(value.target)) if owner is not None else None
        except AttributeError:
            tensor = getattr(owner, str(value.target), None)
        return isinstance(tensor, torch.Tensor) and not bool(tensor.any())
    if value.op == "call_method" and value.target in ("new_zeros", "zero_", "to", "cuda", "cpu"):
        return value.target == "new_zeros" or (bool(value.args) and _is_zeros(value.args[0]))
    return False


class RecurrentUnitMask(nn.Module):
    """A recurrent layer's 0/1 unit mask (a float32 buffer, as ``UnitMask``), applied to the
    layer's weights by ``RecurrentUnits`` and to its (batch, time, units) output sequence, where
    the scoring hooks read it. ``score``: how ``activation_stats`` averages over time."""

    dim = -1

    def __init__(self, units: int, score: str = "abs_mean"):
        super().__init__()
        if units < 1:
            raise ConfigError(f"a mask needs at least one unit, got {units}")
        self.score = score
        self.register_buffer("mask", torch.ones(units, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask

    def extra_repr(self) -> str:
        return f"units={self.mask.shape[0]}, recurrent, score={self.score}"


class RecurrentUnits(nn.Module):
    """Runs recurrent module ``rnn`` (not registered here: it stays where the model has it) layer
    by layer with its hidden units masked by ``masks`` (one ``RecurrentUnitMask`` per layer, also
    registered elsewhere). Returns what the module returns: ``(output, h_n)``, for an LSTM
    ``(output, (h_n, c_n))``."""

    def __init__(self, rnn_name: str, rnn: nn.Module, masks: list[RecurrentUnitMask]):
        super().__init__()
        self.rnn_name = rnn_name
        object.__setattr__(self, "rnn", rnn)
        object.__setattr__(self, "unit_masks", list(masks))

    def forward(self, x):
        rnn = self.rnn
        if isinstance(x, torch.fx.Proxy):
            raise ConfigError(
                f"masked recurrent module {self.rnn_name!r} runs PyTorch's fused recurrent "
                "kernels and cannot be traced through; trace it as a leaf module (as the "
                "lockstep engine does)"
            )
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ConfigError(
                f"{self.rnn_name!r}: prunable recurrent layers take a batched 3-d tensor, got "
                f"{shape} (packed sequences are not supported)"
            )
        first = rnn.batch_first
        batch = x.shape[0 if first else 1]
        count, width = directions(rnn), rnn.hidden_size
        seq, previous, finals = x, None, []
        for k in range(rnn.num_layers):
            masks = self.unit_masks[k * count:(k + 1) * count]
            seq, final = self._layer(k, seq, previous, [m.mask for m in masks], batch)
            parts = list(seq.split(width, dim=-1)) if count > 1 else [seq]
            for d, unit_mask in enumerate(masks):  # the hooks see (batch, time, units)
                parts[d] = unit_mask(parts[d]) if first else unit_mask(
                    parts[d].transpose(0, 1)).transpose(0, 1)
            seq = torch.cat(parts, -1) if count > 1 else parts[0]
            finals.append(final)
            previous = [m.mask for m in masks]
            if rnn.dropout and self.training and k < rnn.num_layers - 1:
                seq = F.dropout(seq, rnn.dropout, True)
        if isinstance(rnn, nn.LSTM):
            return seq, (torch.cat([h for h, _ in finals]), torch.cat([c for _, c in finals]))
        return seq, torch.cat(finals)

    def _layer(self, k: int, seq, previous, masks, batch: int):
        rnn = self.rnn
        dtype = seq.dtype
        inputs = None if previous is None else torch.cat(previous).to(dtype)
        weights = []
        for d, mask in enumerate(masks):
            suffix = "_reverse" if d else ""
            mask = mask.to(dtype)
            rows = mask.repeat(gates(rnn))
            w_ih = getattr(rnn, f"weight_ih_l{k}{suffix}") * rows[:, None]
            if inputs is not None:
                w_ih = w_ih * inputs[None, :]
            w_hh = getattr(rnn, f"weight_hh_l{k}{suffix}") * rows[:, None] * mask[None, :]
            weights += [w_ih, w_hh]
            if rnn.bias:
                weights += [getattr(rnn, f"bias_ih_l{k}{suffix}") * rows,
                            getattr(rnn, f"bias_hh_l{k}{suffix}") * rows]
        h0 = seq.new_zeros(len(masks), batch, rnn.hidden_size)
        args = (weights, rnn.bias, 1, 0.0, self.training, len(masks) > 1, rnn.batch_first)
        if isinstance(rnn, nn.LSTM):
            out, h, c = _VF.lstm(seq, (h0, h0), *args)
            return out, (h, c)
        fn = _VF.gru if isinstance(rnn, nn.GRU) else (
            _VF.rnn_tanh if rnn.mode == "RNN_TANH" else _VF.rnn_relu
        )
        out, h = fn(seq, h0, *args)
        return out, h


def set_recurrent_score(network: nn.Module, score: str) -> None:
    """Choose how recurrent units are scored: ``"abs_mean"`` (default: mean over samples and time
    steps of |h_t|) or ``"mean_abs"`` (per sample the mean over time, then |.|, then the mean)."""
    if score not in SCORES:
        raise ConfigError(f"recurrent score must be one of {SCORES}, got {score!r}")
    for module in network.modules():
        if isinstance(module, RecurrentUnitMask):
            module.score = score


# ----------------------------------------------------------------------------- export


def _rows(k_gates: int, hidden: int, keep: list[int]) -> list[int]:
    return [g * hidden + i for g in range(k_gates) for i in keep]


def slice_units(rnn: nn.Module, keeps: list[list[int]]) -> None:
    """Keep, in each layer and direction (``layer_names`` order), units ``keeps[j]`` (original
    indices, all lists the same length): their rows in every gate of that layer's weights and
    biases, their columns in its ``weight_hh`` and in the next layer's ``weight_ih`` (both
    directions); ``hidden_size`` becomes that length."""
    from .layers import _set

    width = len(keeps[0])
    if any(len(k) != width for k in keeps):  # pragma: no cover - the plan pads them
        raise ValueError("every layer of a recurrent module keeps the same number of units")
    hidden, k_gates, count = rnn.hidden_size, gates(rnn), directions(rnn)
    for j, keep in enumerate(keeps):
        k, suffix = j // count, "_reverse" if j % count else ""
        rows = _rows(k_gates, hidden, keep)
        _set(rnn, f"weight_ih_l{k}{suffix}", 0, rows)
        if k > 0:  # the previous layer's output: [forward units, backward units]
            columns = [d * hidden + i for d in range(count) for i in keeps[(k - 1) * count + d]]
            _set(rnn, f"weight_ih_l{k}{suffix}", 1, columns)
        _set(rnn, f"weight_hh_l{k}{suffix}", 0, rows)
        _set(rnn, f"weight_hh_l{k}{suffix}", 1, keep)
        if rnn.bias:
            _set(rnn, f"bias_ih_l{k}{suffix}", 0, rows)
            _set(rnn, f"bias_hh_l{k}{suffix}", 0, rows)
    rnn.hidden_size = width
    rnn._init_flat_weights()


def zero_units(rnn: nn.Module, j: int, positions: list[int]) -> None:
    """Make units ``positions`` (current indices) of layer and direction ``j`` (``layer_names``
    order) output exactly zero: their rows in every gate of the weights and biases (their gates
    then see 0: h = 0 from the zero state)."""
    if not positions:
        return
    k, suffix = j // directions(rnn), "_reverse" if j % directions(rnn) else ""
    rows = _rows(gates(rnn), rnn.hidden_size, positions)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            tensor = getattr(rnn, f"{name}_l{k}{suffix}", None)
            if tensor is not None:
                tensor[rows] = 0.0


def incoming_l1(rnn: nn.Module, k: int, reverse: bool = False) -> torch.Tensor:
    """L1 norm of each unit's incoming weights over every gate (weight_ih and weight_hh rows)."""
    hidden, k_gates = rnn.hidden_size, gates(rnn)
    total = torch.zeros(hidden, dtype=torch.float64)
    suffix = "_reverse" if reverse else ""
    for name in (f"weight_ih_l{k}{suffix}", f"weight_hh_l{k}{suffix}"):
        w = getattr(rnn, name).detach().abs().sum(1).double().cpu()
        total += w.reshape(k_gates, hidden).sum(0)
    return total.float()


def check_input(node, shape) -> None:
    """A prunable recurrent module must see a batched 3-d tensor."""
    if shape is None or len(shape) != 3:
        raise ConfigError(
            f"recurrent layer {str(node.target)!r} gets input of shape {tuple(shape or ())}; "
            "prunable recurrent layers need a batched 3-d tensor"
        )
