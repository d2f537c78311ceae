"""Standard CIFAR augmentation on a whole batch of in-memory images, without per-sample Python.

Random crop: each image is zero-padded by ``padding`` pixels on every side and a window of the
original size is cut at a random offset (one gather over the batch). Horizontal flip: each image
is mirrored with probability 0.5. All draws come from the run's seeded CPU generator (offsets
first, then flips), so a seed gives the same augmented batches on any device.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ..errors import ConfigError
from .config import TrainConfig


def check_augmentable(x: torch.Tensor, config: TrainConfig) -> None:
    """Refuse augmentation of anything but (N, C, H, W) images."""
    if config.augment and x.dim() != 4:
        raise ConfigError(
            f"augment needs image data (N, C, H, W); these samples have shape "
            f"{tuple(x.shape[1:])}; set augment to false for non-image data"
        )


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Crop each image of ``x`` (N, C, H, W) at a random offset of its zero-padded self."""
    n, c, h, w = x.shape
    if padding == 0 or n == 0:
        return x
    offsets = torch.randint(0, 2 * padding + 1, (2, n), generator=generator).to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = (offsets[0, :, None] + torch.arange(h, device=x.device)).view(n, 1, h, 1)
    cols = (offsets[1, :, None] + torch.arange(w, device=x.device)).view(n, 1, 1, w)
    wide = padded.shape[3]
    flat = padded.reshape(n, c, -1)
    index = (rows * wide + cols).view(n, 1, h * w).expand(n, c, h * w)
    return flat.gather(2, index).view(n, c, h, w)


def random_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image of ``x`` left-right with probability ``p``."""
    if len(x) == 0:
        return x
    flip = (torch.rand(len(x), generator=generator) < p).to(x.device)
    return torch.where(flip.view(-1, *(1,) * (x.dim() - 1)), x.flip(-1), x)


def augment_batch(x: torch.Tensor, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """``x`` augmented as ``config`` says (returned as is when ``config.augment`` is off)."""
    if not config.augment:
        return x
    check_augmentable(x, config)
    x = random_crop(x, config.crop_padding, generator)
    if config.flip:
        x = random_flip(x, generator)
    return x
