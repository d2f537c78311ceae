import math

import pytest
import torch
from torch import nn

from secateurs.data import load_dataset
from secateurs.errors import ConfigError, TrainingDiverged
from secateurs.training import TrainConfig, evaluate, predict_proba, train, train_model


def test_model_a_learns_digits_and_is_bitwise_reproducible(digits):
    a = train_model("model-a", digits, seed=0, progress=False)
    b = train_model("model-a", digits, seed=0, progress=False)
    assert a.metrics["test_acc"] >= 0.95
    for (ka, va), (kb, vb) in zip(
        a.model.state_dict().items(), b.model.state_dict().items(), strict=True
    ):
        assert ka == kb and torch.equal(va, vb)
    assert [r.val_loss for r in a.result.history] == [r.val_loss for r in b.result.history]
    c = train_model("model-a", digits, seed=1, progress=False)
    assert not torch.equal(c.model.net[1].weight, a.model.net[1].weight)


def test_early_stopping_stops_after_patience_epochs_without_improvement(digits):
    run = train_model("model-a", digits, TrainConfig(patience=2, max_epochs=100), progress=False)
    hist = run.result.history
    best = min(range(len(hist)), key=lambda i: hist[i].val_loss)
    assert run.result.stopped_early
    assert len(hist) == best + 1 + 2  # exactly `patience` epochs after the best one
    assert run.result.best_epoch == best + 1


def test_restore_best_keeps_the_best_epochs_weights(digits):
    run = train_model("model-a", digits, TrainConfig(patience=3, restore_best=True), progress=False)
    best = min(r.val_loss for r in run.result.history)
    val_loss, _ = evaluate(run.model, digits.x_val, digits.y_val)
    assert val_loss == pytest.approx(best, rel=1e-5)


def test_evaluate_matches_a_per_sample_loop(digits):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    loss, acc = evaluate(model, digits.x_test, digits.y_test, batch_size=7)
    losses, hits = [], 0
    with torch.no_grad():
        for x, y in zip(digits.x_test, digits.y_test, strict=True):
            logits = model(x[None])[0]
            losses.append(-torch.log_softmax(logits, 0)[y].item())
            hits += int(logits.argmax() == y)
    assert loss == pytest.approx(sum(losses) / len(losses), rel=1e-5)
    assert acc == hits / len(losses)
    probs = predict_proba(model, digits.x_test, batch_size=5)
    assert torch.allclose(probs.sum(1), torch.ones(len(probs)))


def test_divergence_names_the_epoch_and_the_fix():
    data = load_dataset("synthetic:n=200,classes=2,shape=1x4x4")
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    with torch.no_grad():
        model[1].weight.fill_(math.inf)
    with pytest.raises(TrainingDiverged, match="epoch 1.*smaller learning rate"):
        train(model, data, TrainConfig(max_epochs=3), progress=False)


def test_optimizers_and_bad_settings(digits):
    run = train_model(
        "model-a", digits, TrainConfig(optimizer="adam", lr=1e-3, max_epochs=5), progress=False
    )
    assert run.metrics["train_acc"] > 0.8
    run = train_model(
        "model-a", digits, TrainConfig(momentum=0.9, lr=0.01, max_epochs=5), progress=False
    )
    assert run.metrics["train_acc"] > 0.8
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ConfigError, match="unknown training setting"):
        TrainConfig.from_dict({"learning_rate": 0.1})
