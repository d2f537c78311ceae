"""The training hook: a user's loop trains each DropNet round. Checked: a hook that calls the
built-in trainer reproduces a run without a hook exactly; the documented example (own DataLoader
and AdamW) runs, records what it returns, and cannot revive dropped units; refusals; lockstep
and the study driver fall back to separate runs; DropNet leaves a passed module unchanged."""

from __future__ import annotations

import copy
import runpy
from pathlib import Path

import pytest
import torch
from torch import nn

from secateurs.errors import ConfigError
from secateurs.experiments.prune_study import run_prune_study
from secateurs.models import build_model
from secateurs.pruning import DropNet, DropNetConfig, run_dropnet
from secateurs.pruning.driver import LockstepFallback, run_dropnet_lockstep
from secateurs.training import RoundInfo, TrainConfig, TrainResult, train

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "custom_training_loop.py"
FAST = TrainConfig(max_epochs=2, batch_size=128, patience=None)
SPEC = "model-a:widths=10-8"


def _rows(result):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in result.rounds]


def test_a_hook_calling_the_builtin_trainer_reproduces_the_run(digits):
    config = DropNetConfig(metric="minimum", fraction=0.3, until=0.4, train=FAST)
    seen: list[RoundInfo] = []

    def builtin(network, info: RoundInfo) -> TrainResult:
        seen.append(info)
        return train(network, info.data, info.config, seed=info.seed, progress=False)

    plain = run_dropnet(SPEC, digits, config, seed=3, lockstep=False)  # the built-in trainer
    hooked = run_dropnet(SPEC, digits, config, seed=3, train_fn=builtin)
    assert _rows(hooked) == _rows(plain)
    assert hooked.dropped == plain.dropped
    assert [i.round for i in seen] == list(range(len(plain.rounds)))
    assert [i.seed for i in seen] == [3 * 100_003 + r for r in range(len(plain.rounds))]
    assert [i.remaining for i in seen] == [r["remaining"] for r in plain.rounds]
    assert all(i.run_seed == 3 and i.metric == "minimum" and i.config == FAST for i in seen)


@pytest.fixture(scope="module")
def example():
    return runpy.run_path(str(EXAMPLE))


def test_the_documented_example_runs_and_records_what_the_hook_returns(example, digits):
    result = example["result"]
    remaining = [r["remaining"] for r in result.rounds]
    assert remaining[-1] <= 0.4 < remaining[-2]
    assert remaining[-1] == sum(result.rounds[-1]["widths"].values()) / 40
    for row in result.rounds:
        assert row["epochs"] == 3
        assert set(row["train_info"]) == {"epochs", "train_loss"}
        assert 0 < row["train_info"]["train_loss"] < 3
    assert result.rounds[0]["test_acc"] > 0.5  # it learned something (chance is 0.1)
    # the seeded generator makes the user's DataLoader order, so the run is reproducible
    again = run_dropnet("model-a:widths=20-20", digits, example["config"], seed=0,
                        train_fn=example["my_training"])
    assert _rows(again) == _rows(result)


def test_the_example_is_the_one_in_the_docs():
    page = (ROOT / "docs" / "training.md").read_text()
    body = EXAMPLE.read_text().split('"""', 2)[2].strip()  # without the module docstring
    assert body in page


def test_a_users_optimizer_cannot_revive_dropped_units(digits, example):
    """AdamW with weight decay moves the weights of dropped units, yet they output exactly zero:
    the masks multiply activations in the forward pass."""
    config = DropNetConfig(metric="minimum", fraction=0.3, max_rounds=2, until=None,
                           reset="continue")
    run = DropNet(SPEC, digits, config, seed=0, train_fn=example["my_training"])
    result = run.run()
    last = len(result.rounds) - 1
    masks = result.masks_at(last)
    before = result.weights[last - 1]
    after = result.weights[last]
    dropped_in_last = {d["layer"]: [] for d in result.dropped}
    for d in result.dropped:
        dropped_in_last[d["layer"]].append(d["index"])
    moved = False
    for layer, units in dropped_in_last.items():
        key = f"net.{layer}.weight"
        moved |= not torch.equal(before[key][units], after[key][units])
    assert moved, "weight decay should have moved some dropped unit's weights"
    outputs = {}
    handles = [
        m.register_forward_hook(lambda mod, inp, out, name=name: outputs.__setitem__(name, out))
        for name, m in run.masked.mask_modules().items()
    ]
    with torch.no_grad():
        run.masked.eval()(digits.x_test)
    for h in handles:
        h.remove()
    for layer, alive in masks.items():
        assert bool((outputs[layer][:, ~alive] == 0).all()), layer
        assert bool((outputs[layer][:, alive] != 0).any()), layer


