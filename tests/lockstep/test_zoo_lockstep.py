"""Every zoo model trains in lockstep: ``lockstep_unsupported_reason`` has nothing to say, and a
DropNet lockstep batch of three runs equals the three runs made one after another."""

from __future__ import annotations

import warnings

import pytest
import torch

from secateurs.data import load_dataset
from secateurs.models import list_models
from secateurs.pruning import DropNet, DropNetConfig
from secateurs.pruning import lockstep as pruning_lockstep
from secateurs.pruning.driver import LockstepFallback, run_dropnet_lockstep
from secateurs.pruning.lockstep import (
    _tail_modules,
    lockstep_unsupported_reason,
)
from secateurs.training import TrainConfig

# Tiny options per zoo model (CIFAR-shaped inputs); a model missing here fails the test, so that
# a new zoo model gets checked too.
TINY = {
    "model-a": "widths=8-8",
    "model-b": "widths=4-4",
    "model-c": "widths=4-4-4-4,hidden=8",
    "resnet18": "width=4",
    "resnet18-dropnet": "width=4",
    "vgg11": "scale=0.125,hidden=8",
    "vgg13": "scale=0.125,hidden=8",
    "vgg16": "scale=0.125,hidden=8",
    "vgg19": "scale=0.125,hidden=8",
    "lstm-a": "hidden=8",
}
# Zoo models the stacked engine does not batch, and a word of the reason it must give: these fall
# back to separate runs (with a LockstepFallback warning), which must equal the plain runs exactly.
NOT_STACKED: dict[str, str] = {}
ZOO = [m.name for m in list_models()]
# Weights after three steps: a K=1 lockstep run of these VGGs is 1e-8 from the plain run, a K=3
# batch (grouped kernels, other rounding) up to 3e-4 in a VGG-16's first convs: gradients are
# 1e-3 apart relative from the first step on, with forwards equal to 1e-6, where rounding flips
# which of two near-tied values (ReLU zeros) a max-pool routes the gradient to, and BatchNorm's
# 1/deviation scales it. Losses and accuracies agree to 1e-6.
WEIGHTS_ATOL = 1e-3


@pytest.fixture(scope="module")
def cifar_shaped():
    return load_dataset("synthetic:n=300,classes=4,shape=3x32x32,seed=1")


def spec_of(name: str) -> str:
    assert name in TINY, f"add tiny options for the zoo model {name!r} to TINY"
    return f"{name}:{TINY[name]}"


@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_model_is_batched(name, cifar_shaped):
    reason = lockstep_unsupported_reason(spec_of(name), cifar_shaped)
    if name in NOT_STACKED:
        assert reason is not None and NOT_STACKED[name] in reason
    else:
        assert reason is None


def frozen_channels(spec, data, result, round_) -> dict[str, torch.Tensor]:
    """BatchNorm running-statistics keys -> channels dead while round ``round_`` trained (a
    compacted batch leaves their statistics as they were; they never reach an output)."""
    masked = DropNet(spec, data, DropNetConfig(), seed=0).masked
    alive = result.masks_at(round_)
    out = {}
    for layer in masked.layers:
        for name in _tail_modules(masked, layer):
            out[f"net.{name}.running_mean"] = out[f"net.{name}.running_var"] = ~alive[layer]
    return out


@pytest.mark.parametrize("name", ZOO)
def test_a_lockstep_batch_of_every_zoo_model_equals_separate_runs(name, cifar_shaped, monkeypatch):
    spec = spec_of(name)
    # recurrent models: batched here although the CPU driver would run them separately (faster)
    monkeypatch.setattr(pruning_lockstep, "BATCH_RECURRENT_ON_CPU", True)
    # A small learning rate: narrower VGGs (scale 0.05) have ReLUs dead on every sample, whose
    # exact-zero scores tie, and a ResNet-18 at lr 0.02 is chaotic (BatchNorm over 4 channels:
    # a 1e-7 perturbation of a separate run moves its scores by 2%); either makes a rounding
    # difference a different, equally valid unit choice (docs/lockstep.md).
    train = TrainConfig(max_epochs=1, patience=None, batch_size=64, lr=0.005)
    runs = [(DropNetConfig(metric=m, fraction=0.3, until=None, max_rounds=1, train=train), 0)
            for m in ("minimum", "maximum", "random")]
    if name in NOT_STACKED:
        with pytest.warns(LockstepFallback, match=NOT_STACKED[name]):
            batched = run_dropnet_lockstep(spec, cifar_shaped, runs)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error", LockstepFallback)  # batched, not a fallback
            batched = run_dropnet_lockstep(spec, cifar_shaped, runs)
    for (cfg, seed), b in zip(runs, batched, strict=True):
        a = DropNet(spec, cifar_shaped, cfg, seed=seed).run()
        assert a.dropped == b.dropped, f"{cfg.metric}: other units dropped"
        assert len(a.rounds) == len(b.rounds) == 2  # rounds 0 and 1
        for ra, rb in zip(a.rounds, b.rounds, strict=True):
            for split in ("train", "val", "test"):
                assert ra[f"{split}_acc"] == pytest.approx(rb[f"{split}_acc"], abs=1e-9)
                assert ra[f"{split}_loss"] == pytest.approx(rb[f"{split}_loss"], rel=1e-4)
        for r in a.weights:
            frozen = frozen_channels(spec, cifar_shaped, a, r)
            for k, want in a.weights[r].items():
                got = b.weights[r][k]
                if k in frozen:
                    want, got = want[~frozen[k]], got[~frozen[k]]
                assert torch.allclose(got.double(), want.double(), atol=WEIGHTS_ATOL), (
                    cfg.metric, r, k)
