"""train_lockstep against the plain trainer: K models trained together must end where K separate
``train`` calls end (same epochs, early stopping, records and weights, up to float rounding)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from secateurs.data import load_dataset
from secateurs.training import TrainConfig, seeded_model, train
from secateurs.training.lockstep import LockstepDiverged, train_lockstep


def separate_and_lockstep(spec, data, config, seeds, data_seeds=None):
    data_seeds = list(data_seeds if data_seeds is not None else seeds)
    reference = []
    for seed, order in zip(seeds, data_seeds, strict=True):
        model = seeded_model(spec, data, seed)
        reference.append((model, train(model, data, config, seed=order, progress=False)))
    models = [seeded_model(spec, data, s) for s in seeds]
    results = train_lockstep(models, data, config, seeds=data_seeds)
    return reference, list(zip(models, results, strict=True))


def assert_same_training(reference, lockstep, *, weights_atol=1e-4, loss_rtol=1e-4):
    for (m0, r0), (m1, r1) in zip(reference, lockstep, strict=True):
        assert (r1.epochs, r1.best_epoch, r1.stopped_early) == (
            r0.epochs, r0.best_epoch, r0.stopped_early
        )
        for a, b in zip(r0.history, r1.history, strict=True):
            assert a.epoch == b.epoch
            assert a.val_acc == pytest.approx(b.val_acc, abs=1.5 / 144)
            assert a.val_loss == pytest.approx(b.val_loss, rel=loss_rtol)
            assert a.train_loss == pytest.approx(b.train_loss, rel=loss_rtol)
        for (k, v0), (_, v1) in zip(m0.state_dict().items(), m1.state_dict().items(), strict=True):
            assert torch.allclose(v0, v1, atol=weights_atol), k


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(max_epochs=6, patience=1, lr=0.3),
        TrainConfig(max_epochs=5, patience=1, momentum=0.9, weight_decay=1e-3, lr=0.1),
        TrainConfig(max_epochs=6, patience=1, optimizer="adam", lr=1.5e-2),
        TrainConfig(max_epochs=5, patience=1, restore_best=True, lr=0.3),
    ],
    ids=["sgd", "momentum+decay", "adam", "restore-best"],
)
def test_fully_connected_training_equals_separate_runs(digits, config):
    reference, lockstep = separate_and_lockstep("model-a:widths=20-20", digits, config, [0, 1, 2, 3])
    epochs = {r.epochs for _, r in reference}
    assert len(epochs) > 1, "every network stopped at the same epoch: compaction not exercised"
    if config.restore_best:
        assert any(r.best_epoch < r.epochs for _, r in reference), "nothing to restore"
    # Adam divides by the root of its second moment, so weights whose gradients are near zero
    # turn rounding differences into whole steps: measured 1.2e-4 after six epochs on an
    # AVX2-only CPU (4e-6 elsewhere). One Adam step here is ~lr = 1.5e-2: a lost or mis-sliced
    # moment would still be 15x over 1e-3.
    atol = 1e-3 if config.optimizer == "adam" else 1e-4
    assert_same_training(reference, lockstep, weights_atol=atol)


def test_shared_data_order_equals_separate_runs_with_that_order(digits):
    config = TrainConfig(max_epochs=4, patience=1)
    reference, lockstep = separate_and_lockstep(
        "model-a:widths=20-20", digits, config, [0, 1, 2], data_seeds=[7, 7, 7]
    )
    assert_same_training(reference, lockstep)


def test_convolutional_training_equals_separate_runs(digits):
    config = TrainConfig(max_epochs=3, patience=1, batch_size=64)
    reference, lockstep = separate_and_lockstep(
        "model-c:widths=4-6-4-6,hidden=12", digits, config, [0, 1]
    )
    assert_same_training(reference, lockstep, weights_atol=2e-4, loss_rtol=2e-4)


def test_one_network_of_a_batch_is_its_own_run(digits):
    config = TrainConfig(max_epochs=3)
    reference, lockstep = separate_and_lockstep("model-b:widths=4-4", digits, config, [5])
    assert_same_training(reference, lockstep, weights_atol=1e-4)


def test_a_diverging_network_fails_alone_and_the_others_finish():
    data = load_dataset("synthetic:n=200,classes=2,shape=1x4x4")
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(nn.Sequential(nn.Flatten(), nn.Linear(16, 2)))
    with torch.no_grad():
        models[1][1].weight.fill_(math.inf)
    config = TrainConfig(max_epochs=2, patience=None)
    with pytest.raises(LockstepDiverged, match="diverged at epoch 1") as info:
        train_lockstep(models, data, config, seeds=[0, 1, 2])
    results = info.value.results
    assert results[1] is None and set(info.value.failed) == {1}
    torch.manual_seed(2)
    alone = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    expected = train(alone, data, config, seed=2, progress=False)
    assert results[2].epochs == expected.epochs == 2
    assert torch.allclose(models[2][1].weight, alone[1].weight, atol=1e-6)


def test_one_seed_per_model_is_required(digits):
    models = [seeded_model("model-a:widths=4-4", digits, s) for s in range(2)]
    with pytest.raises(Exception, match="one seed per model"):
        train_lockstep(models, digits, TrainConfig(max_epochs=1), seeds=[0])
