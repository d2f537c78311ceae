"""DropNet on the hidden units of nn.LSTM / nn.GRU / nn.RNN: masking, scores, export, counts.

The references here are written separately from the library: the cells are the gate equations
of the PyTorch documentation, run step by step in Python loops over samples and time steps, with
a dropped unit's h (and c) forced to zero after every step."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from secateurs.data.specs import load_dataset
from secateurs.errors import ConfigError
from secateurs.models import build_model
from secateurs.pruning import (
    DropNet,
    DropNetConfig,
    MaskedNetwork,
    count_params_macs,
    driver,
    export_pruned,
    implied_params_macs,
    load_exported,
    save_exported,
    unit_scores,
    weight_magnitude,
)
from secateurs.pruning import lockstep as pruning_lockstep
from secateurs.pruning.driver import LockstepFallback, run_dropnet_lockstep
from secateurs.pruning.recurrent import RecurrentUnitMask, RecurrentUnits, set_recurrent_score
from secateurs.training import TrainConfig
from secateurs.training.lockstep import train_lockstep

FEATURES, HIDDEN, STEPS, CLASSES = 5, 7, 6, 3
CELLS = [(nn.LSTM, None), (nn.GRU, None), (nn.RNN, "tanh"), (nn.RNN, "relu")]
GATES = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}
CASES = [
    pytest.param(cell, act, layers, bf, bi,
                 id=f"{cell.__name__}{'-' + act if act else ''}-L{layers}"
                 f"-{'bf' if bf else 'tf'}{'-bi' if bi else ''}")
    for cell, act in CELLS for layers in (1, 2) for bf in (True, False) for bi in (False, True)
    if not bi or bf or (cell is nn.LSTM and layers == 2)
]


def _names(layers, bi):
    return [f"rnn.l{k}{s}" for k in range(layers) for s in (("", "_reverse") if bi else ("",))]


class SeqNet(nn.Module):
    """Input (N, T, F) -> recurrent module -> its last output step -> Linear."""

    def __init__(self, cell, act=None, layers=1, batch_first=True, bidirectional=False,
                 hidden=HIDDEN):
        super().__init__()
        extra = {"nonlinearity": act} if act else {}
        self.rnn = cell(FEATURES, hidden, num_layers=layers, batch_first=batch_first,
                        bidirectional=bidirectional, **extra)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), CLASSES)
        self.batch_first = batch_first

    def forward(self, x):
        if not self.batch_first:
            x = x.transpose(0, 1)
        out, _ = self.rnn(x)
        return self.head(out[:, -1] if self.batch_first else out[-1])


def _inputs(n=9, seed=0):
    return torch.randn(n, STEPS, FEATURES, generator=torch.Generator().manual_seed(seed))


def _masks(masked, seed, p=0.45):
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for layer, width in masked.widths.items():
        alive = torch.rand(width, generator=gen) > p
        alive[int(torch.randint(width, (1,), generator=gen))] = True
        out[layer] = alive
    return out


def _build(cell, act, layers, bf, seed=0, bi=False):
    torch.manual_seed(seed)
    return SeqNet(cell, act, layers, bf, bi)


# ---------------------------------------------------------------- the slow reference


def _cell_step(rnn, k, suffix, x, h, c):
    """One step of layer k (direction ``suffix``) for one sample (vectors), from the documented
    gate equations."""
    w_ih, w_hh = getattr(rnn, f"weight_ih_l{k}{suffix}"), getattr(rnn, f"weight_hh_l{k}{suffix}")
    b_ih, b_hh = getattr(rnn, f"bias_ih_l{k}{suffix}"), getattr(rnn, f"bias_hh_l{k}{suffix}")
    a, b = w_ih @ x + b_ih, w_hh @ h + b_hh
    if isinstance(rnn, nn.LSTM):
        i, f, g, o = (a + b).chunk(4)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    if isinstance(rnn, nn.GRU):
        ar, az, an = a.chunk(3)
        br, bz, bn = b.chunk(3)
        r, z = torch.sigmoid(ar + br), torch.sigmoid(az + bz)
        n = torch.tanh(an + r * bn)
        return (1 - z) * n + z * h, c
    pre = a + b
    return (torch.tanh(pre) if rnn.nonlinearity == "tanh" else torch.relu(pre)), c


@torch.no_grad()
def _reference(model, x, alive):
    """Per layer and direction the (N, T, H) hidden states with dropped units forced to zero, and
    the logits. The backward direction reads the steps from the last to the first."""
    rnn = model.rnn
    states = {}
    seq = x.double()
    rnn = rnn.double()
    head = model.head.double()
    for k in range(rnn.num_layers):
        outputs = []
        for suffix in ("", "_reverse") if rnn.bidirectional else ("",):
            m = alive[f"rnn.l{k}{suffix}"].double()
            layer = torch.zeros(len(x), STEPS, rnn.hidden_size, dtype=torch.float64)
            for i in range(len(x)):
                h = torch.zeros(rnn.hidden_size, dtype=torch.float64)
                c = torch.zeros(rnn.hidden_size, dtype=torch.float64)
                steps = range(STEPS) if not suffix else range(STEPS - 1, -1, -1)
                for t in steps:
                    h, c = _cell_step(rnn, k, suffix, seq[i, t], h, c)
                    h, c = h * m, c * m
                    layer[i, t] = h
            states[f"rnn.l{k}{suffix}"] = layer
            outputs.append(layer)
        seq = torch.cat(outputs, -1)
    logits = head(seq[:, -1])
    rnn.float()
    head.float()
    return states, logits


# ---------------------------------------------------------------- masking, scores, export


@pytest.mark.parametrize("cell,act,layers,bf,bi", CASES)
def test_masked_network_matches_slow_reference_and_scores(cell, act, layers, bf, bi):
    model = _build(cell, act, layers, bf, bi=bi)
    x = _inputs()
    masked = MaskedNetwork(model, x)
    assert masked.layers == tuple(_names(layers, bi))
    masks = _masks(masked, 1)
    masked.set_masks(masks)
    masked.eval()
    states, logits = _reference(model, x, masks)
    assert torch.allclose(masked(x).double(), logits, atol=1e-5)
    scores = unit_scores("activation", masked, x)
    for name, state in states.items():
        slow = torch.zeros(HIDDEN, dtype=torch.float64)
        for i in range(len(x)):
            for t in range(STEPS):
                slow += state[i, t].abs()
        slow /= len(x) * STEPS
        assert torch.allclose(scores[name].double(), slow, atol=1e-5)
        assert bool((scores[name][~masks[name]] == 0).all())
    set_recurrent_score(masked, "mean_abs")
    other = unit_scores("activation", masked, x)
    for name, state in states.items():
        slow = torch.zeros(HIDDEN, dtype=torch.float64)
        for i in range(len(x)):
            slow += (sum(state[i, t] for t in range(STEPS)) / STEPS).abs()
        assert torch.allclose(other[name].double(), slow / len(x), atol=1e-5)


@pytest.mark.parametrize("cell,act,layers,bf,bi", CASES)
def test_dropped_units_hidden_state_is_exactly_zero(cell, act, layers, bf, bi):
    model = _build(cell, act, layers, bf, seed=3, bi=bi)
    x = _inputs(seed=3)
    masked = MaskedNetwork(model, x)
    masks = _masks(masked, 4)
    masked.set_masks(masks)
    (wrapper,) = [m for m in masked.modules() if isinstance(m, RecurrentUnits)]
    seen = {}
    handles = [m.register_forward_hook(lambda mod, inp, _o, k=k: seen.__setitem__(k, inp[0]))
               for k, m in enumerate(wrapper.unit_masks)]
    seq = x if bf else x.transpose(0, 1)
    out, hidden = wrapper(seq)
    for h in handles:
        h.remove()
    h_n, c_n = hidden if cell is nn.LSTM else (hidden, None)
    names = _names(layers, bi)
    for j, name in enumerate(names):
        dead = ~masks[name]
        assert bool((seen[j][..., dead] == 0).all())  # before the mask multiplies: already 0
        assert bool((h_n[j][:, dead] == 0).all())
        if c_n is not None:
            assert bool((c_n[j][:, dead] == 0).all())
        assert bool((seen[j][..., ~dead] != 0).any())
    last = torch.cat([masks[x] for x in names[len(names) - (2 if bi else 1):]])
    assert bool((out[..., ~last] == 0).all()) and out.shape[-1] == len(last)
    # gradients of a dropped unit's weights are zero too
    masked.train()
    masked(x).sum().backward()
    g = model.rnn.weight_hh_l0.grad.reshape(GATES[cell], HIDDEN, HIDDEN)
    dead0 = ~masks["rnn.l0"]
    assert bool((g[:, dead0] == 0).all()) and bool((g[:, :, dead0] == 0).all())


def _expected_counts(cell, layers, width, directions=1, features=FEATURES):
    gates = GATES[cell]
    params = macs = 0
    size_in = features
    for _ in range(layers):
        params += directions * (gates * width * (size_in + width) + 2 * gates * width)
        macs += directions * gates * width * (size_in + width) * STEPS
        size_in = directions * width
    return params + size_in * CLASSES + CLASSES, macs + size_in * CLASSES


@pytest.mark.parametrize("cell,act,layers,bf,bi", CASES)
def test_export_equals_masked_counts_and_round_trip(cell, act, layers, bf, bi, tmp_path):
    model = _build(cell, act, layers, bf, seed=5, bi=bi)
    x = _inputs(seed=5)
    masked = MaskedNetwork(model, x)
    masks = _masks(masked, 6)
    masked.set_masks(masks)
    result = export_pruned(masked, x[:1])
    masked.eval()
    exported = result.module.eval()
    assert type(exported) is SeqNet  # the user's own class, no mask left
    assert (masked(x) - exported(x)).abs().max() < 1e-5
    width = max(int(m.sum()) for m in masks.values())
    assert exported.rnn.hidden_size == width
    expected = _expected_counts(cell, layers, width, 2 if bi else 1)
    assert (result.params, result.macs) == expected
    assert count_params_macs(exported, x[:1]) == expected
    assert implied_params_macs(masked, x[:1]) == expected  # what DropNet's round records hold
    for layer, alive in masks.items():
        dead = set(torch.nonzero(~alive).flatten().tolist())
        assert set(result.removed[layer]) | set(result.zeroed[layer]) == dead
        assert len(alive) - len(result.removed[layer]) == width
    save_exported(tmp_path / "export", result)
    fresh = _build(cell, act, layers, bf, seed=99, bi=bi)
    loaded = load_exported(tmp_path / "export", model=fresh)
    assert torch.equal(loaded(x), exported(x))


def test_layers_keeping_different_counts_share_the_widest_hidden_size():
    model = _build(nn.LSTM, None, 2, True, seed=2)
    x = _inputs(seed=2)
    masked = MaskedNetwork(model, x)
    keep0 = torch.tensor([1, 0, 1, 1, 1, 0, 1], dtype=torch.bool)  # 5 units
    keep1 = torch.tensor([0, 1, 0, 0, 1, 0, 0], dtype=torch.bool)  # 2 units
    masked.set_masks({"rnn.l0": keep0, "rnn.l1": keep1})
    result = export_pruned(masked, x[:1])
    assert result.module.rnn.hidden_size == 5
    assert result.removed["rnn.l0"] == [1, 5] and result.zeroed["rnn.l0"] == []
    # layer 1 keeps 2 alive units plus its 3 lowest-indexed dropped ones, zeroed
    assert result.zeroed["rnn.l1"] == [0, 2, 3] and result.removed["rnn.l1"] == [5, 6]
    masked.eval()
    assert (masked(x) - result.module.eval()(x)).abs().max() < 1e-5
    assert "share hidden_size" in result.summary()


def test_weight_magnitude_sums_every_gate_row():
    model = _build(nn.GRU, None, 2, True, seed=8)
    masked = MaskedNetwork(model, _inputs())
    got = weight_magnitude(masked)
    for k in range(2):
        w_ih, w_hh = getattr(model.rnn, f"weight_ih_l{k}"), getattr(model.rnn, f"weight_hh_l{k}")
        for u in range(HIDDEN):
            total = 0.0
            for g in range(3):
                total += float(w_ih[g * HIDDEN + u].detach().abs().sum()
                               + w_hh[g * HIDDEN + u].detach().abs().sum())
            assert got[f"rnn.l{k}"][u].item() == pytest.approx(total, rel=1e-5)


# ---------------------------------------------------------------- DropNet, zoo, lockstep


def _sequence_data():
    return load_dataset("synthetic:n=240,shape=1x6x5,classes=3,seed=1")


def _quick(metric="minimum", **kw):
    return DropNetConfig(metric=metric, fraction=0.25, max_rounds=1, until=None, **kw,
                         train=TrainConfig(optimizer="adam", lr=0.01, max_epochs=1, patience=None))


def test_dropnet_minimum_drops_the_lowest_mean_abs_hidden_states():
    data = _sequence_data()
    run = DropNet("lstm-a:hidden=8,layers=2", data, _quick(), seed=0)
    run.train_round()
    scores = unit_scores("activation", run.masked, data.x_train)
    flat = sorted((float(v), layer, i) for layer, s in scores.items() for i, v in enumerate(s))
    expected = {(layer, i) for _, layer, i in flat[:4]}  # floor(0.25 * 16)
    run.prune_step()
    assert {(d["layer"], d["index"]) for d in run.dropped} == expected


def test_dropnet_records_match_the_export_of_each_round():
    data = _sequence_data()
    run = DropNet("lstm-a:hidden=8,cell=gru,layers=2", data, _quick(), seed=1)
    result = run.run()
    assert len(result.rounds) == 2
    net = run.network_at(1)
    exported = export_pruned(net, data.x_train[:1])
    assert (result.rounds[1]["params"], result.rounds[1]["macs"]) == (
        exported.params, exported.macs)
    assert result.rounds[1]["params"] < result.rounds[0]["params"]


@pytest.mark.parametrize("shape", [(1, 28, 28), (28, 28)])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "rnn-relu"])
def test_zoo_lstm_a_builds_from_image_or_sequence_shape(shape, cell):
    model = build_model(f"lstm-a:cell={cell},hidden=6", shape, 10)
    x = torch.rand(2, *shape)
    masked = MaskedNetwork(model, x)
    assert masked.layers == ("rnn.l0",) and masked.widths == {"rnn.l0": 6}
    assert model(x).shape == (2, 10)
    assert model.rnn.input_size == 28


def test_zoo_lstm_a_refuses_bad_options():
    with pytest.raises(ConfigError, match="cell must be one of"):
        build_model("lstm-a:cell=transformer", (28, 28), 10)
    with pytest.raises(ConfigError, match="input shape must be"):
        build_model("lstm-a", (784,), 10)


@pytest.mark.parametrize("spec", ["lstm-a:hidden=6", "lstm-a:hidden=6,cell=gru,layers=2"])
def test_lockstep_batches_recurrent_runs_as_the_separate_runs(spec, monkeypatch):
    monkeypatch.setattr(pruning_lockstep, "BATCH_RECURRENT_ON_CPU", True)
    calls = []
    monkeypatch.setattr(driver, "train_lockstep",
                        lambda *a, **k: calls.append(1) or train_lockstep(*a, **k))
    data = _sequence_data()
    runs = [(_quick(m), s) for m in ("minimum", "maximum") for s in (0, 1)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", LockstepFallback)  # batched, not a fallback
        results = run_dropnet_lockstep(spec, data, runs)
    for (cfg, seed), result in zip(runs, results, strict=True):
        alone = DropNet(spec, data, cfg, seed=seed).run(lockstep=False)
        assert result.dropped == alone.dropped
        for a, b in zip(alone.rounds, result.rounds, strict=True):
            assert a["test_acc"] == pytest.approx(b["test_acc"], abs=1e-9)
            assert a["test_loss"] == pytest.approx(b["test_loss"], rel=1e-4)
        for r in alone.weights:
            for k, want in alone.weights[r].items():
                assert torch.allclose(result.weights[r][k], want, atol=1e-5), (r, k)
    assert calls, "the stacked engine did not train them"


def test_on_cpu_recurrent_runs_train_separately_by_choice_without_a_warning(monkeypatch):
    calls = []
    monkeypatch.setattr(driver, "train_lockstep", lambda *a, **k: calls.append(1))
    data = _sequence_data()
    with warnings.catch_warnings():
        warnings.simplefilter("error", LockstepFallback)
        run_dropnet_lockstep("lstm-a:hidden=6", data, [(_quick(), 0), (_quick("maximum"), 0)])
    assert not calls
    masked = DropNet("lstm-a:hidden=6", data, _quick(), seed=0).masked
    assert "recurrent" in pruning_lockstep.separate_is_faster(masked, torch.device("cpu"))
    assert pruning_lockstep.separate_is_faster(masked, torch.device("cuda"), runs=4) is None
    assert "fewer than 4" in pruning_lockstep.separate_is_faster(masked, torch.device("cuda"))




# ---------------------------------------------------------------- user-written models


class GRUStateHead(nn.Module):
    """Two-layer GRU with dropout between its layers; the classifier reads h_n[-1]."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(FEATURES, 8, num_layers=2, batch_first=True, dropout=0.3)
        self.fc = nn.Linear(8, CLASSES)

    def forward(self, x):
        _, h = self.gru(x)
        return self.fc(h[-1])


