"""Datasets that need no file: scikit-learn's 8x8 digits (the embedded default) and synthetic data."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import DataError


def load_digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """The 1,797 8x8 digits, scaled from 0..16 to [0, 1], shape (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    return x, y


def parse_options(text: str, allowed: dict[str, type], spec: str) -> dict:
    """Parse ``key=value,key=value`` options of a spec, with clear errors."""
    out: dict = {}
    if not text:
        return out
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in allowed:
            raise DataError(
                f"bad option {item!r} in dataset spec {spec!r}; expected key=value with key in "
                f"{sorted(allowed)}"
            )
        try:
            out[key] = allowed[key](value)
        except ValueError as e:
            raise DataError(f"bad value for {key!r} in dataset spec {spec!r}: {value!r}") from e
    return out


def _shape(text: str) -> tuple[int, ...]:
    dims = tuple(int(d) for d in text.lower().split("x"))
    if len(dims) not in (1, 3) or min(dims) < 1:
        raise ValueError(text)
    return dims


SYNTHETIC_OPTIONS = {"n": int, "classes": int, "shape": _shape, "seed": int, "noise": float}


def synthetic_arrays(
    n: int = 600,
    classes: int = 4,
    shape: tuple[int, ...] = (1, 8, 8),
    seed: int = 0,
    noise: float = 0.3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded, learnable data: each class is a random prototype in [0, 1] plus Gaussian noise."""
    if n < 2 * classes or classes < 2:
        raise DataError(
            f"synthetic data needs classes >= 2 and n >= 2 * classes, got n={n}, classes={classes}"
        )
    gen = torch.Generator().manual_seed(seed)
    prototypes = torch.rand((classes, *shape), generator=gen)
    y = torch.arange(n) % classes
    y = y[torch.randperm(n, generator=gen)]
    x = prototypes[y] + noise * torch.randn((n, *shape), generator=gen)
    return x.clamp_(0.0, 1.0), y.long()
