"""Small pieces shared by the zoo's architectures."""

from __future__ import annotations

import math

from torch import nn

from ..errors import ConfigError

# Zoo activation options (``model-a:act=softplus``): ReLU is the paper's; the others are never
# exactly zero (Softplus), or signed (Tanh, GELU), which is where DropNet's |a| matters.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
}


def activation_option(value, name: str) -> type[nn.Module]:
    """The activation class named by a zoo model's ``act`` option (default ReLU)."""
    key = "relu" if value is None else str(value).strip().lower()
    if key not in ACTIVATIONS:
        raise ConfigError(
            f"{name}: act must be one of {', '.join(ACTIVATIONS)}, got {value!r}"
        )
    return ACTIVATIONS[key]


def pool_or_identity(h: int, w: int) -> tuple[nn.Module, int, int]:
    """A 2x2 max-pool while the feature map is at least 2x2, so that every model works on 8x8
    inputs as well as 32x32; returns the module and the new height and width."""
    if h >= 2 and w >= 2:
        return nn.MaxPool2d(2), h // 2, w // 2
    return nn.Identity(), h, w


def as_image_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) == 1:
        return (input_shape[0], 1, 1)
    if len(input_shape) != 3:
        raise ConfigError(
            f"this model takes (C, H, W) or (features,) inputs, got {tuple(input_shape)}"
        )
    return input_shape  # type: ignore[return-value]


def widths_option(value, default: tuple[int, ...], name: str) -> tuple[int, ...]:
    """Layer widths from an option: a list, one int, or None for ``default``."""
    if value is None:
        value = default
    if isinstance(value, int):
        value = [value]
    try:
        widths = tuple(int(w) for w in value)
    except (TypeError, ValueError):
        widths = ()
    if not widths or min(widths) < 1:
        raise ConfigError(f"{name}: widths must be positive integers such as 40-40, got {value!r}")
    return widths


def positive_int_option(value, model: str, option: str) -> int:
    """An integer option that must be at least 1 (a width): refuse 0, -1, 2.5, nan, "x"."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if not ok and isinstance(value, float) and value.is_integer() and value >= 1:
        value, ok = int(value), True
    if not ok:
        raise ConfigError(f"{model}: option {option} must be a positive integer, got {value!r}")
    return int(value)


def positive_float_option(value, model: str, option: str) -> float:
    """A finite number > 0 (a scale factor)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{model}: option {option} must be a finite number > 0, got {value!r}")
    return float(value)