def test_a_hook_that_changes_masks_is_refused(digits):
    def meddle(network, info):
        layer = network.layers[0]
        network.mask_modules()[layer].mask.fill_(1.0)
        network.mask_modules()[layer].mask[0] = 0.5

    with pytest.raises(ConfigError, match="changed the masks of net.1 in round 0"):
        run_dropnet(SPEC, digits, DropNetConfig(train=FAST), train_fn=meddle)


@pytest.mark.parametrize(
    "returned, words",
    [
        ([1, 2], "returned a list; expected None, a dict or a TrainResult"),
        ({"epochs": -1}, "epochs=-1; expected a whole number"),
        ({"model": nn.Linear(2, 2)},
         "model=Linear(in_features=2, out_features=2, bias=True); a returned dict (or TrainResult"),
    ],
)
def test_bad_hook_results_are_refused(digits, returned, words):
    with pytest.raises(ConfigError, match=None) as info:
        run_dropnet(SPEC, digits, DropNetConfig(train=FAST, max_rounds=0, until=None),
                    train_fn=lambda network, info: returned)
    assert words in str(info.value)
    with pytest.raises(ConfigError, match="train_fn must be callable .* got a str"):
        DropNet(SPEC, digits, train_fn="train")


def test_a_trainer_object_with_fit_is_a_hook(digits):
    class Trainer:
        def __init__(self):
            self.rounds = []

        def fit(self, network, info):
            self.rounds.append(info.round)
            return {"epochs": 1}

    trainer = Trainer()
    result = run_dropnet(SPEC, digits, DropNetConfig(max_rounds=2, until=None), train_fn=trainer)
    assert trainer.rounds == [0, 1, 2]
    assert [r["epochs"] for r in result.rounds] == [1, 1, 1]


def test_a_hook_returning_none_records_zero_epochs(digits):
    result = run_dropnet(SPEC, digits, DropNetConfig(max_rounds=1, until=None),
                         train_fn=lambda network, info: None)
    assert [r["epochs"] for r in result.rounds] == [0, 0]
    assert all("train_info" not in r for r in result.rounds)


def test_lockstep_with_a_hook_falls_back_to_separate_runs(digits):
    calls = []

    def hook(network, info):
        calls.append((info.metric, info.run_seed, info.round))
        return train(network, info.data, info.config, seed=info.seed, progress=False)

    runs = [(DropNetConfig(metric=m, max_rounds=1, until=None, train=FAST), s)
            for m in ("minimum", "random") for s in (0, 1)]
    match = "lockstep disabled for 4 of 4 runs: a training hook"
    with pytest.warns(LockstepFallback, match=match) as record:
        results = run_dropnet_lockstep(SPEC, digits, runs, train_fn=hook)
    assert len(record) == 1
    assert sorted(calls) == sorted((m, s, r) for m in ("minimum", "random") for s in (0, 1)
                                   for r in (0, 1))
    for (cfg, seed), got in zip(runs, results, strict=True):
        want = DropNet(SPEC, digits, cfg, seed=seed).run(lockstep=False)
        assert _rows(got) == _rows(want) and got.dropped == want.dropped


def test_lockstep_with_augmentation_falls_back(digits):
    aug = TrainConfig(max_epochs=1, batch_size=128, patience=None, augment=True, crop_padding=1,
                      flip=False)
    runs = [(DropNetConfig(metric="minimum", max_rounds=1, until=None, train=aug), s)
            for s in (0, 1)]
    with pytest.warns(LockstepFallback, match="augmented training"):
        results = run_dropnet_lockstep(SPEC, digits, runs)
    for (cfg, seed), got in zip(runs, results, strict=True):
        assert _rows(got) == _rows(DropNet(SPEC, digits, cfg, seed=seed).run())


