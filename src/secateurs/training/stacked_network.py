"""``StackedNetwork``: K models of one architecture, read from their traced graph, as one
batched model; ``evaluate_lockstep`` measures all K in one pass (see ``lockstep`` for training)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import fx, nn
from torch.nn import functional as F
from torch.utils import _pytree as pytree

from ..errors import ConfigError
from . import stacked_recurrent  # noqa: F401  (registers LSTM / GRU / RNN, Embedding)
from .fused_chain import Stage
from .stacked_ops import (
    _BINARY,
    _BINARY_KWARGS,
    _DROPOUT_FUNCTIONS,
    _PER_CHANNEL_FUNCTIONS,
    _POINTWISE_FUNCTIONS,
    _POINTWISE_METHODS,
    DropoutGenerators,
    LockstepUnsupported,
    Stacked,
    StackedConv2d,
    StackedDropout,
    StackedOp,
    _binary,
    _flatten_args,
    _flatten_stacked,
    _per_channel,
    _stacker_for,
)
from .stacked_shapes import is_shape_op, shape_function

LAYOUTS = ("shared", "kb", "bk")
# Bytes that stacked evaluation may spend on one activation tensor (the chunk size follows):
# measured on CPU, conv activations that stay in cache evaluate 2x faster than batches of 2048.
EVAL_MEMORY_BUDGET = 8 * 2**20
GPU_EVAL_MEMORY_BUDGET = 512 * 2**20


class _LeafTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return _stacker_for(m) is not None or super().is_leaf_module(m, qualname)


def _trace(model: nn.Module) -> fx.Graph:
    try:
        return _LeafTracer().trace(model)
    except Exception as exc:  # fx raises many types
        raise LockstepUnsupported(
            f"cannot trace {type(model).__name__} for lockstep ({type(exc).__name__}: {exc})"
        ) from exc


FOLLOWS_MODE = "secateurs_dropout_follows_mode"


def _trace_in_mode(model: nn.Module, training: bool) -> fx.Graph:
    modes = {m: m.training for m in model.modules()}
    model.train(training)
    try:
        return _trace(model)
    finally:
        for m, mode in modes.items():
            m.training = mode


def _node_signature(node: fx.Node, drop_training: bool) -> tuple:
    kwargs = dict(node.kwargs)
    args = list(node.args)
    if drop_training:
        kwargs.pop("training", None)
        args = args[:2] + args[3:]
    return node.op, str(node.target), str(args), str(kwargs), node.name


def _mark_mode_following_dropouts(train: fx.Graph, eval_: fx.Graph) -> None:
    """A forward whose train and eval graphs differ only in the ``training`` flag of functional
    dropouts (``F.dropout(x, p, training=self.training)``): mark those dropouts in the train graph
    as following the stack's mode; any other difference is refused."""
    a, b = list(train.nodes), list(eval_.nodes)
    same = len(a) == len(b)
    marks = []
    for u, v in zip(a, b, strict=False) if same else ():
        dropout = u.op == "call_function" and u.target in _DROPOUT_FUNCTIONS
        if _node_signature(u, dropout) != _node_signature(v, dropout):
            same = False
            break
        if dropout and _node_signature(u, False) != _node_signature(v, False):
            marks.append(u)
    if not same:
        raise LockstepUnsupported(
            "the model's forward differs between train and eval mode (other than in dropout's "
            "training flag); lockstep runs one graph in both modes"
        )
    for u in marks:
        u.meta[FOLLOWS_MODE] = True


def trace_stackable(models: Sequence[nn.Module]) -> fx.Graph:
    """The traced graph of ``models[0]`` (in train mode; traced in eval mode too, which must give
    the same graph up to functional dropouts' ``training`` flag), after checking that every model
    traces to the same code; pass it to ``StackedNetwork`` (or ``train_lockstep``) to stack these
    models again without tracing them again."""
    if not models:
        raise ConfigError("lockstep needs at least one model")
    graph = _trace_in_mode(models[0], True)
    code = graph.python_code("self").src
    eval_graph = _trace_in_mode(models[0], False)
    if eval_graph.python_code("self").src != code:
        _mark_mode_following_dropouts(graph, eval_graph)
    for i, m in enumerate(models[1:], 1):
        if _trace_in_mode(m, True).python_code("self").src != code:
            raise ConfigError(f"model {i} does not have the architecture of model 0")
    return graph


