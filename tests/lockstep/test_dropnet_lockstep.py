"""DropNet runs in lockstep against the same runs one after another (``DropNet.run``): the same
dropped units in every round, the same number of rounds and the same accuracies (to float
rounding), plus the pieces: compaction of dead units, batched scores, choice, fallbacks, the study
driver and the command line."""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from secateurs.cli.main import main
from secateurs.data.splits import DatasetSplits
from secateurs.errors import ConfigError, TrainingDiverged
from secateurs.experiments.prune_study import run_prune_study
from secateurs.pruning import PAPER_METRICS, DropNet, DropNetConfig, get_metric
from secateurs.pruning import driver as driver_module
from secateurs.pruning import dropnet as dropnet_module
from secateurs.pruning import lockstep as lockstep_module
from secateurs.pruning.driver import LockstepFallback, run_dropnet_lockstep, run_dropnets
from secateurs.pruning.importance import activation_stats, scores_from_stats, unit_scores
from secateurs.pruning.lockstep import (
    compact_copy,
    compaction_plan,
    expand_into,
    lockstep_activation_stats,
    lockstep_unsupported_reason,
    measure_splits,
)
from secateurs.training import TrainConfig, TrainResult, split_metrics
from secateurs.training.stacked_network import StackedNetwork
from secateurs.training.stacked_ops import LockstepUnsupported

FC = "model-a:widths=20-20"
# Accuracies may differ by float rounding in the batched kernels; on these small runs they agree
# to the last sample. Losses to a relative 1e-5.
ACC_TOL = 1e-9
LOSS_RTOL = 1e-5


def config(metric="minimum", **kw) -> DropNetConfig:
    train = TrainConfig(max_epochs=kw.pop("epochs", 2), patience=kw.pop("patience", 1))
    return DropNetConfig(metric=metric, fraction=kw.pop("fraction", 0.3),
                         until=kw.pop("until", 0.35), train=train, **kw)


def assert_same_runs(separate, lockstep):
    for a, b in zip(separate, lockstep, strict=True):
        assert (a.metric, a.seed) == (b.metric, b.seed)
        assert a.dropped == b.dropped, f"{a.metric} seed {a.seed}: other units dropped"
        assert len(a.rounds) == len(b.rounds) and a.stop_reason == b.stop_reason
        for ra, rb in zip(a.rounds, b.rounds, strict=True):
            for key in ("round", "remaining", "units", "params", "macs", "widths", "epochs"):
                assert ra[key] == rb[key], key
            for split in ("train", "val", "test"):
                assert ra[f"{split}_acc"] == pytest.approx(rb[f"{split}_acc"], abs=ACC_TOL)
                assert ra[f"{split}_loss"] == pytest.approx(rb[f"{split}_loss"], rel=LOSS_RTOL)
        for r in a.weights:
            for k in a.weights[r]:
                assert torch.allclose(a.weights[r][k], b.weights[r][k], atol=1e-5), (r, k)


@pytest.fixture(scope="module")
def paper_runs():
    # seed 1 prunes faster: runs of one batch stop after different numbers of rounds
    return [(config(m, fraction=0.3 + 0.2 * s), s) for m in PAPER_METRICS for s in (0, 1)]


@pytest.fixture(scope="module")
def separate(digits, paper_runs):
    return [DropNet(FC, digits, cfg, seed=s).run(lockstep=False) for cfg, s in paper_runs]


@pytest.mark.parametrize("compact", [False, True])
def test_lockstep_runs_are_the_separate_runs(digits, paper_runs, separate, compact):
    finished = []
    results = run_dropnet_lockstep(
        FC, digits, paper_runs, compact=compact, on_finish=lambda i, r: finished.append(i)
    )
    assert sorted(finished) == list(range(len(paper_runs)))
    assert len({len(r.rounds) for r in results}) > 1, "runs stopping at other rounds: not tested"
    assert_same_runs(separate, results)


