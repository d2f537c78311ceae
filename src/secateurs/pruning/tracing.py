"""The model as a torch.fx graph, and the checks that the graph computes what the model does.

Masks are inserted into the traced graph, so whatever tracing loses would silently change the
training: the options a forward takes besides its input (``mask=None``, ``return_features=False``)
are traced at their defaults, the one tensor secateurs passes must be the forward's first
positional argument, and a forward that turns gradients off (``with torch.no_grad():`` around a
frozen backbone, which fx does not record) is refused rather than trained through.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import re

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.utils import _pytree as pytree

from ..errors import ConfigError

_SIMPLE_DEFAULTS = (type(None), bool, int, float, str)


def _defaults_to_trace(model: nn.Module) -> dict[str, object]:
    """The forward's options beyond its input, at their defaults (traced as constants); refuses a
    forward that cannot be called as ``model(x)``."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):  # a builtin or C forward: let fx decide
        return {}
    name = type(model).__name__
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if params and params[0].kind == inspect.Parameter.KEYWORD_ONLY:
        raise ConfigError(
            f"{name}.forward takes its input as the keyword-only argument {params[0].name!r}; "
            "secateurs calls model(x): make it positional"
        )
    if not params or params[0].kind not in (*positional, inspect.Parameter.VAR_POSITIONAL):
        raise ConfigError(f"{name}.forward takes no positional input; secateurs calls model(x)")
    concrete: dict[str, object] = {}
    required = [params[0].name]
    for p in params[1:]:
        if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if p.default is inspect.Parameter.empty:
            required.append(p.name)
        elif isinstance(p.default, _SIMPLE_DEFAULTS):
            concrete[p.name] = p.default
    if len(required) > 1:
        raise ConfigError(
            f"{name}.forward needs {len(required)} inputs ({', '.join(required)}); secateurs "
            "calls it with one tensor: give the others defaults"
        )
    return concrete


def _drop_specialised_inputs(graph: fx.Graph, names: set[str]) -> None:
    """Remove the placeholders of defaults traced as constants and the checks fx adds on them
    (``_assert_is_none``, ``torch._assert``), so that the graph takes one input."""
    def specialised(node: fx.Node) -> bool:  # fx may rename the input: mask -> mask_1
        target = str(node.target)
        return target in names or re.sub(r"_\d+$", "", target) in names

    for node in [n for n in graph.nodes if n.op == "placeholder" and specialised(n)]:
        closure, todo = [], [node]
        while todo:
            current = todo.pop()
            closure.append(current)
            todo.extend(current.users)
        if any(n.op == "output" for n in closure):
            continue  # the forward returns the option itself: leave the input in place
        for n in reversed(closure):
            if not n.users:
                graph.erase_node(n)


_CONSTRUCTORS = ("zeros", "ones", "empty", "full", "rand", "randn", "randint", "arange", "eye")


def _trace_hint(model: nn.Module, exc: Exception, message: str) -> str:
    """What usually causes this tracing failure, and the fix; the general rule otherwise."""
    try:
        source = inspect.getsource(type(model))
    except (OSError, TypeError):
        source = ""
    if "pack_padded_sequence" in source or "pack_sequence" in source:
        return (
            "packed sequences cannot be traced: give the recurrent layer padded batches "
            "(docs/recurrent.md)"
        )
    if "not installed as a submodule" in message:
        return (
            "a module created inside forward (nn.Flatten()(x), say) cannot be traced: create it "
            "once in __init__, or call the functional form (torch.flatten(x, 1))"
        )
    if isinstance(exc, TypeError) and any(f"{c}()" in message for c in _CONSTRUCTORS):
        return (
            "a tensor built from sizes read off the input (torch.zeros(x.size(0), h), say) "
            "cannot be traced: build it from the input instead (x.new_zeros(x.size(0), h))"
        )
    return "masks need a forward pass without data-dependent Python control flow"


def trace(model: nn.Module, training: bool) -> fx.Graph:
    """The model's graph with ``self.training`` read as ``training`` (modes restored after)."""
    concrete = _defaults_to_trace(model)
    modes = [(m, m.training) for m in model.modules()]
    model.train(training)
    try:
        graph = fx.Tracer().trace(model, concrete_args=concrete or None)
    except Exception as exc:  # fx raises many types (TraceError, TypeError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(
            f"cannot trace {type(model).__name__} with torch.fx ({type(exc).__name__}: "
            f"{first[:200]}); {_trace_hint(model, exc, first)}"
        ) from exc
    finally:
        for m, mode in modes:
            m.training = mode
    if concrete:
        _drop_specialised_inputs(graph, set(concrete))
        graph.lint()
    _follow_in_place_ops(graph)
    return graph


