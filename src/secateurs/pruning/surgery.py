"""Physical removal of dropped units: a smaller network that computes exactly what the masked one
does, and its save / load without pickle.

Rules (see docs/export.md):
- A dropped unit of a layer is removed with its weights, its BatchNorm entries and the matching
  inputs of every Linear/Conv2d reading it (all spatial positions of a channel after a flatten).
- Channels that meet in a residual addition (a coupled group) are removed only where every
  coupled producer dropped them. Where some producers dropped a channel and others did not, the
  channel is kept and the dead producers' branches are zeroed exactly: the BatchNorm weight and bias
  of that channel when the tail has an affine BatchNorm, else the layer's weight rows and bias;
  when the tail after that point has an op with f(0) != 0 (Softplus, Sigmoid), a UnitMask stays.
- Channels whose path to the next layers goes through an op that is not a zero-preserving
  per-channel op (see ``masks.analyse_channel_flow``) are kept and zeroed the same way.
- A recurrent layer's dropped unit loses its rows in every gate of its layer's weights and
  biases and its columns in ``weight_hh`` and the next layer's ``weight_ih`` (``recurrent``). The
  layers of one module share ``hidden_size``: the exported module keeps the largest number of
  units any of its layers keeps, and pads the others with dropped units zeroed (``zeroed``).
The export is checked on the example input against the masked network before it is returned.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import fx, nn
from torch.nn.modules.conv import _ConvNd
from torch.utils import _pytree as pytree

from ..errors import ConfigError, DataError
from ..io import load_tensors, read_json, save_tensors, tensor_digest, write_json
from .counting import measure
from .layers import _set as _slice_param
from .layers import consumer_kind, slice_outputs, zero_outputs
from .masks import MASKS_ATTR, MaskedNetwork, _mask_key, is_zero_preserving, select_output
from .recurrent import RECURRENT_ATTR, layer_names, slice_units, zero_units

FORMAT = "secateurs-exported-v1"
WEIGHTS_FILE = "model.safetensors"
ARCH_FILE = "architecture.json"


@dataclass
class ExportResult:
    """A physically pruned network and what was done to get it.

    ``removed[layer]`` / ``zeroed[layer]``: original unit indices physically removed / kept but
    zeroed (dead in this layer, alive in a coupled producer or not removable). ``masked_layers``:
    layers whose UnitMask had to stay. ``kept_because``: per channel group (first layer's name),
    why its dead channels could not be removed, if so. ``groups``: every channel group (coupled
    groups and single layers).
    """

    module: nn.Module
    removed: dict[str, list[int]]
    zeroed: dict[str, list[int]]
    params: int
    macs: int
    params_before: int
    macs_before: int
    layers: tuple[str, ...] = ()
    input_shape: tuple[int, ...] = ()
    num_classes: int = 0
    masked_layers: tuple[str, ...] = ()
    kept_because: dict[str, list[str]] = field(default_factory=dict)
    model_spec: dict | None = None
    widths: dict[str, int] = field(default_factory=dict)
    groups: list[tuple[str, ...]] = field(default_factory=list)
    input_dtype: str = "float32"

    def summary(self) -> str:
        """One line: what was removed, what it saved, and which dropped units had to stay."""
        total = sum(self.widths.values()) or 1
        removed = sum(len(v) for v in self.removed.values())
        text = (
            f"removed {removed} of {total} units ({removed / total:.0%}); params "
            f"{self.params_before:,} -> {self.params:,} ({_ratio(self.params_before, self.params)}), "
            f"MACs/sample {self.macs_before:,} -> {self.macs:,} "
            f"({_ratio(self.macs_before, self.macs)})"
        )
        coupled, blocked, padded = [], 0, 0
        for group in self.groups:
            if group[0] in self.kept_because:
                blocked += sum(len(self.zeroed[x]) for x in group)
                continue
            channels = set().union(*(self.zeroed[x] for x in group))
            if len(group) > 1 and channels:
                coupled.append(f"{group[0]}+{len(group) - 1}: {len(channels)}")
            elif channels:  # a recurrent layer padded to its module's widest layer
                padded += len(channels)
        if coupled:
            text += (
                "; coupled channels (a residual sum, a depthwise convolution) dropped by only "
                f"some of their layers were kept, zeroed in those ({', '.join(coupled)} channels)"
            )
        if blocked:
            reasons = "; ".join(r for rs in self.kept_because.values() for r in rs[:1])
            text += f"; kept {blocked} dropped units zeroed that cannot be removed ({reasons})"
        if padded:
            text += (
                f"; kept {padded} dropped recurrent units zeroed (the layers of one recurrent "
                "module share hidden_size: each keeps as many units as its widest layer)"
            )
        if not coupled and not blocked and not padded:
            text += "; every dropped unit was removed"
        if self.masked_layers:
            text += f"; a UnitMask stays after {', '.join(self.masked_layers)}"
        return text


def _ratio(before: int, after: int) -> str:
    return f"{before / after:.2f}x smaller" if after else "empty"


class TwoModeGraph(nn.Module):
    """An exported graph for a model whose forward differs between train and eval mode (it was
    traced once per mode): runs the graph of its current mode; both share every module."""

    def __init__(self, eval_graph: fx.GraphModule, train_graph: fx.GraphModule):
        super().__init__()
        self.net = eval_graph
        object.__setattr__(self, "train_net", train_graph)  # same modules as ``net``

    def forward(self, *args, **kwargs):
        return (self.train_net if self.training else self.net)(*args, **kwargs)


@dataclass
class _Plan:
    removed: dict[str, list[int]]
    zeroed: dict[str, list[int]]
    keep: dict[str, list[int]]  # per layer: original indices that stay
    masked_layers: tuple[str, ...]
    zero_at: dict[str, str]  # layer -> module whose channels get zeroed
    kept_because: dict[str, list[str]]


def _plan(masked: MaskedNetwork, alive: dict[str, torch.Tensor]) -> _Plan:
    flow, gm = masked.flow, masked.net
    removed, zeroed, keep, zero_at = {}, {}, {}, {}
    masked_layers, kept_because = [], {}
    for group in flow.groups():
        reasons = flow.barrier_reasons(group[0])
        if reasons:
            kept_because[group[0]] = reasons
        dead_everywhere = torch.ones_like(alive[group[0]])
        for layer in group:
            dead_everywhere &= ~alive[layer]
        gone = [] if reasons else torch.nonzero(dead_everywhere).flatten().tolist()
        for layer in group:
            removed[layer] = gone
            keep[layer] = [i for i in range(masked.widths[layer]) if i not in set(gone)]
            dead = torch.nonzero(~alive[layer]).flatten().tolist()
            zeroed[layer] = sorted(set(dead) - set(gone))
    for wrapper in getattr(gm, RECURRENT_ATTR, {}).values():
        # one hidden_size per module: pad layers that keep fewer units with dropped ones (zeroed)
        names = layer_names(wrapper.rnn_name, wrapper.rnn)
        width = max(len(keep[x]) if x in keep else wrapper.rnn.hidden_size for x in names)
        for x in names:
            extra = removed[x][: width - len(keep[x])] if x in keep else []
            for y in flow.group_of(x) if extra else ():
                removed[y] = [i for i in removed[y] if i not in set(extra)]
                keep[y] = sorted(keep[y] + extra)
                zeroed[y] = sorted(set(zeroed[y]) | set(extra))
    for layer in masked.layers:
        chain = flow.tails[layer]
        # Zero the last affine norm of the tail, else the layer itself; what follows in the
        # tail must keep a zero channel at zero, or the mask stays.
        point, after = 0, []
        for i, node in enumerate(chain):
            module = gm.get_submodule(str(node.target)) if node.op == "call_module" else None
            effect = _norm_on_zero(module) if i else "point"
            if effect == "point":
                point, after = i, []
            elif effect == "breaks":
                point = -1
            elif effect == "keeps":
                continue
            elif i:
                after.append(node)
        exact = point >= 0 and all(is_zero_preserving(n, gm) for n in after)
        if point >= 0:
            zero_at[layer] = str(chain[point].target)
        if zeroed[layer] and not exact:
            masked_layers.append(layer)
    return _Plan(removed, zeroed, keep, tuple(masked_layers), zero_at, kept_because)


def _norm_on_zero(module: nn.Module | None) -> str | None:
    """What a normalisation in a tail makes of a channel zeroed before it: "point" (an affine
    norm: zeroing its weight and bias makes the channel exactly zero), "keeps" (a norm on the
    channel's own statistics without affine terms maps 0 to 0), "breaks" (running statistics
    or other units' statistics move it off zero); None for anything that is not a norm."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "point" if module.affine else "breaks"
    if isinstance(module, nn.modules.instancenorm._InstanceNorm):
        return "point" if module.affine else "breaks" if module.track_running_stats else "keeps"
    if isinstance(module, nn.GroupNorm):
        if module.num_groups != module.num_channels:
            return "breaks"
        return "point" if module.affine else "keeps"
    if isinstance(module, nn.LayerNorm):
        return "breaks"
    return None


def _graphs(masked: MaskedNetwork) -> list[fx.GraphModule]:
    return [masked.net] + ([masked.train_net] if masked.train_net is not None else [])


def _same_modules(masked: MaskedNetwork) -> bool:
    """True if the original model still holds the very modules the traced graphs call."""
    original = masked.original
    for gm in _graphs(masked):
        for node in gm.graph.nodes:
            if node.op == "call_module" and not str(node.target).startswith(MASKS_ATTR):
                try:
                    if original.get_submodule(str(node.target)) is not gm.get_submodule(
                        str(node.target)
                    ):
                        return False
                except AttributeError:
                    return False
            if node.op == "get_attr":  # a bare Parameter or buffer (a class token): the same one
                target = str(node.target)
                try:
                    if target.startswith(MASKS_ATTR) or _attr(original, target) is not _attr(
                        gm, target
                    ):
                        return False
                except AttributeError:
                    return False
    return True


def _attr(root: nn.Module, target: str):
    for part in target.split("."):
        root = getattr(root, part)
    return root


def used_params(graphs: list[fx.GraphModule]) -> int:
    """Parameters the traced forward uses (shared ones once; unused submodules not counted)."""
    seen = {id(p): p.numel() for g in graphs for p in g.parameters()}
    return int(sum(seen.values()))


def _max_difference(a, b) -> tuple[float, float]:
    """Largest absolute difference between the tensors of two outputs of the same structure, and
    the largest magnitude in ``b``."""
    la, lb = pytree.tree_leaves(a), pytree.tree_leaves(b)
    error = scale = 0.0
    if len(la) != len(lb):
        return float("inf"), 0.0
    for x, y in zip(la, lb, strict=True):
        if isinstance(y, torch.Tensor):
            if not isinstance(x, torch.Tensor) or x.shape != y.shape:
                return float("inf"), 0.0
            if y.numel() and y.is_floating_point():
                error = max(error, float((x.double() - y.double()).abs().max()))
                scale = max(scale, float(y.abs().max()))
            elif y.numel() and not torch.equal(x, y):
                return float("inf"), 0.0
    return error, scale


def _restore_recurrent(graphs: list[fx.GraphModule]) -> None:
    """Call the (sliced) recurrent modules themselves again instead of their masked runners."""
    for g in graphs:
        if not hasattr(g, RECURRENT_ATTR):
            continue
        for node in [n for n in g.graph.nodes if n.op == "call_module"
                     and str(n.target).startswith(RECURRENT_ATTR + ".")]:
            wrapper = g.get_submodule(str(node.target))
            with g.graph.inserting_after(node):
                new = g.graph.call_module(wrapper.rnn_name, node.args, node.kwargs)
            node.replace_all_uses_with(new)
            g.graph.erase_node(node)
        delattr(g, RECURRENT_ATTR)
        g.graph.lint()
        g.recompile()


def export_pruned(
    masked: MaskedNetwork,
    example_input: torch.Tensor,
    *,
    masks: Mapping[str, torch.Tensor] | None = None,
) -> ExportResult:
    """A new, physically smaller network equal in output to ``masked`` with ``masks`` (default: its
    current masks). ``masked`` is not changed. The result keeps the model's own class when no
    UnitMask has to stay (else it is the traced ``torch.fx.GraphModule``, or a ``TwoModeGraph``
    holding one per mode when the model's forward depends on its mode)."""
    if example_input.shape[0] == 1:  # a forward that squeezes its batch dim needs two samples
        example_input = torch.cat([example_input, example_input])
    work = copy.deepcopy(masked)
    if masks is not None:
        work.set_masks(masks)
    alive = {x: m.detach().cpu().bool() for x, m in work.get_masks().items()}
    graphs = _graphs(work)
    reference, _, macs_before = measure(work.net, example_input)
    params_before = used_params(graphs)
    plan = _plan(work, alive)
    gm = work.net

    # Modules to slice: output units of prunable layers and their tail BatchNorms, input
    # channels of every consumer reading masked channels; zero what must be zeroed.
    wrappers = dict(getattr(gm, RECURRENT_ATTR, {}).items())
    recurrent = {x for w in wrappers.values() for x in layer_names(w.rnn_name, w.rnn)}
    for wrapper in wrappers.values():
        rnn = wrapper.rnn
        names = layer_names(wrapper.rnn_name, rnn)
        keeps = [plan.keep.get(x, list(range(rnn.hidden_size))) for x in names]
        if any(len(k) != rnn.hidden_size for k in keeps):
            slice_units(rnn, keeps)
        for j, x in enumerate(names):
            pos = {c: i for i, c in enumerate(keeps[j])}
            zero_units(rnn, j, [pos[c] for c in plan.zeroed.get(x, [])])
    for layer in work.layers:
        if layer in recurrent:
            continue
        keep = plan.keep[layer]
        pos = {c: i for i, c in enumerate(keep)}
        if len(keep) != work.widths[layer]:
            for node in work.flow.tails[layer]:
                if node.op != "call_module":
                    continue
                module = gm.get_submodule(str(node.target))
                if isinstance(module, (nn.Linear, _ConvNd, nn.modules.batchnorm._BatchNorm,
                                       nn.modules.instancenorm._InstanceNorm, nn.GroupNorm,
                                       nn.PReLU)):
                    slice_outputs(module, keep)
        if plan.zeroed[layer] and layer in plan.zero_at:
            zero_outputs(gm.get_submodule(plan.zero_at[layer]), [pos[c] for c in plan.zeroed[layer]])
    for name, space in work.flow.space_of.items():
        keep_of = {x: plan.keep[x] for x in space.layers()}
        if any(len(keep_of[x]) != work.widths[x] for x in keep_of):
            module = gm.get_submodule(name)
            kind = consumer_kind(module)
            kind.slice_inputs(module, space.input_index(keep_of))

    _restore_recurrent(graphs)
    masks_dict = getattr(gm, MASKS_ATTR)
    if plan.masked_layers or not _same_modules(work):
        for g in graphs:
            # (a deep-copied GraphModule re-creates its nodes: find them by name)
            by_name = {n.name: n for n in g.graph.nodes}
            for layer in work.layers:
                if layer in plan.masked_layers:
                    continue
                target = f"{MASKS_ATTR}.{_mask_key(layer)}"
                for node in [n for n in by_name.values() if n.op == "call_module"
                             and str(n.target) == target]:
                    node.replace_all_uses_with(node.args[0])
                    g.graph.erase_node(node)
        for layer in work.layers:
            key = _mask_key(layer)
            if layer in plan.masked_layers:
                _slice_param(masks_dict[key], "mask", 0, plan.keep[layer])
            else:
                del masks_dict[key]
        for g in graphs:
            if not len(masks_dict) and hasattr(g, MASKS_ATTR):
                delattr(g, MASKS_ATTR)
            g.graph.lint()
            g.recompile()
        module: nn.Module = gm if work.train_net is None else TwoModeGraph(gm, work.train_net)
    else:
        module = work.original  # the same (now sliced) modules, in the user's own class
    try:
        exported_out, _, macs = measure(module, example_input)
        params = used_params(graphs)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(
            f"the pruned network fails on the example input ({type(exc).__name__}: {first[:200]}); "
            "its forward may hard-code a width (e.g. x.view(-1, 512))"
        ) from exc
    error, scale = _max_difference(exported_out, reference)
    if not error <= 1e-4 * max(1.0, scale):
        raise RuntimeError(f"internal error: export changed the outputs by {error:.3g}")
    logits = select_output(reference, work.output)
    return ExportResult(
        module=module,
        removed={x: plan.removed[x] for x in work.layers},
        zeroed={x: plan.zeroed[x] for x in work.layers},
        params=params,
        macs=macs,
        params_before=params_before,
        macs_before=macs_before,
        layers=work.layers,
        input_shape=tuple(int(s) for s in example_input.shape[1:]),
        num_classes=int(logits.shape[-1]) if logits.dim() >= 2 else 0,
        masked_layers=plan.masked_layers,
        kept_because=plan.kept_because,
        model_spec=copy.deepcopy(work.spec),
        widths=dict(work.widths),
        groups=work.flow.groups(),
        input_dtype=str(example_input.dtype).removeprefix("torch."),
    )


# ----------------------------------------------------------------------------- save / load


def _version() -> str:
    try:
        from .. import __version__  # type: ignore[attr-defined]

        return str(__version__)
    except ImportError:
        try:
            from importlib.metadata import version

            return version("secateurs")
        except Exception:
            return "unknown"


def save_exported(
    path: str | Path, result: ExportResult, *, spec: Mapping | None = None
) -> Path:
    """Write the export without pickle: to a single ``*.safetensors`` file, the architecture as
    JSON in its metadata, or else into directory ``path`` as ``model.safetensors`` plus a
    readable ``architecture.json`` (atomically, weights first). ``spec`` is the model spec
    ``{"name": ..., "options": {...}}``; by default the spec the model was built from (registry
    models). Without one, loading needs ``model=``."""
    path = Path(path)
    architecture = export_architecture(result, spec=spec)
    state = result.module.state_dict()
    if is_single_file(path):
        meta = {"format": FORMAT, "architecture": json.dumps(architecture)}
        save_tensors(path, state, metadata=meta)
        return path
    created, wrote = not path.exists(), False
    try:
        save_tensors(path / WEIGHTS_FILE, state, metadata={"format": FORMAT})
        wrote = True
        write_json(path / ARCH_FILE, architecture)
    except BaseException:  # no half export: new weights beside an old architecture, or an empty
        if created:  # folder; a failure before the weights were replaced leaves what was there
            shutil.rmtree(path, ignore_errors=True)
        elif wrote:
            for name in (WEIGHTS_FILE, ARCH_FILE):
                (path / name).unlink(missing_ok=True)
        raise
    return path


def export_architecture(result: ExportResult, *, spec: Mapping | None = None) -> dict:
    """The JSON record of an export that ``load_exported`` rebuilds it from (see save_exported)."""
    if spec is None:
        spec = result.model_spec
    if spec is not None:
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise ConfigError(f"spec must be {{'name': str, 'options': dict}}, got {spec!r}")
        spec = {"name": spec["name"], "options": dict(spec.get("options") or {})}
        try:
            json.dumps(spec)
        except TypeError as exc:
            raise ConfigError(f"model spec is not JSON-serialisable: {exc}") from exc
    return {
        "format": FORMAT,
        "model": spec,
        "class": type(result.module).__name__,
        "input_shape": list(result.input_shape),
        "input_dtype": result.input_dtype,
        "num_classes": result.num_classes,
        "prunable_layers": list(result.layers),
        "removed": {k: list(v) for k, v in result.removed.items()},
        "zeroed": {k: list(v) for k, v in result.zeroed.items()},
        "masked_layers": list(result.masked_layers),
        "params": result.params,
        "macs": result.macs,
        "params_before": result.params_before,
        "macs_before": result.macs_before,
        "secateurs_version": _version(),
        "tensor_digest": tensor_digest(result.module.state_dict()),  # verified on load: flipped bytes are refused
    }


def is_single_file(path: str | Path) -> bool:
    """Whether ``path`` names a one-file export (``*.safetensors``) rather than a directory."""
    return Path(path).suffix == ".safetensors"


def _read_architecture(path: Path) -> tuple[dict, Path, Path]:
    """The architecture of an export (a one-file export or a directory), the file it came from
    (for error messages) and the weights file."""
    if is_single_file(path):
        if not path.is_file():
            raise DataError(f"{path} not found; expected a file written by save_exported")
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise DataError(f"{path} is not a readable safetensors file: {exc}") from exc
        if meta.get("format") != FORMAT or "architecture" not in meta:
            if path.name == WEIGHTS_FILE and (path.parent / ARCH_FILE).is_file():
                raise DataError(
                    f"{path} holds the weights of the export folder {path.parent}; give the "
                    f"folder ({path.parent}), which also holds its {ARCH_FILE}"
                )
            raise DataError(f"{path} is not a secateurs export (format {FORMAT!r} expected)")
        try:
            return json.loads(meta["architecture"]), path, path
        except ValueError as exc:
            raise DataError(f"{path}: the architecture metadata is not valid JSON: {exc}") from exc
    arch_path, weights_path = path / ARCH_FILE, path / WEIGHTS_FILE
    for p in (arch_path, weights_path):
        if not p.is_file():
            raise DataError(
                f"{p} not found; expected a directory or a .safetensors file written by "
                "save_exported"
            )
    try:
        return read_json(arch_path), arch_path, weights_path
    except (OSError, ValueError) as exc:
        raise DataError(f"{arch_path} is not valid JSON: {exc}") from exc


def _int_list(value, what: str) -> list[int]:
    if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
        raise DataError(f"{what} must be a list of integers, got {value!r}")
    return value


def _check_architecture(arch, where: Path) -> None:
    """Every field ``load_exported`` reads, with its type and range: a malformed file fails in one
    line naming the field, not with a traceback from deep inside the rebuild."""
    if not isinstance(arch, dict) or arch.get("format") != FORMAT:
        raise DataError(f"{where} is not a secateurs export (format {FORMAT!r} expected)")
    shape = _int_list(arch.get("input_shape"), f"{where}: input_shape")
    if not 1 <= len(shape) <= 4 or any(isinstance(v, bool) or v < 1 for v in shape) or (
        math.prod(shape) > 1 << 26
    ):
        raise DataError(
            f"{where}: input_shape must be 1 to 4 positive sizes (one sample's shape), got {shape}"
        )
    layers = arch.get("prunable_layers")
    if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
        raise DataError(f"{where}: prunable_layers must be a list of layer names")
    for key in ("removed", "zeroed"):
        if not isinstance(arch.get(key), dict) or set(arch[key]) != set(layers):
            raise DataError(f"{where}: {key!r} must map each prunable layer to unit indices")
        for layer in layers:
            _int_list(arch[key][layer], f"{where}: {key}[{layer!r}]")
    spec = arch.get("model")
    if spec is not None:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise DataError(f"{where}: model must be {{'name': str, 'options': {{...}}}}, got {spec!r}")
        if not isinstance(spec.get("options") or {}, dict):
            raise DataError(f"{where}: model options must be a mapping, got {spec['options']!r}")
        num_classes = arch.get("num_classes")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise DataError(f"{where}: num_classes must be an integer >= 2, got {num_classes!r}")
    digest = arch.get("tensor_digest")
    if digest is not None and not (isinstance(digest, str) and digest.startswith("sha256:")):
        raise DataError(f"{where}: tensor_digest must be 'sha256:<hex>', got {digest!r}")


def load_exported(path: str | Path, *, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a saved export (a ``*.safetensors`` file or a directory) without pickle: build the
    model (from the saved spec, or the freshly constructed ``model`` for custom modules), replay
    the same surgery, check the weights against the saved digest and load them strictly. Returns
    the module in eval mode."""
    arch, arch_path, weights_path = _read_architecture(Path(path))

    def tensors() -> dict[str, torch.Tensor]:
        try:
            return load_tensors(weights_path)
        except Exception as exc:  # safetensors raises its own error types for corrupt files
            raise DataError(f"{weights_path} is not a readable safetensors file: {exc}") from exc

    return rebuild_exported(arch, tensors, where=str(arch_path), weights_where=str(weights_path),
                            model=model)


def rebuild_exported(
    arch: dict,
    tensors: Callable[[], Mapping[str, torch.Tensor]],
    *,
    where: str,
    weights_where: str | None = None,
    model: nn.Module | None = None,
) -> nn.Module:
    """The module of an export from its architecture record and (a loader of) its weights: the
    model is built, the surgery replayed and the weights loaded strictly. ``where`` /
    ``weights_where`` name the sources in error messages."""
    arch_path, weights_path = where, weights_where or where
    _check_architecture(arch, arch_path)
    input_shape = tuple(arch["input_shape"])
    layers = arch["prunable_layers"]
    given = model is not None
    if model is None:
        spec = arch.get("model")
        if spec is None:
            cls = arch.get("class") or "your model's class"
            raise ConfigError(
                f"{arch_path} holds a custom model ({cls}, not one of `secateurs models`), which "
                f"only Python can rebuild: load_exported(path, model={cls}(...)) with the model "
                "built exactly as before pruning"
            )
        from ..models import build_model

        try:
            model = build_model(
                spec["name"], input_shape, arch["num_classes"], **dict(spec.get("options") or {})
            )
        except ConfigError:
            raise
        except Exception as exc:  # a builder's failure on the file's options
            raise DataError(
                f"{arch_path}: cannot build its model {spec['name']!r} "
                f"({type(exc).__name__}: {exc})"
            ) from exc
    dtype = arch.get("input_dtype", "float32")
    if not isinstance(dtype, str) or not isinstance(getattr(torch, dtype, None), torch.dtype):
        raise DataError(f"{arch_path}: input_dtype must name a torch dtype, got {dtype!r}")
    example = torch.zeros((1, *input_shape), dtype=getattr(torch, dtype))
    floats = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if example.is_floating_point() and floats and floats != {example.dtype}:
        if not given:  # built here: give it the export's precision
            model = model.to(example.dtype)
        else:
            kinds = ", ".join(sorted(str(f).removeprefix("torch.") for f in floats))
            raise DataError(
                f"{arch_path} is a {dtype} export but the model given has {kinds} weights; "
                f"build it in {dtype} (model.to(torch.{dtype})) before loading"
            )
    try:
        masked = MaskedNetwork(model, example, layers)
    except (ConfigError, KeyError, AttributeError, RuntimeError) as exc:
        cls = arch.get("class")
        other = (
            f" (it was exported from a {cls}; the model given is a {type(model).__name__})"
            if given and isinstance(cls, str) and cls != type(model).__name__ else ""
        )
        raise DataError(
            f"{arch_path}: its prunable_layers do not fit the model{other}: {exc}"
        ) from exc
    masks = {}
    for layer in layers:
        dead = arch["removed"][layer] + arch["zeroed"][layer]
        width = masked.widths[layer]
        if any(not 0 <= i < width for i in dead):
            raise DataError(f"{arch_path}: unit index out of range 0..{width - 1} for {layer!r}")
        alive = torch.ones(width, dtype=torch.bool)
        alive[dead] = False
        masks[layer] = alive
    try:
        result = export_pruned(masked, example, masks=masks)
    except ConfigError as exc:
        raise DataError(f"{arch_path}: cannot replay the export: {exc}") from exc
    if result.removed != arch["removed"] or result.zeroed != arch["zeroed"]:
        raise DataError(
            f"{arch_path}: the removed/zeroed units do not match what the surgery gives for this "
            "model (file edited, or a different model?)"
        )
    loaded = dict(tensors())
    digest = arch.get("tensor_digest")
    if digest is not None and tensor_digest(loaded) != digest:
        raise DataError(
            f"{weights_path}: the weights do not match the checksum saved with them (the file is "
            "corrupt or was altered); export it again"
        )
    try:
        result.module.load_state_dict(loaded, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise DataError(
            f"{weights_path} does not fit the rebuilt network: {' '.join(first[:3])[:400]}"
        ) from exc
    return result.module.eval()


__all__ = [
    "ExportResult",
    "export_architecture",
    "export_pruned",
    "load_exported",
    "rebuild_exported",
    "save_exported",
]
