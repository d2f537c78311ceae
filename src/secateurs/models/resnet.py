"""Residual networks: the DropNet paper's ResNet18 (no BatchNorm, max-pool between stages) and the
standard CIFAR ResNet-18 with BatchNorm."""

from __future__ import annotations

from torch import nn

from ._blocks import as_image_shape, pool_or_identity, positive_int_option
from .registry import register_model


class BasicBlock(nn.Module):
    """Two 3x3 convs and a shortcut. With ``batchnorm=False`` (the paper's variant) a channel change
    uses a 3x3 conv projection; with BatchNorm, the standard 1x1 conv + BN projection."""

    def __init__(self, cin: int, cout: int, stride: int = 1, batchnorm: bool = True):
        super().__init__()
        norm = nn.BatchNorm2d if batchnorm else (lambda c: nn.Identity())
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=not batchnorm)
        self.bn1 = norm(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=not batchnorm)
        self.bn2 = norm(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            if batchnorm:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
                )
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1))
        self.relu2 = nn.ReLU()

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(
        self, input_shape, num_classes: int, width: int = 64, dropnet_variant: bool = False
    ):
        super().__init__()
        channels, h, w = as_image_shape(input_shape)
        bn = not dropnet_variant
        stem: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1, bias=not bn)]
        if bn:
            stem.append(nn.BatchNorm2d(width))
        stem.append(nn.ReLU())
        if dropnet_variant:
            pool, h, w = pool_or_identity(h, w)
            stem.append(pool)
        self.stem = nn.Sequential(*stem)
        stages: list[nn.Module] = []
        cin = width
        for i, mult in enumerate((1, 2, 4, 8)):
            cout = width * mult
            blocks: list[nn.Module] = []
            if dropnet_variant and i > 0:
                pool, h, w = pool_or_identity(h, w)
                blocks.append(pool)
            stride = 2 if (bn and i > 0 and min(h, w) >= 2) else 1
            if stride == 2:
                h, w = (h + 1) // 2, (w + 1) // 2
            blocks += [BasicBlock(cin, cout, stride, bn), BasicBlock(cout, cout, 1, bn)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(cin, num_classes)
        self.prunable_layers = tuple(n for n, m in self.named_modules() if isinstance(m, nn.Conv2d))

    def forward(self, x):
        return self.fc(self.flatten(self.pool(self.stages(self.stem(x)))))


@register_model(
    "resnet18-dropnet",
    "DropNet paper's ResNet18: no BatchNorm, max-pool between stages, 3x3 conv "
    "projections; 20 prunable convs (4800 filters at width 64)",
    width="channels of the first stage (64)",
)
def resnet18_dropnet(input_shape, num_classes, width=64) -> nn.Module:
    width = positive_int_option(width, "resnet18-dropnet", "width")
    return ResNet18(input_shape, num_classes, width, dropnet_variant=True)


@register_model(
    "resnet18",
    "standard CIFAR ResNet-18 with BatchNorm and 1x1 projections",
    width="channels of the first stage (64)",
)
def resnet18(input_shape, num_classes, width=64) -> nn.Module:
    width = positive_int_option(width, "resnet18", "width")
    return ResNet18(input_shape, num_classes, width, dropnet_variant=False)
