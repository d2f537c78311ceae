"""Parameter and multiply-accumulate counts, measured and implied by masks.

MACs here are those of ``nn.Linear`` and ``nn.Conv2d`` layers only, per input sample: a Linear
layer costs in_features x out_features per output row, a convolution
(in_channels / groups) x kernel_h x kernel_w per output element. BatchNorm, activations, pooling
and additions are not counted (they are a few per element, small next to the layers'). Parameters
are all of the module's parameters (weights, biases, BatchNorm affine terms), not buffers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from .masks import MaskedNetwork


def _layer_macs_per_output(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.in_features
    assert isinstance(module, nn.Conv2d)
    kh, kw = module.kernel_size
    return module.in_channels // module.groups * kh * kw


def _run_eval(module: nn.Module, example_input: torch.Tensor) -> torch.Tensor:
    """One forward in eval mode without gradients; training flags are restored afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            return module(example_input)
    finally:
        for m, mode in modes:
            m.training = mode


def _forward_counting(
    module: nn.Module, example_input: torch.Tensor
) -> tuple[torch.Tensor, dict[str, int]]:
    """The eval output, and per-sample output elements of every Linear/Conv2d module (summed over
    its calls), by module name."""
    batch = int(example_input.shape[0])
    elements: dict[str, int] = {}
    handles = []
    for name, m in module.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):

            def hook(mod, inputs, output, name=name):
                elements[name] = elements.get(name, 0) + output.numel() // batch

            handles.append(m.register_forward_hook(hook))
    try:
        output = _run_eval(module, example_input)
    finally:
        for h in handles:
            h.remove()
    return output, elements


def measure(module: nn.Module, example_input: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """(eval output, parameters, MACs per sample) from one forward pass."""
    output, elements = _forward_counting(module, example_input)
    params = sum(p.numel() for p in module.parameters())
    macs = sum(
        n * _layer_macs_per_output(module.get_submodule(name)) for name, n in elements.items()
    )
    return output, int(params), int(macs)


def count_params_macs(module: nn.Module, example_input: torch.Tensor) -> tuple[int, int]:
    """(parameters, MACs per sample) of ``module``, measured with forward hooks on one batch."""
    _, params, macs = measure(module, example_input)
    return params, macs


def implied_params_macs(masked: MaskedNetwork, example_input: torch.Tensor) -> tuple[int, int]:
    """(parameters, MACs per sample) that the current masks imply once dropped units are removed.

    Computed from the masks and the channel flow alone (not by surgery): a layer keeps the units
    alive in its coupled group (a channel of a residual addition is alive if any producer keeps
    it), reads the alive channels of the group feeding it (each repeated over the spatial positions
    a flatten spread it over), and its BatchNorm keeps the same units. It assumes every dead channel
    can be removed; ``ExportResult.summary`` says when export had to keep some.
    """
    flow = masked.flow
    alive = {x: m.detach().cpu() for x, m in masked.get_masks().items()}
    group_alive: dict[str, int] = {}
    for group in flow.groups():
        union = torch.zeros_like(alive[group[0]])
        for x in group:
            union |= alive[x]
        group_alive[flow.root(group[0])] = int(union.sum())

    def alive_out(layer: str) -> int:
        return group_alive[flow.root(layer)]

    tail_bn = {
        str(node.target): layer
        for layer, chain in flow.tails.items()
        for node in chain[1:]
        if node.op == "call_module"
        and isinstance(masked.net.get_submodule(str(node.target)), nn.modules.batchnorm._BatchNorm)
    }
    _, elements = _forward_counting(masked.net, example_input)
    params = macs = 0
    for name, m in masked.net.named_modules():
        own = sum(p.numel() for p in m.parameters(recurse=False))
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            full_out = m.out_features if isinstance(m, nn.Linear) else m.out_channels
            full_in = m.in_features if isinstance(m, nn.Linear) else m.in_channels
            out = alive_out(name) if name in masked.widths else full_out
            if name in flow.space_of:
                src, repeat = flow.space_of[name]
                inp = alive_out(src) * repeat
            else:
                inp = full_in
            per_unit = _layer_macs_per_output(m) * inp // full_in
            params += out * per_unit + (out if m.bias is not None else 0)
            positions = elements.get(name, 0) // full_out
            macs += positions * out * per_unit
        elif name in tail_bn:
            params += own * alive_out(tail_bn[name]) // m.num_features
        else:
            params += own
    return int(params), int(macs)