def _logits_only(graph: fx.Graph) -> tuple[fx.Graph, set[str]]:
    """A model returning several values (``logits, features``, a dict): the graph that returns
    its first tensor-valued leaf (what training uses, as ``select_output`` takes it), without
    the work only the other outputs need. Callers check the result against the model's own
    logits (``masked_unsupported_reason``), so a wrong pick falls back instead of training.
    Also returns the modules only the other outputs call: they get no gradient either way."""
    output = next(n for n in graph.nodes if n.op == "output")
    structure = output.args[0]
    if isinstance(structure, fx.Node):
        return graph, set()
    leaves = [leaf for leaf in pytree.tree_leaves(structure) if isinstance(leaf, fx.Node)]
    if not leaves:
        return graph, set()
    copy = fx.Graph()
    mapping: dict[fx.Node, fx.Node] = {}
    copy.graph_copy(graph, mapping)
    out = copy.output(mapping[leaves[0]])
    needed, todo = set(), [out]
    while todo:
        node = todo.pop()
        if node not in needed:
            needed.add(node)
            todo.extend(node.all_input_nodes)
    called = {str(n.target) for n in copy.nodes if n.op == "call_module"}
    for node in reversed(list(copy.nodes)):
        if node not in needed and node.op != "placeholder" and not node.users:
            copy.erase_node(node)
    kept = {str(n.target) for n in copy.nodes if n.op == "call_module"}
    return copy, called - kept


def _settings(module: nn.Module) -> str:
    return f"{type(module).__name__}({module.extra_repr()})"


def _check_same_settings(name: str, modules: Sequence[nn.Module]) -> None:
    """Every model's module ``name`` has model 0's type and settings (stride, padding, slopes,
    pool sizes: what ``extra_repr`` shows). Stacked ops take those settings from model 0, so any
    difference would silently run the other models with model 0's settings."""
    ref = modules[0]
    for i, module in enumerate(modules[1:], 1):
        if type(module) is not type(ref) or module.extra_repr() != ref.extra_repr():
            raise LockstepUnsupported(
                f"module {name!r} has other settings in model {i} than in model 0: "
                f"{_settings(module)} against {_settings(ref)}; lockstep batches only models "
                "whose modules are configured alike"
            )


def _key(name: str) -> str:
    return name.replace(".", "__")


