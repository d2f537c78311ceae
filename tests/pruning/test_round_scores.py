"""Every pruning round keeps the unit scores its selection ranked by, on disk as scores-NNN.json,
for both drivers; the stored scores are the ones recomputed from that round's weights, and the
units dropped are the lowest-scored alive ones."""

from __future__ import annotations

import json

import pytest
import torch

from secateurs.errors import DataError
from secateurs.models import build_model
from secateurs.pruning import DropNet, DropNetConfig, load_run, save_run
from secateurs.pruning.driver import run_dropnet_lockstep
from secateurs.pruning.importance import unit_scores
from secateurs.pruning.masks import MaskedNetwork
from secateurs.training import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = TrainConfig(max_epochs=1, batch_size=128, patience=None)
MODEL = "model-a:widths=6-5"


def _config(metric: str) -> DropNetConfig:
    return DropNetConfig(metric=metric, fraction=0.3, until=0.4, train=FAST)


def _check_scores(result, digits) -> None:
    last = len(result.rounds) - 1
    assert sorted(result.scores) == list(range(last))  # every round that was followed by a drop
    for r, scores in result.scores.items():
        assert set(scores) == set(result.widths)
        assert all(len(scores[k]) == w for k, w in result.widths.items())
        # the stored scores are the criterion's on round r's trained weights and masks
        torch.manual_seed(result.seed)
        model = build_model(MODEL, digits.input_shape, digits.num_classes)
        net = MaskedNetwork(model, digits.x_train[:2])
        net.load_weight_state_dict(result.weights[r])
        net.set_masks(result.masks_at(r))
        criterion = "activation" if result.metric == "minimum" else "negative_activation"
        want = unit_scores(criterion, net, digits.x_train)
        for layer in scores:
            assert torch.allclose(torch.tensor(scores[layer]), want[layer].float(), atol=1e-5)
        # global scope: every unit dropped at r+1 scores no higher than every unit kept
        alive = result.masks_at(r)
        dropped = {(d["layer"], d["index"]) for d in result.dropped if d["round"] == r + 1}
        kept = [
            scores[k][i] for k, m in alive.items() for i in range(len(m))
            if m[i] and (k, i) not in dropped
        ]
        assert dropped and max(scores[k][i] for k, i in dropped) <= min(kept)


@pytest.mark.parametrize("metric", ["minimum", "maximum"])
def test_sequential_driver_keeps_each_rounds_scores(digits, metric):
    result = DropNet(MODEL, digits, _config(metric), seed=2).run()
    _check_scores(result, digits)


def test_lockstep_driver_keeps_the_same_scores(digits):
    runs = [(_config("minimum"), 0), (_config("maximum"), 1)]
    results = run_dropnet_lockstep(MODEL, digits, runs)
    for result in results:
        _check_scores(result, digits)


def test_oracle_and_random_scores(digits):
    random = DropNet(MODEL, digits, _config("random"), seed=0).run()
    assert random.scores and all(
        v == 0.0 for s in random.scores.values() for layer in s.values() for v in layer
    )
    oracle = DropNetConfig(metric="oracle", until=0.8, train=FAST)
    assert DropNet(MODEL, digits, oracle, seed=0).run().scores == {}


def test_scores_round_trip_through_the_run_folder(digits, tmp_path):
    result = DropNet(MODEL, digits, _config("minimum"), seed=0).run()
    folder = save_run(result, tmp_path / "run")
    files = sorted(p.name for p in folder.glob("scores-*.json"))
    assert files == [f"scores-{r:03d}.json" for r in sorted(result.scores)]
    first = json.loads((folder / "scores-000.json").read_text())
    assert first["round"] == 0 and first["metric"] == "minimum" and first["seed"] == 0
    back = load_run(folder, weights=False)
    assert back.scores == result.scores
    # saving a shorter run over it leaves no stale scores behind
    result.scores = {0: result.scores[0]}
    save_run(result, folder)
    assert sorted(p.name for p in folder.glob("scores-*.json")) == ["scores-000.json"]


def test_runs_recorded_before_scores_load_without_them(digits, tmp_path):
    result = DropNet(MODEL, digits, _config("minimum"), seed=0).run()
    folder = save_run(result, tmp_path / "run")
    meta = json.loads((folder / "run.json").read_text())
    del meta["score_rounds"]
    (folder / "run.json").write_text(json.dumps(meta))
    assert load_run(folder, weights=False).scores == {}


def test_a_missing_scores_file_is_a_data_error(digits, tmp_path):
    result = DropNet(MODEL, digits, _config("minimum"), seed=0).run()
    folder = save_run(result, tmp_path / "run")
    (folder / "scores-001.json").unlink()
    with pytest.raises(DataError, match="damaged: scores-001.json is missing"):
        load_run(folder)
