"""A training hook's ``score_inputs``: DropNet scores the units on the inputs the hook hands back
(an agent's visited states) instead of ``data.x_train``. Checked against ``unit_scores`` computed
separately on those inputs with the round's trained network; without them nothing changes; the
count, not the tensor, reaches the record; bad inputs are refused with the shape expected."""

from __future__ import annotations

import json

import pytest
import torch

from secateurs.errors import ConfigError
from secateurs.pruning import DropNet, DropNetConfig, run_dropnet
from secateurs.pruning.importance import unit_scores
from secateurs.training import TrainConfig, TrainResult, train

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = TrainConfig(max_epochs=2, batch_size=128, patience=None)
SPEC = "model-a:widths=10-8"


def _own_inputs(data, n: int = 60) -> torch.Tensor:
    """Inputs unlike the training split (so scores on them differ from scores on x_train)."""
    g = torch.Generator().manual_seed(11)
    return torch.rand((n, *data.input_shape), generator=g)


def _run(data, hook, metric="minimum", **kw):
    config = DropNetConfig(metric=metric, fraction=0.3, until=0.4, train=FAST, **kw)
    # lockstep=False: without a hook, the built-in trainer (what the hooks below call)
    return run_dropnet(SPEC, data, config, seed=2, train_fn=hook, lockstep=False)


@pytest.mark.parametrize("form", ["dict", "train_result"])
def test_units_are_scored_on_the_hooks_inputs(digits, form):
    inputs = _own_inputs(digits)

    def hook(network, info):
        result = train(network, info.data, info.config, seed=info.seed, progress=False)
        if form == "dict":
            return {"epochs": result.epochs, "note": "own", "score_inputs": inputs}
        return TrainResult(epochs=result.epochs, info={"note": "own"}, score_inputs=inputs)

    config = DropNetConfig(metric="minimum", fraction=0.3, until=0.4, train=FAST)
    run = DropNet(SPEC, digits, config, seed=2, train_fn=hook)
    result = run.run()
    assert len(result.rounds) >= 3
    for r in range(len(result.rounds) - 1):  # the last round is recorded, not scored
        net = run.network_at(r)
        on_inputs = unit_scores("activation", net, inputs)
        on_train = unit_scores("activation", net, digits.x_train)
        for layer, values in result.scores[r].items():
            assert torch.allclose(torch.tensor(values), on_inputs[layer].float(), atol=1e-6)
        assert any(
            not torch.allclose(torch.tensor(result.scores[r][k]), on_train[k].float(), atol=1e-4)
            for k in on_train
        ), "scores on the hook's inputs should differ from scores on x_train"
    for row in result.rounds:  # only the count reaches the record, and it stays JSON
        expected = {"note": "own", "score_inputs": 60}
        if form == "dict":
            expected["epochs"] = row["epochs"]
        assert row["train_info"] == expected
    json.dumps(result.rounds)


def test_without_score_inputs_the_run_is_unchanged(digits):
    def builtin(network, info):
        return train(network, info.data, info.config, seed=info.seed, progress=False)

    def same_inputs(network, info):
        result = train(network, info.data, info.config, seed=info.seed, progress=False)
        return TrainResult(epochs=result.epochs, score_inputs=info.data.x_train)

    plain = _run(digits, None)
    hooked = _run(digits, builtin)
    handed = _run(digits, same_inputs)
    strip = [{k: v for k, v in r.items() if k not in ("seconds", "train_info")} for r in
             plain.rounds]
    for other in (hooked, handed):
        rows = [{k: v for k, v in r.items() if k not in ("seconds", "train_info")} for r in
                other.rounds]
        assert rows == strip
        assert other.dropped == plain.dropped
        assert other.scores == plain.scores
    assert "train_info" not in hooked.rounds[0]
    assert handed.rounds[0]["train_info"] == {"score_inputs": len(digits.x_train)}


def test_score_samples_applies_to_the_hooks_inputs(digits):
    inputs = _own_inputs(digits, 80)

    def hook(network, info):
        return {"score_inputs": inputs}

    config = DropNetConfig(metric="minimum", fraction=0.3, max_rounds=1, train=FAST,
                           score_samples=25)
    run = DropNet(SPEC, digits, config, seed=0, train_fn=hook)
    run.train_round()
    run.record(TrainResult())
    net = run.network_at(0)
    run.prune_step()
    expected = unit_scores("activation", net, inputs[:25])
    for layer, values in run.scores[0].items():
        assert torch.allclose(torch.tensor(values), expected[layer].float(), atol=1e-6)


@pytest.mark.parametrize(
    "bad, says",
    [
        (torch.zeros(5, 3), "shape (5, 3); expected (N, 1, 8, 8)"),
        (torch.zeros(0, 1, 8, 8), "shape (0, 1, 8, 8); expected (N, 1, 8, 8) with N >= 1"),
        (torch.zeros(4, 64), "shape (4, 64); expected (N, 1, 8, 8)"),
        (torch.zeros(4, 1, 8, 8, dtype=torch.int64), "dtype torch.int64; expected floating"),
        (torch.zeros(4, 1, 8, 8, dtype=torch.bool), "dtype torch.bool; expected floating"),
        ([[0.0] * 64], "score_inputs as a list; expected a torch.Tensor"),
    ],
)
def test_bad_score_inputs_are_refused_naming_the_shape_expected(digits, bad, says):
    assert digits.input_shape == (1, 8, 8)
    with pytest.raises(ConfigError, match="score_inputs") as err:
        _run(digits, lambda network, info: {"score_inputs": bad})
    assert says in str(err.value)


def test_the_oracle_refuses_score_inputs(digits):
    inputs = _own_inputs(digits)
    with pytest.raises(ConfigError, match="oracle .* cannot use a training hook's score_inputs"):
        _run(digits, lambda network, info: {"score_inputs": inputs}, metric="oracle")


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_score_inputs_of_another_float_dtype_are_scored_in_the_data_s_dtype(digits, dtype):
    # a float64 (or bfloat16) tensor once passed the check and failed in scoring, after training
    inputs = _own_inputs(digits)
    scores = {}
    for kind, given in (("float32", inputs), ("other", inputs.to(dtype))):
        run = _run(digits, lambda network, info, given=given: {"score_inputs": given}, max_rounds=1)
        scores[kind] = run.scores[0]
    if dtype == torch.float64:  # exactly the float32 inputs: the same scores
        assert scores["other"] == scores["float32"]
    else:
        assert scores["other"].keys() == scores["float32"].keys()
