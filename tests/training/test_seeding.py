"""A run's random draws come from its seed alone: dropout in the built-in trainer and whatever a
training hook draws from the global generators (a shuffling DataLoader, ``random``, NumPy) do not
depend on what ran before in the process, and the caller's random state is left as it was."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from secateurs.pruning import DropNet, DropNetConfig
from secateurs.pruning.driver import run_dropnets
from secateurs.training import TrainConfig, train
from secateurs.training.seeding import seeded_global_rng

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = TrainConfig(lr=0.05, batch_size=64, max_epochs=2, patience=None)


class FunctionalDropout(nn.Module):
    """Dropout written as users write it: F.dropout on self.training (the sequential path)."""

    def __init__(self, n_in: int, classes: int):
        super().__init__()
        self.fc1 = nn.Linear(n_in, 24)
        self.fc2 = nn.Linear(24, 16)
        self.out = nn.Linear(16, classes)

    def forward(self, x):
        x = F.dropout(F.relu(self.fc1(x.flatten(1))), 0.3, self.training)
        return self.out(F.relu(self.fc2(x)))


def _losses(result):
    return [r["train_loss"] for r in result.rounds]


def _study(digits, seeds, lockstep=False):
    torch.manual_seed(0)
    model = FunctionalDropout(64, digits.num_classes)
    cfg = DropNetConfig(metric="minimum", until=None, max_rounds=2, train=FAST)
    return run_dropnets([DropNet(model, digits, cfg, seed=s) for s in seeds], lockstep=lockstep)


def test_dropout_runs_depend_on_their_seed_not_on_what_ran_before(digits):
    after_seed_0 = _study(digits, [0, 1])[1]
    torch.manual_seed(12345)
    torch.rand(17)  # move the global generator somewhere else
    alone = _study(digits, [1])[0]
    assert _losses(after_seed_0) == _losses(alone)
    assert after_seed_0.dropped == alone.dropped
    other = _study(digits, [2])[0]
    assert _losses(other) != _losses(alone)  # the seed does reach the dropout masks


def test_train_leaves_the_callers_random_state_alone(digits):
    torch.manual_seed(7)
    random.seed(7)
    np.random.seed(7)
    expected = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(7)
    random.seed(7)
    np.random.seed(7)
    torch.manual_seed(0)
    model = FunctionalDropout(64, digits.num_classes)
    torch.manual_seed(7)
    train(model, digits, FAST, seed=5, progress=False)
    assert torch.equal(torch.rand(3), expected[0])
    assert random.random() == expected[1]
    assert np.random.rand() == expected[2]


def test_a_hook_drawing_from_the_global_generators_is_reproducible(digits):
    draws: list[tuple] = []

    def hook(network, info):
        loader = DataLoader(TensorDataset(info.data.x_train, info.data.y_train), batch_size=64,
                            shuffle=True)
        first = next(iter(loader))[1][:8].tolist()
        draws.append((info.round, first, random.random(), float(np.random.rand())))
        opt = torch.optim.SGD(network.parameters(), lr=0.05)
        for xb, yb in loader:
            opt.zero_grad()
            F.cross_entropy(network(xb), yb).backward()
            opt.step()
        return {"epochs": 1}

    def run(seed):
        torch.manual_seed(0)
        model = FunctionalDropout(64, 10)
        cfg = DropNetConfig(metric="minimum", until=None, max_rounds=1, train=FAST)
        return DropNet(model, digits, cfg, seed=seed, train_fn=hook).run()

    first = run(3)
    torch.manual_seed(99)
    random.seed(99)
    np.random.seed(99)
    second = run(3)
    half = len(draws) // 2
    assert draws[:half] == draws[half:]
    assert _losses(first) == _losses(second)
    assert draws[0] != draws[1]  # each round has its own seed


def test_the_block_is_seeded_from_the_seed_and_restores_after_an_error():
    with seeded_global_rng(4):
        a = (torch.rand(2), random.random(), np.random.rand())
    state = torch.get_rng_state()
    with pytest.raises(RuntimeError), seeded_global_rng(4):
        b = (torch.rand(2), random.random(), np.random.rand())
        raise RuntimeError("boom")
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a[0], b[0]) and a[1:] == b[1:]
    with seeded_global_rng(5):
        assert not torch.equal(torch.rand(2), a[0])
