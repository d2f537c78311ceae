"""Shape operations on stacked activations: indexing, permutes, reductions over a dimension,
concatenation, reshapes, as each network would apply them to its own tensor.

A stacked tensor in the ``kb`` layout is K networks' own tensors behind a new first dimension, so
any operation written for one network's tensor runs on all K by shifting its non-negative
dimensions by one (negative ones count from the end and stay) and, for reshapes, putting K in
front. That holds whatever a network's dimension 0 means (a sequence-first recurrent output has
time there, a recurrent state has layers there). A shared activation (the input, before any
parameter) is every network's own tensor already: the operation runs on it unchanged.

Operations that would reach across networks are refused: a reduction over every dimension, a
``squeeze()`` that could drop K, indices that are tensors.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import torch
from torch import fx

from .stacked_ops import LockstepUnsupported, Stacked

# dimension-taking methods / functions -> how their dimension arguments are given
_ONE_DIM = {"mean", "sum", "amax", "amin", "softmax", "log_softmax", "squeeze", "unsqueeze",
            "cumsum", "flip", "logsumexp", "norm"}
_TWO_DIMS = {"transpose", "swapaxes"}
_METHOD_NAMES = _ONE_DIM | _TWO_DIMS | {"permute", "flatten", "view", "reshape", "size",
                                        "contiguous", "chunk", "split", "unbind"}
_FUNCTIONS: dict[Callable, str] = {
    torch.mean: "mean", torch.sum: "sum", torch.amax: "amax", torch.amin: "amin",
    torch.transpose: "transpose", torch.swapaxes: "swapaxes", torch.permute: "permute",
    torch.squeeze: "squeeze", torch.unsqueeze: "unsqueeze", torch.softmax: "softmax",
    torch.log_softmax: "log_softmax", torch.nn.functional.softmax: "softmax",
    torch.nn.functional.log_softmax: "log_softmax", torch.cumsum: "cumsum", torch.flip: "flip",
    torch.logsumexp: "logsumexp", torch.reshape: "reshape", torch.chunk: "chunk",
    torch.split: "split", torch.unbind: "unbind", torch.flatten: "flatten",
}
# where each operation takes its dimension argument(s): (positional index after the tensor,
# keyword name)
_DIM_ARG = {"mean": (0, "dim"), "sum": (0, "dim"), "amax": (0, "dim"), "amin": (0, "dim"),
            "softmax": (0, "dim"), "log_softmax": (0, "dim"), "squeeze": (0, "dim"),
            "unsqueeze": (0, "dim"), "cumsum": (0, "dim"), "flip": (0, "dims"),
            "logsumexp": (0, "dim"), "norm": (1, "dim"), "chunk": (1, "dim"), "split": (1, "dim"),
            "unbind": (0, "dim")}


def is_shape_op(node: fx.Node) -> bool:
    if node.op == "call_method":
        return node.target in _METHOD_NAMES
    if node.op == "call_function":
        return node.target in _FUNCTIONS or node.target in (
            operator.getitem, torch.cat, torch.concat, torch.stack, getattr,
        )
    return False


def _shift(dim, name: str):
    """A network's dimension(s) as dimension(s) of its ``kb`` stack."""
    if isinstance(dim, (tuple, list)):
        return type(dim)(_shift(d, name) for d in dim)
    if not isinstance(dim, int):
        raise LockstepUnsupported(f"lockstep needs constant dimensions for {name}, got {dim!r}")
    return dim + 1 if dim >= 0 else dim


def _constant(value, what: str):
    if isinstance(value, (fx.Node, Stacked, torch.Tensor)) or (
        isinstance(value, (tuple, list)) and any(isinstance(v, (fx.Node, Stacked, torch.Tensor))
                                                 for v in value)
    ):
        raise LockstepUnsupported(f"lockstep needs constant arguments for {what}, got {value!r}")
    return value


def _wrap(out, layout: str):
    if isinstance(out, torch.Tensor):
        return Stacked(out, layout)
    if isinstance(out, (tuple, list)):
        return tuple(_wrap(o, layout) for o in out)
    return out  # a size, a number