def _in_place(node: fx.Node) -> bool:
    if node.op == "call_method":
        return str(node.target).endswith("_") and not str(node.target).endswith("__")
    return node.op == "call_function" and (
        node.target in (F.relu_, torch.relu_) or node.kwargs.get("inplace") is True
    )


def _follow_in_place_ops(graph: fx.Graph) -> None:
    """``h.relu_()`` written as a statement changes ``h`` but fx records ``h``'s later readers
    as reading the node before it, so the graph (and every analysis of it: where a unit's
    activation is, which ops a channel flows through) would skip the op. Later readers of the
    tensor read the in-place node instead; it returns that same tensor, so nothing runs
    differently."""
    order = {n: i for i, n in enumerate(graph.nodes)}
    for node in list(graph.nodes):
        if not _in_place(node) or not node.args or not isinstance(node.args[0], fx.Node):
            continue
        source = node.args[0]
        for user in list(source.users):
            if user is not node and order[user] > order[node]:
                user.replace_input_with(source, node)


def _resolves(root: nn.Module, target: str) -> bool:
    obj = root
    for part in target.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def _graph_module(source: nn.Module, root: nn.Module, graph: fx.Graph) -> fx.GraphModule:
    """A GraphModule over ``graph`` whose attributes come from ``root``; anything ``root`` lacks is
    first copied (by reference) from ``source`` into ``root``, so both share every module."""
    from torch.fx.graph_module import _copy_attr

    for node in graph.nodes:
        if node.op in ("call_module", "get_attr") and not _resolves(root, str(node.target)):
            _copy_attr(source, root, str(node.target))
    return fx.GraphModule(root, graph, class_name=type(source).__name__)


_GRAPH_MODULE_NAMES = (frozenset(dir(fx.GraphModule)) - frozenset(dir(nn.Module))) | frozenset(
    vars(fx.symbolic_trace(nn.Identity()))  # and what its __init__ sets (meta, _code, ...)
) - frozenset(vars(nn.Identity()))


def _check_names(model: nn.Module) -> None:
    """A top-level submodule, parameter or buffer named like a GraphModule attribute (``code``,
    ``graph``, ``meta``) cannot live on the traced copy of the model."""
    names = [n for n, _ in model.named_children()]
    names += [n for n, _ in model.named_parameters(recurse=False)]
    names += [n for n, _ in model.named_buffers(recurse=False)]
    clash = sorted(set(names) & _GRAPH_MODULE_NAMES)
    if clash:
        raise ConfigError(
            f"{type(model).__name__} has an attribute named {clash[0]!r}, a name torch.fx's "
            f"GraphModule (what secateurs traces the model into) uses itself; rename it "
            f"(self.{clash[0]}_ = ..., say)"
        )


_DROPOUTS = {
    F.dropout: 2, F.alpha_dropout: 2, F.feature_alpha_dropout: 2, F.dropout1d: 2,
    F.dropout2d: 2, F.dropout3d: 2, torch.dropout: 2, torch.alpha_dropout: 2,
    torch.feature_dropout: 2, torch.feature_alpha_dropout: 2,
}  # function -> position of its training flag


def _check_eval_deterministic(model: nn.Module, graph: fx.Graph) -> None:
    """Dropout left on in eval mode (``F.dropout(x, 0.3)``: its ``training`` defaults to True)
    makes every evaluation random: scores, accuracies and the export's check would all vary."""
    for node in graph.nodes:
        position = _DROPOUTS.get(node.target) if node.op == "call_function" else None
        if position is None:
            continue
        flag = node.kwargs.get("training", node.kwargs.get("train"))
        if flag is None:
            flag = node.args[position] if len(node.args) > position else True
        if flag is True:
            raise ConfigError(
                f"{type(model).__name__}.forward calls {node.target.__name__} with training=True "
                f"in eval mode too (node {node.name!r}; F.dropout's default), so its outputs are "
                "random at evaluation: pass training=self.training, or use an nn.Dropout module"
            )


def traced_graphs(model: nn.Module) -> list[fx.GraphModule]:
    """The model traced in eval mode, and in train mode too if its forward differs (the second
    shares every module of the first)."""
    _check_names(model)
    eval_graph, train_graph = trace(model, False), trace(model, True)
    _check_eval_deterministic(model, eval_graph)
    gm = fx.GraphModule(model, eval_graph, class_name=type(model).__name__)
    if train_graph.python_code("self").src == eval_graph.python_code("self").src:
        return [gm]
    return [gm, _graph_module(model, gm, train_graph)]


