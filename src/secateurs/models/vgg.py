"""VGG for small images, as in the DropNet paper: each block ends in a max-pool, BatchNorm after the
last conv of each block, then Flatten -> FC 256 (not pruned) -> FC classes."""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ._blocks import as_image_shape, pool_or_identity, positive_float_option, positive_int_option
from .registry import register_model

# Standard configurations, as blocks of conv widths.
VGG_BLOCKS = {
    "vgg11": [[64], [128], [256, 256], [512, 512], [512, 512]],
    "vgg13": [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
    "vgg16": [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]],
    "vgg19": [[64, 64], [128, 128], [256] * 4, [512] * 4, [512] * 4],
}


class VGG(nn.Module):
    def __init__(
        self, input_shape, num_classes: int, blocks, scale: float = 1.0, hidden: int = 256
    ):
        super().__init__()
        channels, h, w = as_image_shape(input_shape)
        layers: list[nn.Module] = []
        prunable = []
        for block in blocks:
            for j, width in enumerate(block):
                width = max(1, round(width * scale))
                prunable.append(f"features.{len(layers)}")
                layers.append(nn.Conv2d(channels, width, 3, padding=1))
                if j == len(block) - 1:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU())
                channels = width
            pool, h, w = pool_or_identity(h, w)
            layers.append(pool)
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * h * w, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )
        self.prunable_layers = tuple(prunable)

    def forward(self, x):
        return self.classifier(self.features(x))


def _register(name: str) -> None:
    n_convs = sum(len(b) for b in VGG_BLOCKS[name])

    @register_model(
        name,
        f"{name.upper()} ({n_convs} prunable convs), BatchNorm per block, FC 256",
        scale="multiply every conv width (e.g. 0.25 for a CPU-sized model)",
        hidden="width of the FC layer (256)",
    )
    def build(input_shape, num_classes, scale=1.0, hidden=256) -> nn.Module:
        scale = positive_float_option(scale, name, "scale")
        narrowest = min(w for block in VGG_BLOCKS[name] for w in block)
        if round(narrowest * scale) < 1:
            raise ConfigError(
                f"{name}: option scale={scale:g} makes its {narrowest}-channel convs "
                f"{narrowest * scale:.2g} channels wide; use scale > {0.5 / narrowest:.3g}"
            )
        hidden = positive_int_option(hidden, name, "hidden")
        return VGG(input_shape, num_classes, VGG_BLOCKS[name], scale, hidden)


for _name in VGG_BLOCKS:
    _register(_name)