def test_shared_order_equals_separate_runs_with_that_order(digits):
    runs = [(config("minimum"), 0), (config("random_layer"), 1)]

    class SharedOrder(DropNet):
        def train_round(self, progress=False):
            from secateurs.training import train

            return train(self.masked, self.data, self.config.train, seed=9 * 100_003 + self.round,
                         progress=False)

    expected = [SharedOrder(FC, digits, cfg, seed=s).run(lockstep=False) for cfg, s in runs]
    assert_same_runs(expected, run_dropnet_lockstep(FC, digits, runs, order_seed=9))


def test_conv_runs_reproduce_the_separate_runs(digits):
    runs = [(config(m, until=0.5, epochs=2), s) for m in ("minimum", "maximum_layer") for s in (0, 1)]
    spec = "model-b:widths=6-6"
    separate = [DropNet(spec, digits, cfg, seed=s).run(lockstep=False) for cfg, s in runs]
    assert_same_runs(separate, run_dropnet_lockstep(spec, digits, runs))


def test_other_criteria_reset_policies_and_the_oracle(digits):
    runs = [
        (config("apoz", reset="continue"), 0),
        (config("magnitude_layer", reset="random"), 1),
        (config("oracle", one_per_round=True, until=None, max_rounds=2), 0),
        (config("minimum", one_per_round=True, until=None, max_rounds=2, score_samples=300), 0),
        (config("minimum", epochs=3, patience=None), 2),  # other training settings: own batch
    ]
    separate = [DropNet(FC, digits, cfg, seed=s).run(lockstep=False) for cfg, s in runs]
    assert_same_runs(separate, run_dropnet_lockstep(FC, digits, runs, group_size=2))


@pytest.mark.parametrize("option", ["step_bytes", "momentum", "restore_best"])
def test_rounds_in_sub_batches_and_stateful_training_reproduce_the_separate_runs(digits, option):
    # lr 0.02: at 0.05 with momentum (an effective step of 0.1) a one-thread run on some CPUs
    # is chaotic enough to turn a 1e-7 rounding difference into 1e-4 in three epochs; a lost or
    # mis-sliced momentum buffer still moves weights by ~1e-3
    train = {"momentum": {"momentum": 0.5, "lr": 0.02}, "restore_best": {"restore_best": True}}
    kwargs = train.get(option, {})
    runs = [
        (DropNetConfig(metric=m, fraction=0.3, until=0.4,
                       train=TrainConfig(max_epochs=3, patience=1, **kwargs)), s)
        for m in ("minimum", "random_layer") for s in (0, 1)
    ]
    separate = [DropNet(FC, digits, cfg, seed=s).run(lockstep=False) for cfg, s in runs]
    step_bytes = 1 if option == "step_bytes" else None  # every run in its own sub-batch
    assert_same_runs(separate, run_dropnet_lockstep(FC, digits, runs, step_bytes=step_bytes))


def test_measured_splits_and_statistics_are_each_networks_own(digits):
    nets = pruned_nets(digits, "model-b:widths=6-6", [0, 1], [0.5, 0.3])
    masked = [n.masked for n in nets]
    plans = compaction_plan(masked)
    modules = [compact_copy(m, p) for m, p in zip(masked, plans, strict=True)]
    metrics, stats = measure_splits(masked, digits, modules=modules, plans=plans, stats_for=[1],
                                    zeros_needed=True)
    assert set(stats) == {1}
    for m, got in zip(masked, metrics, strict=True):
        want = split_metrics(m, digits)
        assert set(got) == set(want)
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-9), key
    ref = activation_stats(masked[1], digits.x_train)
    for layer in masked[1].layers:
        assert torch.allclose(stats[1].mean_abs[layer], ref.mean_abs[layer], rtol=1e-5, atol=1e-7)
        assert torch.allclose(stats[1].apoz[layer], ref.apoz[layer], atol=1e-6)


def test_record_with_batched_metrics_is_dropnet_record(digits):
    (net,) = pruned_nets(digits, FC, [4], [0.3])
    net.config = DropNetConfig(metric="minimum", kappa=0.99, until=None, train=TrainConfig())
    twin = copy.deepcopy(net)
    result = TrainResult(epochs=3)
    expected = DropNet.record(twin, result, 1.5)
    (metrics,), _ = measure_splits([net.masked], digits)
    row = net.record(result, 1.5, metrics)
    assert list(row) == list(expected)
    for key, value in expected.items():
        if isinstance(value, float):
            assert row[key] == pytest.approx(value, rel=1e-5), key
        else:
            assert row[key] == value, key
    assert net.weights.keys() == twin.weights.keys()
    # the stop rule reads the batch's figures: a validation accuracy below kappa x unpruned stops
    net.record(result, 0.0, {**metrics, "val_acc": 0.0})
    assert net.stop_reason is not None and "kappa" in net.stop_reason


