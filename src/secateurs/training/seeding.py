"""Where a training run's random numbers come from, so that a run is reproducible from its seed.

The data order and augmentation draw from a ``torch.Generator`` the trainer owns. What a model's
forward draws (``F.dropout``, ``nn.Dropout``, noise layers) and what a training hook draws from the
global generators (a ``DataLoader(shuffle=True)``, ``random.random()``, ``np.random``) would
otherwise depend on everything that ran before in the process: ``seeded_global_rng`` seeds them
for the run and restores the caller's state afterwards.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def dropout_seed(seed: int) -> int:
    """The seed of a network's dropout draws, derived from its training seed (a separate stream
    from its data order, which ``seed`` itself seeds)."""
    return (int(seed) * 6364136223846793005 + 1442695040888963407) % 2**63


@contextmanager
def seeded_global_rng(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Seed torch's CPU generator (and ``device``'s, when it is a GPU), Python's ``random`` and
    NumPy's global generator from ``dropout_seed(seed)`` for the block; restore them after it."""
    derived = dropout_seed(seed)
    cuda = device is not None and device.type == "cuda"
    py_state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[device] if cuda else []):
        torch.default_generator.manual_seed(derived)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(derived)
        random.seed(derived)
        np.random.seed(derived % 2**32)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
