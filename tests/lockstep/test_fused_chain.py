"""The hand-written plain-SGD step of stacked fully connected chains (``training.fused_chain``):
against each network trained alone by torch's SGD and autograd, against the stacked autograd
step, and where it must not be used."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from secateurs.data import load_dataset
from secateurs.pruning import DropNet, DropNetConfig
from secateurs.pruning.lockstep import compact_copy, compaction_plan
from secateurs.training import TrainConfig, seeded_model
from secateurs.training.fused_chain import FusedChain
from secateurs.training.lockstep import LockstepTrainer, StackedNetwork


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def masked_modules(data, k: int, compact: bool) -> list[nn.Module]:
    """K DropNet networks of Model A with different units dropped (masks inside the chain)."""
    out = []
    for seed in range(k):
        run = DropNet("model-a:widths=12-10", data, DropNetConfig(fraction=0.3), seed=seed)
        g = torch.Generator().manual_seed(seed)
        run.masked.set_masks({
            layer: torch.rand(width, generator=g) > 0.4 for layer, width in run.masked.widths.items()
        })
        out.append(run.masked)
    if not compact:
        return [copy.deepcopy(m.net) for m in out]
    plans = compaction_plan(out)
    return [compact_copy(m, p) for m, p in zip(out, plans, strict=True)]


def sgd_alone(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float):
    """The obviously correct step: one network, torch's SGD, autograd, mean cross-entropy."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    logits = model(x)
    losses = F.cross_entropy(logits, y, reduction="none")
    opt.zero_grad()
    losses.mean().backward()
    opt.step()
    return losses.detach(), logits.detach()


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("shared", [False, True])
def test_a_fused_step_equals_each_network_trained_alone(digits, compact, shared):
    k, b, lr = 3, 16, 0.3
    modules = masked_modules(digits, k, compact)
    alone = [copy.deepcopy(m) for m in modules]
    stacked = StackedNetwork(modules)
    chain = FusedChain.of(stacked.fused_stages())
    assert chain is not None
    g = torch.Generator().manual_seed(1)
    for _ in range(4):  # several steps: the update must use each step's own weights
        if shared:
            idx = torch.randint(0, len(digits.y_train), (b,), generator=g)
            x, y = digits.x_train[idx], digits.y_train[idx].repeat(k).view(k, b)
            xs = [x] * k
        else:
            idx = torch.randint(0, len(digits.y_train), (k, b), generator=g)
            x = digits.x_train[idx.flatten()].view(k, b, *digits.x_train.shape[1:])
            y = digits.y_train[idx]
            xs = list(x)
        losses, logits = chain.step(x, shared, y, lr)
        for j in range(k):
            want_loss, want_logits = sgd_alone(alone[j], xs[j], y[j], lr)
            assert torch.allclose(losses[j], want_loss, atol=1e-6)
            assert torch.allclose(logits[j], want_logits, atol=1e-6)
    for j in range(k):
        stacked.write_back(modules[j], j)
        for (name, got), (_, want) in zip(
            modules[j].state_dict().items(), alone[j].state_dict().items(), strict=True
        ):
            assert torch.allclose(got, want, atol=1e-6), (j, name)


def test_dropped_units_stay_dropped(digits):
    """A masked unit's output is zero, so the layer after it gets no gradient from it."""
    modules = masked_modules(digits, 2, compact=False)
    stacked = StackedNetwork(modules)
    chain = FusedChain.of(stacked.fused_stages())
    before = {k: v.clone() for k, v in stacked.state_dict().items()}
    x = digits.x_train[:64].view(2, 32, *digits.x_train.shape[1:])
    chain.step(x, False, digits.y_train[:64].view(2, 32), 0.5)
    after = stacked.state_dict()
    mask_keys = [k for k in after if k.endswith(".mask")]
    assert mask_keys
    for key in mask_keys:  # the columns of the next layer that read dropped units do not move
        mask = after[key]
        layer = key.split("secateurs_unit_masks__")[1].removesuffix(".mask")
        nxt = f"ops.net__{int(layer.split('__')[1]) + 2}.weight"
        moved = (after[nxt] != before[nxt]).any(1)  # (K, in): any row changed per input column
        assert not (moved & ~mask.bool()).any()


def test_trainer_epochs_with_and_without_the_fused_step_agree(digits):
    config = TrainConfig(max_epochs=3, patience=None, lr=0.05)
    results = {}
    for fused in (True, False):
        models = [seeded_model("model-a:widths=16-16", digits, s) for s in range(3)]
        try:
            LockstepTrainer.fused_steps = fused
            trainer = LockstepTrainer(models, [0, 1, 2], digits, config)
            assert (trainer.fused is not None) == fused
            while len(trainer):
                trainer.epoch()
        finally:
            LockstepTrainer.fused_steps = True
        results[fused] = models
    for a, b in zip(results[True], results[False], strict=True):
        for (name, ta), (_, tb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert torch.allclose(ta, tb, atol=1e-5), name


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(64, 64), nn.Linear(64, 64), nn.Linear(64, 10)

    def forward(self, x):
        x = x.flatten(1)
        return self.head(torch.relu(self.b(torch.relu(self.a(x))) + x))


@pytest.mark.parametrize(
    "make",
    [
        lambda d: seeded_model("model-a:act=gelu", d, 0),  # another activation
        lambda d: seeded_model("model-b:widths=4-4", d, 0),  # convolutions
        lambda d: Residual(),  # not a chain
        lambda d: nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU()),  # ends in a ReLU
    ],
)
def test_no_fused_step_where_it_does_not_compute_what_autograd_does(digits, make):
    trainer = LockstepTrainer([make(digits)], [0], digits, TrainConfig(max_epochs=1))
    assert trainer.fused is None


def test_no_fused_step_for_other_optimizers_or_frozen_parameters(digits):
    model = seeded_model("model-a", digits, 0)
    for config in (TrainConfig(momentum=0.9), TrainConfig(weight_decay=1e-4),
                   TrainConfig(optimizer="adam", lr=1e-3)):
        assert LockstepTrainer([copy.deepcopy(model)], [0], digits, config).fused is None
    assert LockstepTrainer([copy.deepcopy(model)], [0], digits, TrainConfig()).fused is not None
    frozen = copy.deepcopy(model)
    next(frozen.parameters()).requires_grad_(False)
    assert LockstepTrainer([frozen], [0], digits, TrainConfig()).fused is None