class Grouped(nn.Module):
    """A grouped convolution: the engine batches groups=1 only."""

    prunable_layers = ("conv",)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pair = nn.Conv2d(4, 4, 3, padding=1, groups=2)
        self.fc = nn.Linear(4 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.pair(torch.relu(self.conv(x)))), 1))


def test_a_model_the_engine_cannot_batch_falls_back_to_separate_runs(digits, monkeypatch):
    def build(spec, shape, classes):
        return Grouped() if spec == "grouped" else original(spec, shape, classes)

    original = dropnet_module.build_model
    monkeypatch.setattr(dropnet_module, "build_model", build)
    runs = [(config("minimum", until=0.8, epochs=1), s) for s in (0, 1)]
    with pytest.warns(LockstepFallback, match="groups=2"):
        results = run_dropnet_lockstep("grouped", digits, runs)
    separate = [DropNet("grouped", digits, cfg, seed=s).run(lockstep=False) for cfg, s in runs]
    for a, b in zip(separate, results, strict=True):  # the very same computation: bit for bit
        assert a.dropped == b.dropped
        for ra, rb in zip(a.rounds, b.rounds, strict=True):
            assert {**ra, "seconds": 0} == {**rb, "seconds": 0}


class LogitsAndFeatures(nn.Module):
    """Returns (logits, projection): only the logits are trained, the projection head is not."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 16)
        self.fc2 = nn.Linear(16, 12)
        self.cls = nn.Linear(12, 10)
        self.proj = nn.Linear(12, 3)

    def forward(self, x):
        f = torch.relu(self.fc2(torch.relu(self.fc1(x.flatten(1)))))
        return self.cls(f), {"proj": self.proj(f)}


def test_a_model_returning_features_beside_its_logits_runs_in_lockstep(digits):
    runs = [(config(m, until=0.5, epochs=2), s) for m in ("minimum", "random") for s in (0, 1)]
    torch.manual_seed(0)
    nets = [DropNet(LogitsAndFeatures(), digits, cfg, seed=s) for cfg, s in runs]
    separate = [copy.deepcopy(n).run(lockstep=False) for n in nets]
    with warnings.catch_warnings():
        warnings.simplefilter("error", LockstepFallback)  # batched, not one after another
        together = run_dropnets(nets, lockstep=True)
    assert_same_runs(separate, together)


class PerStep(nn.Module):
    """Linears applied at every time step of a (N, T, F) sequence (an input projection and a
    feed-forward block, as in a transformer), optionally around a GRU, then mean over time."""

    def __init__(self, recurrent=False):
        super().__init__()
        self.inp = nn.Linear(5, 12)
        self.rnn = nn.GRU(12, 8, batch_first=True) if recurrent else None
        self.ff1 = nn.Linear(12 if not recurrent else 8, 16)
        self.ff2 = nn.Linear(16, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        if self.rnn is not None:
            out, _ = self.rnn(h)
            h = out + self.ff2(F.relu(self.ff1(out)))  # ff2 is coupled to the GRU's units
        else:
            h = torch.relu(self.ff2(F.relu(self.ff1(h))))
        return self.head(h.mean(1))


def _sequence_splits(n=240):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 7, 5, generator=gen)
    y = (x[:, :, 0].sum(1) > 0).long() + (x[:, -1, 1] > 0.5).long()
    return DatasetSplits("seq", x[:160], y[:160], x[160:200], y[160:200], x[200:], y[200:],
                         num_classes=3)


@pytest.mark.parametrize("recurrent", [False, True], ids=["mlp", "gru"])
def test_linears_applied_per_time_step_run_in_lockstep(recurrent, monkeypatch):
    data = _sequence_splits()
    monkeypatch.setattr(lockstep_module, "BATCH_RECURRENT_ON_CPU", True)  # (a choice on CPU)
    batched = []
    stackable = driver_module._stackable

    def spy(runs, lockstep):
        out = stackable(runs, lockstep)
        batched.extend([out] if lockstep else [])
        return out

    monkeypatch.setattr(driver_module, "_stackable", spy)
    runs = [(config(m, until=0.5, epochs=2), s) for m in ("minimum", "random", "minimum_layer")
            for s in (0, 1)]
    torch.manual_seed(0)
    nets = [DropNet(PerStep(recurrent), data, cfg, seed=s) for cfg, s in runs]
    separate = [copy.deepcopy(n).run(lockstep=False) for n in nets]
    with warnings.catch_warnings():
        warnings.simplefilter("error", LockstepFallback)
        together = run_dropnets(nets, lockstep=True)
    assert batched == [set(range(6))]  # every run went through the stack
    assert_same_runs(separate, together)
    assert any(r.dropped for r in together)


# -- the pieces ---------------------------------------------------------------------------------
def pruned_nets(digits, spec, seeds, drops):
    """DropNet runs with some units dropped by hand (seeded), trained briefly."""
    nets = []
    gen = torch.Generator().manual_seed(0)
    for seed, drop in zip(seeds, drops, strict=True):
        net = DropNet(spec, digits, config(), seed=seed)
        masks = net.masked.get_masks()
        for m in masks.values():
            idx = torch.randperm(len(m), generator=gen)[: int(drop * len(m))]
            m[idx] = False
        net.masked.set_masks(masks)
        with torch.no_grad():
            for p in net.masked.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
        nets.append(net)
    return nets


@pytest.mark.parametrize("spec", [FC, "model-c:widths=6-8-6-8,hidden=9"])
def test_compact_copies_compute_what_the_masked_networks_compute(digits, spec):
    nets = pruned_nets(digits, spec, [0, 1, 2], [0.7, 0.5, 0.8])
    masked = [n.masked for n in nets]
    plans = compaction_plan(masked)
    for layer in masked[0].layers:
        alive = [int(m.get_masks()[layer].sum()) for m in masked]
        widths = {len(p[layer]) for p in plans}
        assert widths == {max(alive)}, "every network gets the batch's largest alive count"
        for m, p in zip(masked, plans, strict=True):
            kept = set(p[layer].tolist())
            assert set(m.get_masks()[layer].nonzero().flatten().tolist()) <= kept
    x = digits.x_test[:50]
    for m, p in zip(masked, plans, strict=True):
        small = compact_copy(m, p)
        assert sum(q.numel() for q in small.parameters()) < sum(q.numel() for q in m.parameters())
        with torch.no_grad():
            assert torch.allclose(small(x), m(x), atol=1e-5)


def test_expand_into_writes_only_the_compacted_units_back(digits):
    (net,) = pruned_nets(digits, FC, [0], [0.5])
    masked = net.masked
    (plan,) = compaction_plan([masked])
    small = compact_copy(masked, plan)
    before = {k: v.clone() for k, v in masked.net.state_dict().items()}
    with torch.no_grad():
        for p in small.parameters():
            p.fill_(7.0)
    expand_into(small, masked, plan)
    first, second = masked.layers
    rows, cols = plan[second], plan[first]
    w = masked.net.get_submodule(second).weight
    changed = w != before[f"{second}.weight"]
    expected = torch.zeros_like(changed)
    expected[rows[:, None], cols[None, :]] = True
    assert torch.equal(changed, expected)
    assert (w[rows[:, None], cols[None, :]] == 7.0).all()


def test_batched_scores_equal_each_networks_scores(digits):
    nets = pruned_nets(digits, "model-b:widths=6-6", [0, 1, 2], [0.5, 0.3, 0.6])
    masked = [n.masked for n in nets]
    plans = compaction_plan(masked)
    modules = [compact_copy(m, p) for m, p in zip(masked, plans, strict=True)]
    for kwargs in ({}, {"modules": modules, "plans": plans}):
        stats = lockstep_activation_stats(masked, digits.x_train, samples=500, batch_size=128,
                                          **kwargs)
        for m, st in zip(masked, stats, strict=True):
            ref = activation_stats(m, digits.x_train, samples=500, batch_size=128)
            assert st.samples == ref.samples == 500
            for layer in m.layers:
                assert torch.allclose(st.mean_abs[layer], ref.mean_abs[layer], rtol=1e-5, atol=1e-7)
                assert torch.allclose(st.apoz[layer], ref.apoz[layer], atol=1e-6)
            for criterion in ("activation", "negative_activation", "apoz"):
                got = scores_from_stats(criterion, st)
                want = unit_scores(criterion, m, digits.x_train, samples=500, batch_size=128)
                for layer in m.layers:
                    assert torch.allclose(got[layer], want[layer], rtol=1e-5, atol=1e-6)


def test_choose_with_batched_scores_is_dropnet_choose(digits):
    for metric in ("minimum", "maximum_layer", "apoz"):
        (net,) = pruned_nets(digits, FC, [3], [0.4])
        net.config = config(metric)
        net.metric = get_metric(metric)
        state = net.generator.get_state()
        expected = DropNet.choose(net)
        net.generator.set_state(state)
        (stats,) = lockstep_activation_stats([net.masked], digits.x_train, batch_size=2048)
        assert net.choose(scores_from_stats(net.metric.criterion, stats)) == expected


# -- the study and the command line --------------------------------------------------------------
def test_study_uses_lockstep_saves_runs_as_they_finish_and_resumes(digits, tmp_path, monkeypatch):
    out = tmp_path / "study"
    cfg = config(until=0.5)
    import secateurs.experiments.prune_study as study_module

    calls = []
    original = study_module.run_dropnets

    def spy(nets, **kwargs):
        calls.append((len(nets), kwargs["lockstep"]))
        return original(nets, **kwargs)

    monkeypatch.setattr(study_module, "run_dropnets", spy)
    first = run_prune_study(FC, digits, ["minimum", "random"], [0, 1], cfg, out=out,
                            progress=False)
    assert calls == [(4, True)]
    plain = run_prune_study(FC, digits, ["minimum", "random"], [0, 1], cfg, progress=False,
                            lockstep=False)
    assert calls == [(4, True), (4, False)]
    assert_same_runs(plain.runs, first.runs)
    for metric in ("minimum", "random"):
        for seed in (0, 1):
            assert (out / "runs" / f"{metric}-seed{seed}" / "run.json").is_file()
    # only the lost run is trained again
    import shutil

    shutil.rmtree(out / "runs" / "random-seed1")
    again = run_prune_study(FC, digits, ["minimum", "random", "minimum_layer"], [0, 1], cfg,
                            out=tmp_path / "other", progress=False)
    assert calls[2:] == [(6, True)]
    resumed = run_prune_study(FC, digits, ["minimum", "random"], [0, 1], cfg, out=out,
                              progress=False)
    assert calls[3:] == [(1, True)]  # one run to do: a batch of one
    assert [(r.metric, r.seed) for r in resumed.runs] == [
        ("minimum", 0), ("minimum", 1), ("random", 0), ("random", 1)
    ]
    assert resumed.runs[3].dropped == first.runs[3].dropped
    assert again.runs[3].dropped == first.runs[3].dropped


def test_prune_command_takes_lockstep_flags(tmp_path, capsys):
    base = ["prune", "--model", "model-a:widths=8-6", "--dataset", "digits", "--fraction", "0.3",
            "--epochs", "1", "--until", "0.5", "--metric", "minimum", "--seeds", "2", "--json"]
    outs = {}
    for flag in ("--lockstep", "--no-lockstep"):
        out = tmp_path / flag.strip("-")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert main([*base, flag, "--out", str(out)]) == 0
        assert json.loads(capsys.readouterr().out)["out"] == str(out)
        outs[flag] = (out / "dropped.csv").read_text()
    assert outs["--lockstep"] == outs["--no-lockstep"]


# -- refusals and failures -------------------------------------------------------------------------
def test_compaction_with_weight_decay_is_refused_and_the_default_reproduces_the_runs(digits):
    def decayed(metric):
        return DropNetConfig(metric=metric, fraction=0.3, until=0.35, reset="continue",
                             train=TrainConfig(max_epochs=2, patience=1, weight_decay=0.05))

    runs = [(decayed("minimum"), 0), (decayed("magnitude"), 1)]
    with pytest.raises(ConfigError, match=r"compact=True .*weight_decay=0\.05"):
        run_dropnet_lockstep(FC, digits, runs, compact=True)
    separate = [DropNet(FC, digits, cfg, seed=s).run(lockstep=False) for cfg, s in runs]
    assert_same_runs(separate, run_dropnet_lockstep(FC, digits, runs))  # compaction off


class PerRow(nn.Module):
    """Rows of a conv output picked by a list: the stack builds, but it indexes activations with
    constants it can batch only (ints, slices), which shows when the first input goes through."""

    prunable_layers = ("conv",)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(x))[:, :, [0, 2, 4, 6]], 1))


def test_models_refused_at_forward_time_fall_back_to_separate_runs(digits, monkeypatch):
    assert lockstep_unsupported_reason(FC, digits) is None
    assert "ints, slices" in lockstep_unsupported_reason(PerRow(), digits)

    def build(spec, shape, classes):
        return PerRow() if spec == "per-row" else original(spec, shape, classes)

    original = dropnet_module.build_model
    monkeypatch.setattr(dropnet_module, "build_model", build)
    runs = [(config("minimum", until=0.6, epochs=1), s) for s in (0, 1)]
    with pytest.warns(LockstepFallback, match="ints, slices"):
        results = run_dropnet_lockstep("per-row", digits, runs)
    separate = [DropNet("per-row", digits, cfg, seed=s).run(lockstep=False) for cfg, s in runs]
    for a, b in zip(separate, results, strict=True):
        assert a.dropped == b.dropped and len(a.rounds) > 1
        for ra, rb in zip(a.rounds, b.rounds, strict=True):
            assert {**ra, "seconds": 0} == {**rb, "seconds": 0}


class TiedLayers(nn.Module):
    """Weight tying as language models write it: two layers, one parameter."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 16)
        self.fc2 = nn.Linear(16, 16)
        self.fc3 = nn.Linear(16, 16)
        self.fc3.weight = self.fc2.weight
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        h = torch.relu(self.fc1(x.flatten(1)))
        return self.head(torch.relu(self.fc3(torch.relu(self.fc2(h)))))