class ProjectedLSTMMean(nn.Module):
    """A Linear input projection (prunable: the LSTM loses its inputs), an LSTM over time steps
    in (T, N, F) layout, the mean over time of its outputs, then the classifier."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(FEATURES, 6)
        self.lstm = nn.LSTM(6, 9)
        self.classifier = nn.Linear(9, CLASSES)

    def forward(self, x):
        h = torch.relu(self.proj(x)).transpose(0, 1)
        out, (h_n, c_n) = self.lstm(h)
        return self.classifier(out.mean(0))


class TextGRU(nn.Module):
    """Token ids -> Embedding -> GRU -> final state squeezed -> per-step features + classifier."""

    def __init__(self, vocab=40):
        super().__init__()
        self.embed = nn.Embedding(vocab, 6)
        self.gru = nn.GRU(6, 10, batch_first=True)
        self.out = nn.Linear(10, CLASSES)

    def forward(self, tokens):
        _, h = self.gru(self.embed(tokens))
        return self.out(h.squeeze(0))


class PerStepHead(nn.Module):
    """A bias-free RNN; a per-time-step Linear over its output sequence (prunable itself), max
    over time."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(FEATURES, 8, batch_first=True, bias=False)
        self.step = nn.Linear(8, 5)
        self.head = nn.Linear(5, CLASSES)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(torch.relu(self.step(out)).amax(1))