class _ShapeProp(ShapeProp):
    """ShapeProp that remembers the node it is running, to name it when the model fails."""

    current: fx.Node | None = None

    def run_node(self, n: fx.Node):
        self.current = n
        return super().run_node(n)


def _where(node: fx.Node | None) -> str:
    if node is None:
        return ""
    if node.op == "call_module":
        return f" at {node.target}"
    return f" at {node.name} ({getattr(node.target, '__name__', node.target)})"


def propagate_shapes(gm: fx.GraphModule, example_input: torch.Tensor, training: bool = False):
    """Annotate every node with its output shape by running ``example_input`` once, without
    gradients and without changing any buffer (BatchNorm statistics) or the random state;
    returns the output. A failure names the node and the model's own error."""
    modes = {name: m.training for name, m in gm.named_modules()}
    saved = {k: v.detach().clone() for k, v in gm.state_dict().items()} if training else {}
    if training and example_input.shape[0] < 2:  # BatchNorm needs two samples in train mode
        example_input = torch.cat([example_input, example_input])
    gm.train(training)
    prop = _ShapeProp(gm)
    try:
        # ShapeProp prints the traceback of a failing node itself; the error below says it
        with torch.no_grad(), torch.random.fork_rng(devices=[]), \
                contextlib.redirect_stderr(io.StringIO()):
            return prop.propagate(example_input)
    except Exception as exc:
        cause = exc.__cause__ if exc.__cause__ is not None else exc
        text = str(cause).strip()
        first = text.splitlines()[0] if text else ""
        dtypes = {p.dtype for p in gm.parameters()}
        hint = ""
        if example_input.is_floating_point() and dtypes and example_input.dtype not in dtypes:
            kinds = ", ".join(sorted(str(d).removeprefix("torch.") for d in dtypes))
            hint = (f"; the model's weights are {kinds} and the data "
                    f"{str(example_input.dtype).removeprefix('torch.')}: keep the model in the "
                    "data's dtype and train in lower precision with torch.autocast in a training "
                    "hook (docs/training.md)")
        raise ConfigError(
            f"the model fails on an example input of shape {tuple(example_input.shape)} "
            f"{'in train mode ' if training else ''}{_where(prop.current).lstrip()}"
            f"{' ' if prop.current is not None else ''}({type(cause).__name__}: {first[:200]})"
            + hint
        ) from cause
    finally:
        for name, m in gm.named_modules():
            m.training = modes.get(name, m.training)
        if saved:
            with torch.no_grad():
                for k, v in gm.state_dict().items():
                    v.copy_(saved[k])


def _trained_parameters(module: nn.Module, forward, example_input: torch.Tensor) -> set[str]:
    """The names of the parameters a loss on ``forward(example_input)`` reaches (eval mode)."""
    named = [(k, p) for k, p in module.named_parameters() if p.requires_grad]
    if not named:
        return set()
    with torch.enable_grad():
        leaves = [t for t in pytree.tree_leaves(forward(example_input))
                  if isinstance(t, torch.Tensor) and t.requires_grad and t.is_floating_point()]
        if not leaves:
            return set()
        total = sum(t.float().sum() for t in leaves)
        grads = torch.autograd.grad(total, [p for _, p in named], allow_unused=True)
    return {k for (k, _), g in zip(named, grads, strict=True) if g is not None}


def check_gradients_survive(model: nn.Module, gm: fx.GraphModule, example_input: torch.Tensor):
    """Refuse a forward whose gradient mode tracing lost: parameters that the model shields from
    the loss (``torch.no_grad()``, ``torch.inference_mode()``) but that the traced graph, which
    does not record those blocks, would train."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            own = _trained_parameters(model, model, example_input)
            traced = _trained_parameters(model, gm, example_input)
    except Exception:  # noqa: BLE001 - the forward's failures are reported by propagate_shapes
        return
    finally:
        for m, mode in modes:
            m.training = mode
    shielded = sorted(traced - own)
    if shielded:
        raise ConfigError(
            f"{type(model).__name__}.forward turns gradients off around {', '.join(shielded[:3])}"
            f"{' ...' if len(shielded) > 3 else ''} (torch.no_grad()?), which torch.fx does not "
            "record, so those weights would be trained: freeze them with requires_grad_(False) "
            "instead"
        )