def test_tied_weights_fall_back_to_separate_runs_instead_of_losing_a_gradient(digits):
    torch.manual_seed(0)
    model = TiedLayers()
    with pytest.raises(LockstepUnsupported, match="tied weights: 'fc2.weight' and 'fc3.weight'"):
        StackedNetwork([copy.deepcopy(model)])
    cfg = config("minimum", until=0.6, epochs=1)
    with pytest.warns(LockstepFallback, match="tied weights"):
        results = run_dropnets([DropNet(model, digits, cfg, seed=s) for s in (0, 1)])
    separate = [DropNet(model, digits, cfg, seed=s).run(lockstep=False) for s in (0, 1)]
    for a, b in zip(separate, results, strict=True):
        assert a.dropped == b.dropped and len(a.rounds) > 1
        for ra, rb in zip(a.rounds, b.rounds, strict=True):
            assert {**ra, "seconds": 0} == {**rb, "seconds": 0}


def test_a_diverging_run_outside_the_batch_is_reported_with_the_others(digits):
    wild = DropNetConfig(metric="oracle", one_per_round=True, until=None, max_rounds=2,
                         train=TrainConfig(max_epochs=1, lr=1e30))
    runs = [
        (config("minimum"), 0),
        (wild, 0),  # runs alone (oracle) and diverges
        (config("minimum", epochs=3, patience=None), 1),  # other settings: a batch of its own
        (config("oracle", one_per_round=True, until=None, max_rounds=2), 1),  # alone, after it
    ]
    finished = []
    with pytest.raises(TrainingDiverged, match="1 DropNet run") as info:
        run_dropnet_lockstep(FC, digits, runs, on_finish=lambda i, r: finished.append(i))
    assert "oracle seed 0" in str(info.value)
    assert sorted(finished) == [0, 2, 3]  # every other run finished, the one after it included