class NormedLSTM(nn.Module):
    """LayerNorm over the output sequence: a barrier, its dead units are kept (zeroed)."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(FEATURES, 8, batch_first=True)
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, CLASSES)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(self.norm(out)[:, -1])


class AllStatesHead(nn.Module):
    """A classifier over every layer's final state at once: the stacked h_n is a barrier."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(FEATURES, 6, num_layers=2, batch_first=True)
        self.fc = nn.Linear(12, CLASSES)

    def forward(self, x):
        _, (h, _) = self.lstm(x)
        return self.fc(h.permute(1, 0, 2).flatten(1))


class BiGRUConcatHead(nn.Module):
    """Bidirectional two-layer GRU; the classifier reads the last layer's two final states,
    concatenated (torch.cat([h[-2], h[-1]], 1): forward then backward)."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(FEATURES, 6, num_layers=2, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(12, CLASSES)

    def forward(self, x):
        _, h = self.gru(x)
        return self.fc(torch.cat([h[-2], h[-1]], 1))


USER = {
    "bi-gru-concat-head": (BiGRUConcatHead,
                           ("gru.l0", "gru.l0_reverse", "gru.l1", "gru.l1_reverse"), True),
    "gru-state-head": (GRUStateHead, ("gru.l0", "gru.l1"), True),
    "projected-lstm-mean": (ProjectedLSTMMean, ("proj", "lstm.l0"), True),
    "text-gru": (TextGRU, ("gru.l0",), True),
    "per-step-head": (PerStepHead, ("rnn.l0", "step"), True),
    "normed-lstm": (NormedLSTM, ("lstm.l0",), False),
    "all-states-head": (AllStatesHead, ("lstm.l0", "lstm.l1"), False),
}


@pytest.mark.parametrize("name", list(USER))
def test_user_recurrent_models_export_exactly(name, tmp_path):
    cls, layers, removable = USER[name]
    torch.manual_seed(0)
    model = cls()
    if cls is TextGRU:
        x = torch.randint(0, 40, (7, STEPS), generator=torch.Generator().manual_seed(0))
    else:
        x = _inputs(7)
    masked = MaskedNetwork(model, x)
    assert masked.layers == layers
    masks = _masks(masked, 2, p=0.5)
    masked.set_masks(masks)
    result = export_pruned(masked, x[:1])
    masked.eval()
    assert (masked(x) - result.module.eval()(x)).abs().max() < 1e-5
    if removable:
        assert not result.kept_because and type(result.module) is cls
        for layer, alive in masks.items():
            module = layer.rsplit(".l", 1)[0]
            siblings = [m for x, m in masks.items() if x.rsplit(".l", 1)[0] == module]
            kept = max(int(m.sum()) for m in siblings)  # a Linear is its own only sibling
            assert len(alive) - len(result.removed[layer]) == kept  # padded to the widest layer
    else:
        assert sum(len(v) for v in result.removed.values()) == 0 and result.kept_because
        assert result.params == result.params_before
    save_exported(tmp_path / "e.safetensors", result)
    torch.manual_seed(1)
    loaded = load_exported(tmp_path / "e.safetensors", model=cls())
    assert torch.equal(loaded(x), result.module(x))


def test_user_model_dropnet_round_runs():
    data = _sequence_data()  # (N, 1, 6, 5) inputs

    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = GRUStateHead()

        def forward(self, x):
            return self.inner(x.flatten(1, 2))

    run = DropNet(Flat(), data, _quick("random"), seed=0)
    result = run.run()
    assert result.layers == ["inner.gru.l0", "inner.gru.l1"]
    assert sum(int(m.sum()) for m in result.masks_at(1).values()) == 16 - 4


# ---------------------------------------------------------------- refusals


class WithState(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(FEATURES, 8, batch_first=True)
        self.proj = nn.Linear(FEATURES, 8)
        self.fc = nn.Linear(8, CLASSES)

    def forward(self, x):
        h0 = torch.tanh(self.proj(x[:, 0])).unsqueeze(0)
        out, _ = self.rnn(x, h0)
        return self.fc(out[:, -1])


@pytest.mark.parametrize("kind,pattern", [
    ("proj", r"'rnn.l0' cannot be pruned: LSTM with proj_size=3: projected hidden states"),
    ("state", r"'rnn.l0' cannot be pruned: the forward passes its own initial state"),
])
def test_refusals_are_one_line(kind, pattern):
    if kind == "state":
        model = WithState()
    else:
        model = SeqNet(nn.LSTM)
        model.rnn = nn.LSTM(FEATURES, HIDDEN, batch_first=True, proj_size=3)
        model.head = nn.Linear(3, CLASSES)
    with pytest.raises(ConfigError, match=pattern) as info:
        MaskedNetwork(model, _inputs(), ["rnn.l0"])
    assert "\n" not in str(info.value)
    # discovery skips it with the same reason (the user's initial state: the other layers stay)
    if kind == "state":
        masked = MaskedNetwork(model, _inputs())
        assert masked.layers == ("proj",)
        assert "own initial state" in masked.skipped["rnn"]
        masked.set_masks(_masks(masked, 0, p=0.6))
        masked.eval()
        result = export_pruned(masked, _inputs()[:1])
        assert (masked(_inputs()) - result.module.eval()(_inputs())).abs().max() < 1e-5
    else:
        with pytest.raises(ConfigError, match="has no prunable layer.*rnn: "):
            MaskedNetwork(model, _inputs())


@pytest.mark.parametrize("name", ["rnn.l2", "rnn.l0_reverse"])
def test_unknown_layer_index_is_refused(name):
    with pytest.raises(ConfigError, match=f"'{name}' cannot be pruned: it is not a submodule"):
        MaskedNetwork(_build(nn.GRU, None, 2, True), _inputs(), [name])


def test_recurrent_masks_are_unit_masks_for_the_drivers():
    masked = MaskedNetwork(_build(nn.LSTM, None, 2, True), _inputs())
    modules = masked.mask_modules()
    assert all(isinstance(m, RecurrentUnitMask) for m in modules.values())
    assert masked.weight_state_dict().keys() == {
        k for k in masked.state_dict() if not k.endswith(".mask")}
    with pytest.raises(ConfigError, match="recurrent score must be one of"):
        set_recurrent_score(masked, "median")


def test_oracle_picks_the_unit_whose_removal_costs_least():
    import torch.nn.functional as F

    from secateurs.pruning.oracle import candidates, oracle_choice, removal_losses

    model = _build(nn.LSTM, None, 2, True, seed=4)
    x = _inputs(12, seed=4)
    y = torch.randint(0, CLASSES, (12,), generator=torch.Generator().manual_seed(4))
    masked = MaskedNetwork(model, x)
    masked.set_masks(_masks(masked, 5))
    masked.eval()
    units = candidates(masked)
    slow = []
    for layer, unit in units:
        masks = masked.get_masks()
        masks[layer][unit] = False
        trial = MaskedNetwork(_build(nn.LSTM, None, 2, True, seed=4), x)
        trial.set_masks(masks)
        with torch.no_grad():
            slow.append(float(F.cross_entropy(trial.eval()(x), y)))
    got = removal_losses(masked, x, y, units)
    assert torch.allclose(got, torch.tensor(slow), atol=1e-5)
    assert oracle_choice(masked, x, y) == units[min(range(len(units)), key=slow.__getitem__)]
