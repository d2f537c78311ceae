"""The DropNet paper's models: Model A (fully connected), Model B and Model C (convolutional)."""

from __future__ import annotations

import math

from torch import nn

from ._blocks import (
    activation_option,
    as_image_shape,
    pool_or_identity,
    positive_int_option,
    widths_option,
)
from .registry import register_model


class ModelA(nn.Module):
    """Flatten -> FC[w] act -> ... -> FC num_classes (act: ReLU unless given). Every hidden
    layer is prunable."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        widths=(40, 40),
        act: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        widths = widths_option(widths, (40, 40), "model-a")
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = math.prod(input_shape)
        for w in widths:
            layers += [nn.Linear(fan_in, w), act()]
            fan_in = w
        layers.append(nn.Linear(fan_in, num_classes))
        self.net = nn.Sequential(*layers)
        self.prunable_layers = tuple(f"net.{1 + 2 * i}" for i in range(len(widths)))

    def forward(self, x):
        return self.net(x)


class ConvNet(nn.Module):
    """Conv[w] 3x3 same act -> MaxPool 2, repeated; then Flatten -> (FC hidden act) -> FC classes
    (act: ReLU unless given). Model B has no hidden FC layer; Model C has FC 256 (not prunable)."""

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        widths,
        hidden: int | None,
        act: type[nn.Module] = nn.ReLU,
    ):
        super().__init__()
        channels, h, w = as_image_shape(input_shape)
        layers: list[nn.Module] = []
        prunable = []
        for width in widths:
            prunable.append(f"features.{len(layers)}")
            pool, h, w = pool_or_identity(h, w)
            layers += [nn.Conv2d(channels, width, 3, padding=1), act(), pool]
            channels = width
        self.features = nn.Sequential(*layers)
        flat = channels * h * w
        head: list[nn.Module] = [nn.Flatten()]
        if hidden:
            head += [nn.Linear(flat, hidden), act()]
            flat = hidden
        head.append(nn.Linear(flat, num_classes))
        self.classifier = nn.Sequential(*head)
        self.prunable_layers = tuple(prunable)

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model(
    "model-a",
    "DropNet Model A: MLP, hidden widths default 40-40 (FC40-FC40)",
    widths="hidden layer widths, e.g. 20-20",
    act="activation: relu (default, the paper's), softplus, tanh or gelu",
)
def model_a(input_shape, num_classes, widths=(40, 40), act="relu") -> nn.Module:
    return ModelA(input_shape, num_classes, widths, activation_option(act, "model-a"))


@register_model(
    "model-b",
    "DropNet Model B: conv widths default 64-64, max-pool after each conv",
    widths="conv widths, e.g. 32-64",
    act="activation: relu (default, the paper's), softplus, tanh or gelu",
)
def model_b(input_shape, num_classes, widths=(64, 64), act="relu") -> nn.Module:
    widths = widths_option(widths, (64, 64), "model-b")
    return ConvNet(input_shape, num_classes, widths, None, activation_option(act, "model-b"))


@register_model(
    "model-c",
    "DropNet Model C: conv widths default 64-64-128-128, FC 256 (not pruned)",
    widths="conv widths, e.g. 128-128-256-256",
    hidden="width of the FC layer (256)",
    act="activation: relu (default, the paper's), softplus, tanh or gelu",
)
def model_c(
    input_shape, num_classes, widths=(64, 64, 128, 128), hidden=256, act="relu"
) -> nn.Module:
    widths = widths_option(widths, (64, 64, 128, 128), "model-c")
    return ConvNet(
        input_shape, num_classes, widths, positive_int_option(hidden, "model-c", "hidden"),
        activation_option(act, "model-c"),
    )
