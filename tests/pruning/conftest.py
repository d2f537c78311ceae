"""Helpers shared by the pruning tests, as session fixtures (no cross-test-module imports)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from secateurs.pruning.masks import MaskedNetwork


def random_masks(masked: MaskedNetwork, gen: torch.Generator, p: float = 0.5) -> dict:
    out = {}
    for layer, width in masked.widths.items():
        alive = torch.rand(width, generator=gen) > p
        alive[torch.randint(width, (1,), generator=gen)] = True
        out[layer] = alive
    return out


def randomize_batchnorm(model: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                sign = torch.where(torch.rand(n, generator=gen) > 0.3, 1.0, -1.0)
                m.weight.copy_(sign * (torch.rand(n, generator=gen) + 0.5))
                m.bias.copy_(torch.rand(n, generator=gen) - 0.5)


def m4(mask: torch.Tensor) -> torch.Tensor:
    return mask.float().view(1, -1, 1, 1)


class FunctionalNet(nn.Module):
    """A user's module: functional activations, GELU and Softplus, BatchNorm, a residual add."""

    def __init__(self, channels: int = 3, classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.gelu = nn.GELU()
        self.conv3 = nn.Conv2d(6, 6, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(6)
        self.softplus = nn.Softplus()
        self.fc1 = nn.Linear(6 * 4, 7)
        self.fc2 = nn.Linear(7, classes)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        h = h + self.gelu(self.conv2(h))
        h = h + self.softplus(self.bn3(self.conv3(h)))
        h = torch.flatten(F.adaptive_avg_pool2d(F.max_pool2d(h, 2), 2), 1)
        return self.fc2(torch.relu(self.fc1(h)))

    def reference(self, masks, x):
        h = F.relu(self.conv1(x)) * m4(masks["conv1"])
        h = h + self.gelu(self.conv2(h)) * m4(masks["conv2"])
        h = h + self.softplus(self.bn3(self.conv3(h))) * m4(masks["conv3"])
        h = torch.flatten(F.adaptive_avg_pool2d(F.max_pool2d(h, 2), 2), 1)
        return self.fc2(torch.relu(self.fc1(h)) * masks["fc1"].float())




@pytest.fixture(scope="session")
def helpers() -> SimpleNamespace:
    return SimpleNamespace(
        random_masks=random_masks,
        randomize_batchnorm=randomize_batchnorm,
        m4=m4,
        FunctionalNet=FunctionalNet,
    )
