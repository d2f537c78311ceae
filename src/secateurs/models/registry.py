"""The model zoo: models registered by name, built for any input shape and class count."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ..errors import ConfigError


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    builder: Callable[..., nn.Module]
    options: dict[str, str]  # option name -> help, for `secateurs models`


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(name: str, description: str, /, **options: str):
    """Decorator: register ``builder(input_shape, num_classes, **options) -> nn.Module`` under
    ``name`` (case-insensitive), with ``options`` mapping each option's name to its help. A class
    whose ``__init__(self, input_shape, num_classes, ...)`` takes those is itself a builder. On
    the command line and in run configs, ``--import``/``imports:`` the file that registers it."""
    key = name.strip().lower() if isinstance(name, str) else ""
    if not key or any(ch in key for ch in ":,= \t\n/\\"):
        raise ConfigError(
            f"model name {name!r}: expected a non-empty name without spaces, ':', ',', '=' or "
            "slashes (it is written as NAME:option=value on the command line)"
        )

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if not callable(builder):
            raise ConfigError(f"register_model({name!r}) decorates {builder!r}, not a callable")
        taken = _REGISTRY.get(key)
        if taken is not None and _origin(taken.builder) != _origin(builder):
            raise ConfigError(
                f"model name {key!r} is taken (by {_origin(taken.builder)}); register "
                f"{_origin(builder)} under another name"
            )
        _REGISTRY[key] = ModelInfo(key, description, builder, dict(options))
        return builder

    return wrap


def _origin(builder) -> str:
    """Where a builder was defined: the same one imported again may register again."""
    module = getattr(builder, "__module__", None) or "?"
    where = "the secateurs zoo" if module.startswith("secateurs.") else module
    return f"{where}.{getattr(builder, '__qualname__', type(builder).__name__)}"


def unknown_model(name: str) -> ConfigError:
    return ConfigError(
        f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}; a model of your "
        "own is named once the Python file or module that registers it is imported "
        "(--import nets.py, or imports: [nets.py] in a run config; docs/export.md)"
    )


def list_models() -> list[ModelInfo]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def _parse_value(text: str):
    """Option values on the command line: ``20-40`` is a list of ints, true/false a bool, else
    int, float, or string."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if "-" in text.strip("-") and all(p.isdigit() for p in text.split("-")):
        return [int(p) for p in text.split("-")]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_model_spec(spec: str) -> tuple[str, dict]:
    """``model-a:widths=20-20`` -> ("model-a", {"widths": [20, 20]})."""
    name, _, rest = spec.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"bad model option {item!r} in {spec!r}; expected key=value")
        options[key.strip()] = _parse_value(value.strip())
    return name.strip().lower(), options


def build_model(spec: str, input_shape: tuple[int, ...], num_classes: int, **options) -> nn.Module:
    """Build a registered model. ``spec`` is a name with optional options (``model-a:widths=20-20``);
    keyword ``options`` override those. The model lists its prunable layers in ``prunable_layers``."""
    name, spec_options = parse_model_spec(spec)
    if name not in _REGISTRY:
        raise unknown_model(name)
    info = _REGISTRY[name]
    spec_options.update(options)
    unknown = set(spec_options) - set(info.options)
    if unknown:
        raise ConfigError(
            f"model {name!r} has no option {', '.join(sorted(unknown))}; "
            f"its options are: {', '.join(sorted(info.options)) or 'none'}"
        )
    zoo = (getattr(info.builder, "__module__", "") or "").startswith("secateurs.")
    if not input_shape or (zoo and len(input_shape) not in (1, 2, 3)):  # users' models: any
        raise ConfigError(
            f"input shape must be (C, H, W), (H, W) or (features,), got {tuple(input_shape)}"
        )
    if num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
    try:
        model = info.builder(tuple(input_shape), int(num_classes), **spec_options)
    except (ConfigError, KeyboardInterrupt):
        raise
    except Exception as exc:  # the builder's own failure on these options or this shape
        text = " ".join(str(exc).split())
        raise ConfigError(
            f"model {name!r} cannot be built for inputs {tuple(input_shape)} and {num_classes} "
            f"classes{' with ' + str(spec_options) if spec_options else ''} "
            f"({type(exc).__name__}: {text[:300]})"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model {name!r}: its builder returned {type(model).__name__}, not an nn.Module "
            "(a builder is called as builder(input_shape, num_classes, **options))"
        )
    model.secateurs_spec = {"name": name, "options": spec_options}
    return model


def find_prunable_layers(model: nn.Module) -> tuple[str, ...]:
    """The layers whose output units DropNet may drop.

    A model may declare them in ``prunable_layers``; otherwise they are read off the traced graph
    (``secateurs.pruning.discovery``): every Linear / Conv / ConvTranspose the forward calls once
    whose output feeds another weighted layer (output layers are never pruned).
    """
    declared = getattr(model, "prunable_layers", None)
    if declared is not None:
        return tuple(declared)
    from ..pruning.discovery import discover, no_layers_error
    from ..pruning.tracing import traced_graphs

    found = discover(model, traced_graphs(model))
    if not found.layers:
        raise no_layers_error(model, found)
    return found.layers
