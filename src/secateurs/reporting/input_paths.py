"""Which inputs of a masked network still reach its output, and how strongly.

An input element has a *live path* when some chain of nonzero weights through alive units joins
it to an output (structurally: what the activations do on particular data is not asked). Its
*path strength* is the sum over all such chains of the product of the absolute weights along
them. Both come from one backward pass through the network's "path network": every Linear and
Conv2d with |W| and no bias, every mask kept, activations and dropout replaced by the identity, a
max-pool replaced by the sum over its window (every position of the window is a path), BatchNorm
by its scale |gamma| / sqrt(var + eps). That network is linear in its input with nonnegative
weights, so the gradient of the sum of its outputs with respect to the input is, element by
element, the path strength.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import ConfigError
from ..pruning.masks import MaskedNetwork, UnitMask

_IDENTITY_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU, nn.Softplus,
    nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.Dropout,
    nn.Dropout1d, nn.Dropout2d, nn.Identity,
)
_IDENTITY_FUNCTIONS = {
    F.relu, F.relu_, torch.relu, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.celu, F.selu,
    F.gelu, F.silu, F.softplus, torch.tanh, F.tanh, torch.sigmoid, F.sigmoid, F.hardtanh,
    F.hardswish, F.hardsigmoid, F.mish, F.dropout, F.dropout1d, F.dropout2d,
}
_IDENTITY_METHODS = {"relu", "relu_", "tanh", "tanh_", "sigmoid", "sigmoid_", "contiguous"}
_SHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.cat, torch.mean, getattr}
_SHAPE_METHODS = {"flatten", "view", "reshape", "size", "dim", "mean"}
_ADD_FUNCTIONS = {operator.add, operator.iadd, operator.sub, operator.isub, torch.add, torch.sub}
_MUL_FUNCTIONS = {operator.mul, operator.imul, torch.mul}


def _cannot(what: str) -> ConfigError:
    return ConfigError(f"cannot follow input paths through {what}")


class _PathInterpreter(fx.Interpreter):
    def call_module(self, target, args, kwargs):
        m = self.fetch_attr(target)
        x = args[0]
        if isinstance(m, nn.Linear):
            return F.linear(x, m.weight.detach().abs().to(x.dtype))
        if isinstance(m, nn.Conv2d):
            return m._conv_forward(x, m.weight.detach().abs().to(x.dtype), None)
        if isinstance(m, UnitMask):
            return m(x)
        if isinstance(m, _IDENTITY_MODULES):
            return x
        if isinstance(m, nn.MaxPool2d):
            if m.dilation not in (1, (1, 1)) or m.return_indices:
                raise _cannot(f"{target} ({m})")
            k = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * 2
            pooled = F.avg_pool2d(x, k, m.stride, m.padding, m.ceil_mode, count_include_pad=True)
            return pooled * math.prod(k)  # the sum over the window
        if isinstance(m, (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)):
            return m(x)
        if isinstance(m, nn.AdaptiveMaxPool2d):
            return F.adaptive_avg_pool2d(x, m.output_size)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            var = m.running_var if m.running_var is not None else torch.ones(m.num_features)
            scale = 1.0 / torch.sqrt(var.to(x.dtype) + m.eps)
            if m.weight is not None:
                scale = scale * m.weight.detach().abs().to(x.dtype)
            return x * scale.reshape((1, -1) + (1,) * (x.dim() - 2))
        raise _cannot(f"{target} ({type(m).__name__})")

    def call_function(self, target, args, kwargs):
        if target in _IDENTITY_FUNCTIONS:
            return args[0]
        if target in _ADD_FUNCTIONS:
            tensors = [a for a in args[:2] if isinstance(a, torch.Tensor)]
            return tensors[0] + tensors[1] if len(tensors) == 2 else tensors[0]
        if target in _MUL_FUNCTIONS:
            a, b = args[:2]
            if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
                raise _cannot("a product of two tensors")
            t, c = (a, b) if isinstance(a, torch.Tensor) else (b, a)
            return t * abs(c)
        if target in _SHAPE_FUNCTIONS:
            return super().call_function(target, args, kwargs)
        raise _cannot(getattr(target, "__name__", str(target)))

    def call_method(self, target, args, kwargs):
        if target in _IDENTITY_METHODS:
            return args[0]
        if target in ("add", "add_", "sub", "sub_"):
            return self.call_function(operator.add, args, kwargs)
        if target in _SHAPE_METHODS:
            return super().call_method(target, args, kwargs)
        raise _cannot(f"the method {target!r}")


def input_path_strength(masked: MaskedNetwork) -> torch.Tensor:
    """Per input element (shape ``masked.input_shape``), the sum over chains of alive units and
    nonzero weights to any output of the product of the absolute weights (0: no live path)."""
    if masked.input_dtype.is_floating_point is False:
        raise _cannot(f"the model's {str(masked.input_dtype).removeprefix('torch.')} input "
                      "(token ids have no path strength)")
    was_training = masked.training
    masked.eval()
    try:
        x = torch.zeros(1, *masked.input_shape, dtype=torch.float64, requires_grad=True)
        try:
            out = _PathInterpreter(masked.net).run(x)
        except ConfigError as exc:  # fx's Interpreter appends notes of its own: keep ours
            raise ConfigError(str(exc).split("\n")[0]) from None
        out.sum().backward()
    finally:
        masked.train(was_training)
    return x.grad[0].detach()


def live_inputs(masked: MaskedNetwork) -> torch.Tensor:
    """Boolean, per input element: does it still have a live path to the output?"""
    return input_path_strength(masked) > 0