def test_the_study_driver_passes_the_hook(digits, tmp_path):
    calls = []

    def hook(network, info):
        calls.append(info.round)
        return {"epochs": 0, "note": "mine"}

    config = DropNetConfig(max_rounds=1, until=None, train=FAST)
    with pytest.warns(LockstepFallback):
        study = run_prune_study(SPEC, digits, ["minimum", "random"], [0], config,
                                out=tmp_path / "s", progress=False, train_fn=hook)
    assert len(calls) == 4
    assert all(r["train_info"] == {"epochs": 0, "note": "mine"}
               for run in study.runs for r in run.rounds)


def test_dropnet_leaves_a_passed_module_unchanged(digits):
    torch.manual_seed(0)
    model = build_model("model-c:widths=4-6-4-6,hidden=12", digits.input_shape,
                        digits.num_classes)
    state = copy.deepcopy(model.state_dict())
    structure = repr(model)
    names = [n for n, _ in model.named_modules()]
    config = DropNetConfig(metric="minimum", fraction=0.3, max_rounds=2, until=None,
                           reset="continue", train=FAST)
    run = DropNet(model, digits, config, seed=0)
    result = run.run()
    assert len(result.dropped) > 0
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert repr(model) == structure and [n for n, _ in model.named_modules()] == names
    assert run.masked.original is not model
    # the run's θ0 is the module as it was passed in
    assert all(torch.equal(result.initial[f"net.{k}"], v) for k, v in state.items())


def test_a_module_that_cannot_be_copied_is_refused_with_the_reason(digits):
    class Uncopyable(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)
            self.prunable_layers = ()

        def forward(self, x):
            return self.fc(x.flatten(1))

        def __deepcopy__(self, memo):
            raise TypeError("holds a file handle")

    with pytest.raises(ConfigError, match="works on a copy .* holds a file handle"):
        DropNet(Uncopyable(), digits)


def test_each_round_the_hook_gets_the_network_in_training_mode_and_its_own_config(digits):
    seen = []

    def hook(network, info):
        seen.append((network.training, info.config.lr))
        info.config.lr /= 2  # a hook's edit must not reach later rounds or the recorded config
        result = train(network, info.data, info.config, seed=info.seed, progress=False)
        network.eval()  # its own validation, say: the next round must not start in eval mode
        return result

    config = DropNetConfig(metric="minimum", fraction=0.3, max_rounds=3, train=FAST)
    result = run_dropnet(SPEC, digits, config, seed=0, train_fn=hook)
    assert seen == [(True, FAST.lr)] * 4
    assert config.train.lr == FAST.lr and result.config["train"]["lr"] == FAST.lr


def test_a_finished_run_is_not_run_again(digits):
    run = DropNet(SPEC, digits, DropNetConfig(metric="minimum", max_rounds=1, train=FAST), seed=0)
    rounds = run.run().rounds
    with pytest.raises(ConfigError, match="has finished .* build a new DropNet"):
        run.run()
    assert run.result().rounds == rounds  # not retrained, nothing appended


def test_numpy_scalars_in_a_returned_dict_are_plain_numbers(digits):
    import numpy as np

    returned = {"epochs": np.int64(2), "return": np.float32(1.5), "ok": np.bool_(True)}
    result = run_dropnet(SPEC, digits, DropNetConfig(train=FAST, max_rounds=0, until=None),
                         train_fn=lambda network, info: returned)
    info = result.rounds[0]["train_info"]
    assert info == {"epochs": 2, "return": 1.5, "ok": True}
    assert [type(info[k]) for k in ("epochs", "return", "ok")] == [int, float, bool]


def test_a_returned_train_result_obeys_the_dict_rule(digits):
    """TrainResult(info=...) goes into the same JSON records as a returned dict: NumPy scalars
    become plain numbers, and an object is refused at once, naming the key."""
    import numpy as np

    from secateurs.training import TrainResult

    result = run_dropnet(
        SPEC, digits, DropNetConfig(train=FAST, max_rounds=0, until=None),
        train_fn=lambda network, info: TrainResult(epochs=1, info={"loss": np.float32(0.25)}),
    )
    info = result.rounds[0]["train_info"]
    assert info == {"loss": 0.25} and type(info["loss"]) is float
    with pytest.raises(ConfigError, match=r"returned model=<a MaskedNetwork>; a returned dict"):
        run_dropnet(SPEC, digits, DropNetConfig(train=FAST, max_rounds=0, until=None),
                    train_fn=lambda network, info: TrainResult(info={"model": network}))