def apply_method(name: str, x: Stacked, args: tuple, kwargs: dict, k: int,
                 function: Callable | None = None):
    """``x.name(*args, **kwargs)`` for each network (``args`` without the tensor itself), or
    ``function(x, *args, **kwargs)`` for the torch function of that name."""
    if x.layout == "shared":
        out = function(x.t, *args, **kwargs) if function else getattr(x.t, name)(*args, **kwargs)
        return _wrap(out, "shared")
    t = x.kb(k)
    args, kwargs = list(args), dict(kwargs)
    if name == "size":
        dim = args[0] if args else kwargs.get("dim")
        shape = t.shape[1:]
        return shape if dim is None else shape[dim]
    if name == "contiguous":
        return Stacked(t.contiguous(), "kb")
    if name in ("view", "reshape"):
        shape = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
        shape = _constant(tuple(shape or kwargs.get("shape", ())), name)
        return Stacked(t.reshape(t.shape[0], *shape), "kb")
    if name == "permute":
        dims = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args
        dims = tuple(dims or kwargs.get("dims", ()))
        return Stacked(t.permute(0, *_shift(dims, name)), "kb")
    if name == "flatten":
        start = args[0] if args else kwargs.get("start_dim", 0)
        end = args[1] if len(args) > 1 else kwargs.get("end_dim", -1)
        return Stacked(t.flatten(_shift(start, name), _shift(end, name)), "kb")
    if name in _TWO_DIMS:
        a = args[0] if args else kwargs.pop("dim0")
        b = args[1] if len(args) > 1 else kwargs.pop("dim1")
        return Stacked(t.transpose(_shift(a, name), _shift(b, name)), "kb")
    position, keyword = _DIM_ARG[name]
    if len(args) > position:
        args[position] = _shift(args[position], name)
    elif keyword in kwargs and kwargs[keyword] is not None:
        kwargs[keyword] = _shift(kwargs[keyword], name)
    elif name == "squeeze":  # every size-1 dimension of a network's own tensor, never K
        ones = tuple(d + 1 for d, size in enumerate(t.shape[1:]) if size == 1)
        return Stacked(t.squeeze(ones) if ones else t, "kb")
    else:
        raise LockstepUnsupported(
            f"lockstep needs a dimension for {name} (over every dimension it would mix networks)"
        )
    for v in list(args) + list(kwargs.values()):
        _constant(v, name)
    out = function(t, *args, **kwargs) if function else getattr(t, name)(*args, **kwargs)
    return _wrap(out, "kb")


def getitem(value, index, k: int):
    """``value[index]``: an element of a tuple a module returned, or indexing of a stacked
    tensor (a constant index: ints, slices, None, Ellipsis)."""
    if not isinstance(value, Stacked):
        return value[index]  # a tuple of activations, a torch.Size
    parts = index if isinstance(index, tuple) else (index,)
    for part in parts:
        if not (part is None or part is Ellipsis or isinstance(part, (int, slice))):
            raise LockstepUnsupported(
                f"lockstep indexes activations with ints, slices, None and ... only, got {part!r}"
            )
    if value.layout == "shared":
        return Stacked(value.t[index], "shared")
    return Stacked(value.kb(k)[(slice(None), *parts)], "kb")


def concatenate(fn, tensors, dim: int, k: int) -> Stacked:
    """``torch.cat`` / ``torch.stack`` of activations along a network's dimension ``dim``."""
    if all(isinstance(t, Stacked) and t.layout == "shared" for t in tensors):
        return Stacked(fn([t.t for t in tensors], dim), "shared")
    parts = [t.kb(k) if isinstance(t, Stacked) else None for t in tensors]
    if any(p is None for p in parts):
        raise LockstepUnsupported(f"lockstep concatenates activations only, got {tensors!r}")
    return Stacked(fn(parts, _shift(dim, fn.__name__)), "kb")


def shape_function(node: fx.Node, k_of: Callable[[], int]) -> Callable:
    """The step of the stacked program for a shape-op node (``is_shape_op``)."""
    target, args, kwargs = node.target, node.args, dict(node.kwargs)

    def value(env, a):
        if isinstance(a, fx.Node):
            return env[a]
        if isinstance(a, (tuple, list)):
            return type(a)(value(env, v) for v in a)
        return a

    if node.op == "call_function" and target is operator.getitem:
        return lambda env: getitem(env[args[0]], _constant(value(env, args[1]), "indexing"), k_of())
    if node.op == "call_function" and target is getattr:
        if args[1] not in ("shape",):
            raise LockstepUnsupported(f"lockstep reads .shape of activations only: {node.format_node()}")
        return lambda env: apply_method("size", env[args[0]], (), {}, k_of())
    if node.op == "call_function" and target in (torch.cat, torch.concat, torch.stack):
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        fn = torch.stack if target is torch.stack else torch.cat
        return lambda env: concatenate(fn, value(env, args[0]), dim, k_of())
    name = target if node.op == "call_method" else _FUNCTIONS[target]
    function = None if node.op == "call_method" else target

    def run(env):
        x = env[args[0]]
        if not isinstance(x, Stacked):
            raise LockstepUnsupported(f"lockstep cannot batch {node.format_node()}")
        try:
            return apply_method(name, x, value(env, tuple(args[1:])), value(env, kwargs), k_of(),
                                function)
        except (TypeError, IndexError, ValueError) as exc:  # arguments it does not take
            raise LockstepUnsupported(f"lockstep cannot batch {node.format_node()}: {exc}") from exc

    return run
