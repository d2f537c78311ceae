"""The one DropNet driver: round 0 forked, a single run as a batch of one, engines agree."""

from __future__ import annotations

import pytest
import torch

from secateurs.pruning import DropNet, DropNetConfig, run_dropnets
from secateurs.training import TrainConfig, train

FC = "model-a:widths=12-10"
FAST = TrainConfig(max_epochs=2, patience=1)


def cfg(metric: str, **kw) -> DropNetConfig:
    kw = {"fraction": 0.3, "until": 0.5, "train": FAST, **kw}
    return DropNetConfig(metric=metric, **kw)


def _round0(result) -> dict[str, torch.Tensor]:
    return result.weights[0]


@pytest.mark.parametrize("lockstep", [True, False], ids=["stacked", "separate"])
def test_round_0_is_trained_once_per_seed_and_copied_to_the_other_metrics(digits, lockstep):
    trained = []
    original = DropNet.record

    def spy(self, result, seconds=0.0, metrics=None):
        if self.round == 0:
            trained.append((self.config.metric, self.seed, seconds))
        return original(self, result, seconds, metrics)

    metrics = ("minimum", "maximum", "random_layer")
    runs = [DropNet(FC, digits, cfg(m), seed=s) for s in (0, 1) for m in metrics]
    DropNet.record = spy
    try:
        results = run_dropnets(runs, lockstep=lockstep)
    finally:
        DropNet.record = original
    # one training per seed: the others' round 0 costs nothing and names its source
    assert [(m, s) for m, s, sec in trained if sec > 0] == [("minimum", 0), ("minimum", 1)]
    for seed_results in (results[:3], results[3:]):
        lead, *copies = seed_results
        assert lead.forked_from is None
        for r in copies:
            assert r.forked_from == "minimum"
            assert r.rounds[0]["test_acc"] == lead.rounds[0]["test_acc"]
            for k, v in _round0(lead).items():
                assert torch.equal(v, _round0(r)[k]), k
            assert r.scores[0] != lead.scores[0] or r.metric == "maximum"  # own metric's scores
    # forked round 0 is what each run trains alone
    alone = DropNet(FC, digits, cfg("maximum"), seed=1).run(lockstep=lockstep)
    for k, v in _round0(alone).items():
        assert torch.allclose(v, _round0(results[4])[k], atol=1e-5), k
    assert alone.dropped == results[4].dropped


def test_no_fork_when_the_seed_training_settings_or_initial_weights_differ(digits):
    from secateurs.models import build_model

    other_train = TrainConfig(max_epochs=1, patience=1)
    modules = []
    for init in (1, 2):
        torch.manual_seed(init)
        modules.append(build_model(FC, digits.input_shape, digits.num_classes))
    runs = [
        DropNet(FC, digits, cfg("minimum"), seed=0),
        DropNet(FC, digits, cfg("maximum"), seed=1),  # other seed
        DropNet(FC, digits, cfg("random", train=other_train), seed=0),  # other training
        DropNet(modules[0], digits, cfg("minimum"), seed=0),  # other initial weights
        DropNet(modules[1], digits, cfg("minimum"), seed=0),  # and other again
        DropNet(modules[0], digits, cfg("random"), seed=0),  # the same module: forked
    ]
    results = run_dropnets(runs)
    assert [r.forked_from for r in results] == [None] * 5 + ["minimum"]


def test_a_training_hook_is_never_forked_and_sees_every_metric(digits):
    seen = []

    def hook(network, info):
        seen.append((info.metric, info.round))
        return train(network, info.data, info.config, seed=info.seed, progress=False)

    runs = [DropNet(FC, digits, cfg(m, max_rounds=1, until=None), seed=0, train_fn=hook)
            for m in ("minimum", "random")]
    with pytest.warns(UserWarning, match="training hook"):
        results = run_dropnets(runs)
    assert sorted(seen) == [("minimum", 0), ("minimum", 1), ("random", 0), ("random", 1)]
    assert [r.forked_from for r in results] == [None, None]


def test_a_single_run_is_a_batch_of_one_and_agrees_with_the_builtin_trainer(digits):
    stacked = DropNet(FC, digits, cfg("minimum"), seed=2).run()
    plain = DropNet(FC, digits, cfg("minimum"), seed=2).run(lockstep=False)
    assert stacked.dropped == plain.dropped
    for a, b in zip(stacked.rounds, plain.rounds, strict=True):
        assert a["epochs"] == b["epochs"] and a["macs"] == b["macs"]
        assert a["test_acc"] == pytest.approx(b["test_acc"], abs=1e-9)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)


def test_fork_off_trains_every_round_0(digits):
    runs = [DropNet(FC, digits, cfg(m), seed=0) for m in ("minimum", "random")]
    results = run_dropnets(runs, fork=False)
    assert [r.forked_from for r in results] == [None, None]
    assert all(r.rounds[0]["seconds"] > 0 for r in results)
