"""Parameter and multiply-accumulate counts: measured, and achieved by export.

MACs per input sample are half the floating-point operations that PyTorch's own
``torch.utils.flop_counter.FlopCounterMode`` counts for one forward pass in eval mode (matrix
products and convolutions of every kind: Linear, Conv1d/2d/3d, ConvTranspose, grouped and
depthwise convolutions, GRU / RNN cells, attention, also where a fused kernel runs it), plus
LSTMs, whose fused kernel the counter does not see: 4 x hidden x (input + hidden) per step, layer
and direction (also for a masked
LSTM, whose ``RecurrentUnits`` runs the same products layer by layer). Elementwise ops,
normalisation and pooling are not counted. Parameters are all of the module's parameters
(weights, biases, normalisation affine terms; shared ones once), not buffers.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

if TYPE_CHECKING:
    from .masks import MaskedNetwork


def _run_eval(module: nn.Module, example_input: torch.Tensor):
    """One forward in eval mode without gradients; training flags are restored afterwards.

    Attention's fused inference kernel (``nn.MultiheadAttention`` and the transformer layers in
    eval mode without gradients) is invisible to the counter: it is turned off for the pass, so
    that attention runs as the matrix products the counter sees."""
    modes = [(m, m.training) for m in module.modules()]
    mha = getattr(torch.backends, "mha", None)
    fast = mha.get_fastpath_enabled() if mha is not None else None
    module.eval()
    try:
        if mha is not None:
            mha.set_fastpath_enabled(False)
        with torch.no_grad():
            return module(example_input)
    finally:
        if mha is not None:
            mha.set_fastpath_enabled(fast)
        for m, mode in modes:
            m.training = mode


def _attention_flops(query_shape, key_shape, value_shape, *_args, out_shape=None, **_kwargs):
    """Q K^T and the weighted sum of V: q (..., L, E), k (..., S, E), v (..., S, Ev)."""
    *batch, length, e = query_shape
    return 2 * math.prod(batch) * length * key_shape[-2] * (e + value_shape[-1])


@functools.cache
def _missing_formulas() -> dict:
    """Formulas the counter lacks: CPU's fused attention (``F.scaled_dot_product_attention``,
    which ``nn.MultiheadAttention`` calls), counted as the products it fuses."""
    from torch.utils import flop_counter

    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {} if op is None or op in flop_counter.flop_registry else {op: _attention_flops}


@functools.cache
@functools.cache
def _counter_sees_lstm() -> bool:
    with torch.random.fork_rng(devices=[]):  # the caller's random state is theirs
        lstm = nn.LSTM(2, 2)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        lstm(torch.zeros(1, 1, 2))
    return counter.get_total_flops() > 0


def _lstm_macs(module: nn.LSTM, inputs, batch: int) -> int:
    x = inputs[0]
    if not isinstance(x, torch.Tensor):  # a PackedSequence: count its real steps
        steps_total = int(x.data.shape[0])
    else:
        time_dim = 1 if module.batch_first and x.dim() == 3 else 0
        steps_total = int(x.shape[time_dim]) * (int(x.shape[1 - time_dim]) if x.dim() == 3 else 1)
    hidden = module.hidden_size
    out = module.proj_size or hidden
    directions = 2 if module.bidirectional else 1
    macs = 0
    for layer in range(module.num_layers):
        size_in = module.input_size if layer == 0 else out * directions
        per_step = 4 * hidden * (size_in + out) + (hidden * out if module.proj_size else 0)
        macs += directions * steps_total * per_step
    return macs // max(batch, 1)


def measure(module: nn.Module, example_input: torch.Tensor):
    """(eval output, parameters, MACs per sample) from one forward pass."""
    batch = max(int(example_input.shape[0]), 1)
    extra = [0]
    handles = []
    if not _counter_sees_lstm():
        from .recurrent import RecurrentUnits

        def count(mod, inputs, _out) -> None:
            lstm = mod.rnn if isinstance(mod, RecurrentUnits) else mod
            extra[0] += _lstm_macs(lstm, inputs, batch)

        for m in module.modules():
            # a masked LSTM (RecurrentUnits) runs its layers without calling the LSTM module
            if isinstance(m, nn.LSTM) or (
                isinstance(m, RecurrentUnits) and isinstance(m.rnn, nn.LSTM)
            ):
                handles.append(m.register_forward_hook(count))
    try:
        with FlopCounterMode(display=False, custom_mapping=_missing_formulas()) as counter:
            output = _run_eval(module, example_input)
    finally:
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in module.parameters())
    macs = counter.get_total_flops() // 2 // batch + extra[0]
    return output, int(params), int(macs)


def count_params_macs(module: nn.Module, example_input: torch.Tensor) -> tuple[int, int]:
    """(parameters, MACs per sample) of ``module``, measured on one batch."""
    _, params, macs = measure(module, example_input)
    return params, macs


def implied_params_macs(masked: MaskedNetwork, example_input: torch.Tensor) -> tuple[int, int]:
    """(parameters, MACs per sample) that exporting the current masks achieves.

    Measured on the network ``export_pruned`` builds (on a copy; ``masked`` is not changed), so
    that dead units export has to keep (LayerNorm, shared layers, channels dropped by only some
    coupled producers) are counted as kept. If export fails (a forward that hard-codes a width),
    nothing is achieved: the unpruned counts are returned.
    """
    from ..errors import ConfigError
    from .surgery import export_pruned

    try:
        result = export_pruned(masked, example_input)
    except ConfigError:
        return count_params_macs(masked.net, example_input)
    return result.params, result.macs