class StackedNetwork(nn.Module):
    """K models of one architecture as one module whose parameters are stacked ``(K, ...)``.

    ``forward(x, layout)`` takes a shared batch (B, ...) or per-network batches (K, B, ...)
    (``kb``) or (B, K, ...) (``bk``) and returns logits (K, B, classes). ``write_back`` copies each
    network's slice into its model; ``select`` drops networks from the stack.
    """

    def __init__(self, models: Sequence[nn.Module], graph: fx.Graph | None = None):
        """``graph``: ``trace_stackable(models)`` or the graph of a previous stack of these
        models (skips tracing and comparing every model's code; tensor shapes and module settings
        are still checked)."""
        super().__init__()
        if not models:
            raise ConfigError("lockstep needs at least one model")
        if graph is None:
            graph = trace_stackable(models)
        graph, unused = _logits_only(graph)
        shapes0 = {k: tuple(v.shape) for k, v in models[0].state_dict().items()}
        for i, m in enumerate(models[1:], 1):
            if {k: tuple(v.shape) for k, v in m.state_dict().items()} != shapes0:
                raise ConfigError(f"model {i} has other tensor shapes than model 0")
        owners: dict[int, str] = {}
        for name, param in models[0].named_parameters(remove_duplicate=False):
            if id(param) in owners:  # stacked per module, it would become two parameters
                raise LockstepUnsupported(
                    f"lockstep cannot batch tied weights: {owners[id(param)]!r} and {name!r} are "
                    "one parameter"
                )
            owners[id(param)] = name
        self.graph = graph
        self.k = len(models)
        self.ops = nn.ModuleDict()
        self._module_names: dict[str, str] = {}
        self._program: list[tuple[fx.Node, Callable]] = []
        self._output: fx.Node | None = None
        self._input: fx.Node | None = None
        self.input_layout = "kb"
        # per-network dropout generators (default seeds: the positions; ``seed_dropout`` sets
        # each network's own)
        self.dropout_generators = DropoutGenerators(range(self.k))
        self.functional_dropouts = nn.ModuleList()  # follows .train()/.eval()
        # module name -> (op, position): modules run inside an op that feeds their taps
        self._inner_taps: dict[str, tuple[StackedOp, int]] = {}
        covered: set[str] = set()
        for node in graph.nodes:
            self._compile(node, models, covered)
        stateful = {
            name for name, mod in models[0].named_modules()
            if any(True for _ in mod.parameters(recurse=False))
            or any(True for _ in mod.buffers(recurse=False))
        }
        missing = {  # modules only the outputs besides the logits use are not trained either
            name for name in stateful - covered
            if not any(name == u or name.startswith(u + ".") for u in unused)
        }
        if missing:
            raise LockstepUnsupported(
                f"lockstep reads parameters only through modules; {sorted(missing)[:3]} hold "
                "tensors that forward uses another way"
            )

    # -- building ------------------------------------------------------------------------
    def _compile(self, node: fx.Node, models: Sequence[nn.Module], covered: set[str]) -> None:
        if node.op == "placeholder":
            if self._input is not None:
                raise LockstepUnsupported("lockstep models take exactly one input tensor")
            self._input = node
            return
        if node.op == "output":
            out = node.args[0]
            if not isinstance(out, fx.Node):
                raise LockstepUnsupported("lockstep models must return one tensor")
            self._output = out
            return
        if node.op == "get_attr":
            raise LockstepUnsupported(
                f"forward reads the tensor {node.target!r} directly; lockstep needs modules"
            )
        if node.op == "call_module":
            name = str(node.target)
            module = models[0].get_submodule(name)
            factory = _stacker_for(module)
            if factory is None:
                raise LockstepUnsupported(
                    f"lockstep cannot batch {type(module).__name__} ({name!r}) exactly"
                )
            if len(node.args) != 1 or node.kwargs:
                raise LockstepUnsupported(
                    f"lockstep passes one tensor to {type(module).__name__} ({name!r}); the "
                    f"forward gives it more: {node.format_node()}"
                )
            key = _key(name)
            if key not in self.ops:
                modules = [m.get_submodule(name) for m in models]
                _check_same_settings(name, modules)
                op = self.ops[key] = factory(modules)
                if isinstance(op, StackedDropout) or getattr(op, "uses_dropout_generators", False):
                    op.generators = self.dropout_generators
                self._module_names[key] = name
                covered.add(name)
                names = {id(m): n for n, m in models[0].named_modules()}
                covered.update(names[id(m)] for m in op.owned_modules(module) if id(m) in names)
                for position, inner in enumerate(op.tapped_modules(module)):
                    self._inner_taps[names[id(inner)]] = (op, position)
                if isinstance(self.ops[key], StackedConv2d) and self.input_layout == "kb":
                    self.input_layout = "bk"
            op = self.ops[key]
            self._program.append((node, lambda env, op=op, n=node: op.run(env[n.args[0]])))
            return
        self._program.append((node, self._function(node)))

    def _function(self, node: fx.Node) -> Callable:
        target, args, kwargs = node.target, node.args, node.kwargs

        def arg(env, a):
            return env[a] if isinstance(a, fx.Node) else a

        def first_only(env) -> Stacked:
            if any(isinstance(a, fx.Node) for a in list(args[1:]) + list(kwargs.values())):
                raise LockstepUnsupported(f"{node.format_node()} takes several tensors")
            return env[args[0]]

        if node.op == "call_function" and target in _BINARY:
            unknown = set(kwargs) - _BINARY_KWARGS
            if unknown or len(args) != 2 or any(isinstance(v, fx.Node) for v in kwargs.values()):
                raise LockstepUnsupported(
                    f"lockstep cannot batch {node.format_node()}: it passes binary operations "
                    f"two arguments and the keywords {sorted(_BINARY_KWARGS)} only"
                )
            base = _BINARY[target]
            fn = (lambda u, v: base(u, v, **kwargs)) if kwargs else base
            return lambda env: _binary(fn, arg(env, args[0]), arg(env, args[1]))
        if node.op == "call_function" and target in _POINTWISE_FUNCTIONS or (
            node.op == "call_method" and target in _POINTWISE_METHODS
        ):
            call = (lambda t: getattr(t, target)(*args[1:], **kwargs)) if node.op == "call_method" \
                else (lambda t: target(t, *args[1:], **kwargs))
            return lambda env: (lambda s: Stacked(call(s.t), s.layout))(first_only(env))
        if node.op == "call_function" and target in _PER_CHANNEL_FUNCTIONS:
            return lambda env: _per_channel(lambda t: target(t, *args[1:], **kwargs), first_only(env))
        if node.op == "call_function" and target in _DROPOUT_FUNCTIONS:
            return self._functional_dropout(node)
        flatten = (node.op == "call_function" and target is torch.flatten) or (
            node.op == "call_method" and target == "flatten"
        )
        if flatten and _flatten_args(args, kwargs) == (1, -1):  # keeps a bk layout as it is
            return lambda env: _flatten_stacked(first_only(env))
        if is_shape_op(node):
            return shape_function(node, lambda: self.k)
        raise LockstepUnsupported(f"lockstep cannot batch {node.format_node()}")

    def _functional_dropout(self, node: fx.Node) -> Callable:
        """``F.dropout(x, p, training)`` with constant ``p`` and ``training`` (as traced: a
        ``training=self.training`` is a constant in each traced graph)."""
        names = ("input", "p", "training", "inplace")
        given = dict(zip(names, node.args, strict=False)) | dict(node.kwargs)
        if any(isinstance(v, fx.Node) for k, v in given.items() if k != "input"):
            raise LockstepUnsupported(f"lockstep needs constant dropout settings: {node.format_node()}")
        p, training = float(given.get("p", 0.5)), bool(given.get("training", True))
        src = node.args[0] if node.args else node.kwargs["input"]
        if not training or p == 0:
            return lambda env: env[src]
        always = not node.meta.get(FOLLOWS_MODE, False)  # F.dropout(x, p): on in eval mode too
        op = StackedDropout([], p, node.target is not F.dropout, always=always)
        op.generators = self.dropout_generators
        self.functional_dropouts.append(op)
        return lambda env: op.run(env[src])

    def seed_dropout(self, seeds: Sequence[int]) -> None:
        """Seed network ``i``'s dropout generator from ``seeds[i]`` (``dropout_seed``): its masks
        then depend on that seed only, not on the other networks of the stack."""
        if len(seeds) != self.k:
            raise ConfigError(f"{self.k} networks but {len(seeds)} dropout seeds")
        self.dropout_generators.reseed(seeds)

    # -- running -------------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        layout: str = "shared",
        taps: dict[str, Callable[[torch.Tensor], None]] | None = None,
    ) -> torch.Tensor:
        """Logits (K, B, classes). ``taps`` maps module names to callbacks that receive that
        module's output as a (K, B, ...) tensor (possibly a strided view)."""
        if layout not in LAYOUTS:
            raise ConfigError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        env: dict[fx.Node, Stacked] = {self._input: Stacked(x, layout)}
        taps_by_node = {}
        inner = [(name, *self._inner_taps[name]) for name in taps or () if name in self._inner_taps]
        if taps:
            for node, _ in self._program:
                if node.op == "call_module" and str(node.target) in taps:
                    taps_by_node[node] = taps[str(node.target)]
        for name, op, position in inner:
            op.tap_callbacks[position] = taps[name]
        try:
            for node, step in self._program:
                env[node] = step(env)
                if node in taps_by_node:
                    for value in _leaves(env[node]):
                        taps_by_node[node](value.kb(self.k))
        finally:
            for _, op, position in inner:
                op.tap_callbacks.pop(position, None)
        out = env[self._output]
        if not isinstance(out, Stacked):
            raise LockstepUnsupported("lockstep models must return one tensor")
        return out.kb(self.k)

    def fused_stages(self) -> list[Stage] | None:
        """The program as ``FusedChain`` stages if it is a plain chain of ops that each have one
        (a flatten only before the first layer), else None."""
        stages: list[Stage] = []
        previous = self._input
        for node, _ in self._program:
            if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
                return None
            if node.args[0] is not previous or len(previous.users) != 1:
                return None
            stage = self.ops[_key(str(node.target))].fused_stage()
            if stage is None or (stage.kind == "flatten" and stages):
                return None
            stages.append(stage)
            previous = node
        return stages if previous is self._output else None

    def select(self, keep: Sequence[int]) -> dict[nn.Parameter, nn.Parameter]:
        """Keep the networks at positions ``keep`` (in that order); old -> new parameters."""
        index = torch.as_tensor(list(keep), dtype=torch.long)
        mapping = {}
        for op in self.ops.values():
            mapping.update(op.select(index))
        self.dropout_generators.select(index.tolist())
        self.k = len(index)
        return mapping

    def write_back(self, model: nn.Module, position: int) -> None:
        """Copy the network at ``position`` into ``model`` (same architecture)."""
        for key, op in self.ops.items():
            op.write_back(model.get_submodule(self._module_names[key]), position)

    def slice_state(self, position: int) -> dict[str, torch.Tensor]:
        """A copy of one network's tensors (keyed by stacked name), for ``load_slice``."""
        return {k: v[position].detach().clone() for k, v in self.state_dict().items()}

    @torch.no_grad()
    def load_slice(self, position: int, state: dict[str, torch.Tensor]) -> None:
        own = self.state_dict()
        for k, v in state.items():
            own[k][position].copy_(v)

    @torch.no_grad()
    def elements_per_sample(self, example: torch.Tensor) -> int:
        """The largest activation of one sample of one network, in elements (for chunking)."""
        largest = 0

        def see(t: torch.Tensor) -> None:
            nonlocal largest
            largest = max(largest, t[0, 0].numel())

        was_training = self.training
        self.eval()  # train mode would move BatchNorm statistics and draw dropout masks
        try:
            two = torch.cat([example[:1], example[:1]])  # a forward may squeeze a batch of one
            self.forward(two, "shared", taps={self._module_names[k]: see for k in self.ops})
        finally:
            self.train(was_training)
        return max(largest, int(example[:1].numel()))


def _leaves(value) -> list[Stacked]:
    """The activations in a value of the stacked program (a tuple a module returned)."""
    if isinstance(value, Stacked):
        return [value]
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in _leaves(v)]
    return []


def eval_chunk(
    k: int, elements_per_sample: int, batch_size: int, device: torch.device | str = "cpu"
) -> int:
    """Samples per stacked forward so that one activation of K networks fits the memory budget
    (``EVAL_MEMORY_BUDGET`` on CPU, ``GPU_EVAL_MEMORY_BUDGET`` elsewhere), at most
    ``batch_size``."""
    budget = EVAL_MEMORY_BUDGET if torch.device(device).type == "cpu" else GPU_EVAL_MEMORY_BUDGET
    return max(1, min(batch_size, budget // max(1, k * elements_per_sample * 4)))


@torch.no_grad()
def evaluate_lockstep(
    stacked: StackedNetwork,
    x: torch.Tensor,
    y: torch.Tensor,
    chunk: int | None = None,
    *,
    taps: dict[str, Callable[[torch.Tensor], None]] | None = None,
) -> list[tuple[float, float]]:
    """Per network (mean cross-entropy, accuracy) on the shared ``(x, y)``, in eval mode.

    ``chunk`` samples go through at a time (default: what fits ``EVAL_MEMORY_BUDGET``; large
    batches of large activations run from memory instead of cache, several times slower on CPU).
    Losses are summed per chunk in float32 and accumulated in float64. ``taps`` (see
    ``StackedNetwork.forward``) see every sample, so that one pass can both measure the networks
    and collect activation statistics.
    """
    was_training = stacked.training
    stacked.eval()
    device = next(stacked.parameters()).device
    k, n = stacked.k, len(y)
    if chunk is None:
        chunk = eval_chunk(k, stacked.elements_per_sample(x[:1].to(device)), 2048, device)
    edges = [*range(0, n, chunk), n]
    loss_sum = torch.zeros(k, dtype=torch.float64, device=device)
    correct = torch.zeros(k, dtype=torch.int64, device=device)
    for i, j in zip(edges[:-1], edges[1:], strict=True):
        yb = y[i:j].to(device, non_blocking=True)
        logits = stacked(x[i:j].to(device, non_blocking=True), taps=taps)
        scores = logits.transpose(1, 2)
        target = yb.expand(k, -1)
        loss_sum += F.cross_entropy(scores, target, reduction="none").sum(1).double()
        correct += (logits.contiguous().argmax(2) == target).sum(1)
    stacked.train(was_training)
    n = max(n, 1)
    return [(s / n, c / n) for s, c in zip(loss_sum.tolist(), correct.tolist(), strict=True)]
