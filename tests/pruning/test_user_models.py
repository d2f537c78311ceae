"""DropNet with physical removal on models written outside this project (``user_models.py``).

Every model is either pruned by a short DropNet run and exported exactly (the exported network's
outputs equal the masked network's in eval mode, and in train mode where the model has no random
op; its counts equal the run's records; it saves and loads), or refused with a one-line error.
Which layers are prunable is asserted by hand for each model: that is where a wrong mechanism
(heads pruned, shared or unused layers picked) shows first. The mechanism tests below then check
one class of models each against a hand-written reference.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import user_models as um
from torch import nn
from torch.utils import _pytree as pytree

from secateurs.data.splits import DatasetSplits
from secateurs.errors import ConfigError, DataError
from secateurs.pruning.counting import count_params_macs
from secateurs.pruning.dropnet import DropNet, DropNetConfig
from secateurs.pruning.importance import unit_scores
from secateurs.pruning.masks import MaskedNetwork
from secateurs.pruning.surgery import export_pruned, load_exported, save_exported
from secateurs.training import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = {"rtol": 1e-5, "atol": 1e-5}


def vectors(n, g):
    return torch.randn(n, 12, generator=g)


def images(n, g):
    return torch.randn(n, 3, 16, 16, generator=g)


def sequences(n, g):
    return torch.randn(n, 8, 6, generator=g)


def tokens(n, g):
    return torch.randint(0, 20, (n, 8), generator=g)


def signals(n, g):
    return torch.randn(n, 2, 32, generator=g)


def volumes(n, g):
    return torch.randn(n, 1, 4, 8, 8, generator=g)


MB = "features.{}.conv.{}"
# class, input, the prunable layers discovery must find, whether the model has random ops
CASES = [
    (um.HeadFirstMLP, vectors, ("fc1", "fc2"), False),
    (um.TwoHeadNet, vectors, ("trunk.0", "trunk.2"), False),
    (um.DictOutputNet, vectors, ("encoder.0", "encoder.2"), False),
    (um.TupleWithFeatures, images, ("conv1",), False),
    (um.FunctionalDropoutMLP, vectors, ("l1", "l2"), True),
    (um.TrainingBranchCNN, images, ("conv1", "conv2"), True),
    (um.ScaledTrainingBranch, vectors, ("a", "b"), False),
    (um.PerTokenMLP, sequences, ("inp", "mid"), False),
    (um.BagOfEmbeddings, tokens, ("fc",), False),
    (um.LayerNormMLP, vectors, ("fc1", "fc2"), False),
    (um.TinyTransformer, sequences, ("embed", "ff1", "ff2"), False),
    (um.DenseNetLike, images,
     ("stem", "layers.0.2", "layers.1.2", "layers.2.2", "transition"), False),
    (um.ConcatChannelsNet, images, ("b1", "b3", "mix"), False),
    (um.TinyUNet, images,
     ("enc1.0", "enc2.0", "bottleneck.0", "up2", "dec2.0", "reduce", "dec1.0"), False),
    (um.MiniMobileNetV2, images, ("features.0.0",) + tuple(
        MB.format(b, i) for b in (1, 2, 3) for i in (0, 3, 6)), True),
    (um.SmallResNet, images, ("conv1",) + tuple(
        f"layer{s}.{b}.conv{c}" for s in (1, 2) for b in (0, 1) for c in (1, 2)
        if not (s == 2 and b == 1)) + ("layer2.0.shortcut.0", "layer2.1.conv1", "layer2.1.conv2"),
     False),
    (um.NestedContainers, vectors, ("blocks.0.lin", "blocks.1.lin"), False),
    (um.Conv1dNet, signals, ("c1", "c2"), False),
    (um.SharedWeightsNet, vectors, ("inp",), False),
    (um.LSTMClassifier, sequences, ("proj", "lstm.l0"), False),
    (um.EmbeddingLSTM, tokens,
     ("rnn.l0", "rnn.l0_reverse", "rnn.l1", "rnn.l1_reverse", "fc"), False),
    (um.OptionalLayerNet, vectors, ("fc1",), False),
    (um.ScalarOpsNet, images, ("conv1", "conv2", "conv3"), False),
    (um.SECNN, images, ("conv1", "se.fc1", "se.fc2", "conv2"), False),
    (um.GroupedConvNet, images, ("reduce", "grouped", "expand"), False),
    (um.DepthwiseSeparable, images, ("stem", "dw", "pw"), False),
    (um.ConvTransposeAutoencoder, images, ("enc", "dec", "refine"), False),
    (um.LeNet, images, ("conv1", "conv2", "fc1"), False),
    (um.SequentialBNDropout, vectors, ("0", "4"), True),
    (um.Conv3dNet, volumes, ("c1", "c2"), False),
    (um.PermutedConv1dTokens, sequences, ("conv", "tok"), False),
    (um.GroupNormPReLU, images, ("c1", "c2"), False),
    (um.TextCNN, tokens, ("conv",), True),
    (um.WeightReuseMLP, vectors, ("fc1", "fc3"), False),
    (um.PositionalTokens, sequences, ("fc1",), False),
    (um.BottleneckResNet, images, ("conv1",) + tuple(
        f"layer1.{b}.conv{c}" for b in (0, 1) for c in (1, 2, 3) if b == 0
    ) + ("layer1.0.downsample.0",) + tuple(f"layer1.1.conv{c}" for c in (1, 2, 3)), False),
]
IDS = [c[0].__name__ for c in CASES]


def tiny_splits(make_input, seed=0) -> DatasetSplits:
    g = torch.Generator().manual_seed(seed)
    x = make_input(40, g)
    y = torch.randint(0, um.CLASSES, (40,), generator=g)
    return DatasetSplits("tiny", x[:24], y[:24], x[24:32], y[24:32], x[32:], y[32:], um.CLASSES)


def short_run(model, data, fraction=0.3, rounds=1):
    config = DropNetConfig(
        metric="minimum", fraction=fraction, until=None, max_rounds=rounds,
        train=TrainConfig(lr=0.05, batch_size=8, max_epochs=1, patience=None),
    )
    run = DropNet(model, data, config, seed=0)
    return run, run.run()


def assert_outputs_close(a, b):
    la, lb = pytree.tree_leaves(a), pytree.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        torch.testing.assert_close(x, y, **TOL)


def randomize_batchnorm(model, gen):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)


@pytest.mark.parametrize("cls,make_input,layers,random_ops", CASES, ids=IDS)
def test_dropnet_then_export_is_exact_and_counts_equal_the_records(
    cls, make_input, layers, random_ops, tmp_path
):
    torch.manual_seed(0)
    model = cls()
    data = tiny_splits(make_input)
    run, result = short_run(model, data)
    assert run.masked.layers == layers
    assert result.stop_reason is not None and len(result.rounds) == 2
    last = len(result.rounds) - 1
    net = run.network_at(last)
    assert len(result.dropped) > 0
    randomize_batchnorm(net, torch.Generator().manual_seed(5))
    example = data.x_train[:2]
    exported = export_pruned(net, example)
    fresh = make_input(6, torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert_outputs_close(exported.module.eval()(fresh), net.eval().forward_all(fresh))
        if not random_ops:  # train mode too (BatchNorm uses batch statistics)
            a, b = copy.deepcopy(exported.module).train(), copy.deepcopy(net).train()
            assert_outputs_close(a(fresh), b.forward_all(fresh))
    # the records are what export achieves, for every round
    for r, row in enumerate(result.rounds):
        at_r = export_pruned(run.network_at(r), example)
        assert (row["params"], row["macs"]) == (at_r.params, at_r.macs), r
    assert result.rounds[0]["params"] == exported.params_before
    assert exported.macs == count_params_macs(exported.module, example)[1]
    # the heads keep every output
    path = save_exported(tmp_path / "m.safetensors", exported)
    loaded = load_exported(path, model=cls())
    with torch.no_grad():
        assert_outputs_close(loaded(fresh), exported.module.eval()(fresh))


@pytest.mark.parametrize(
    "cls,x,message",
    [(um.DataDependentNet, torch.randn(2, 12), "cannot trace DataDependentNet with torch.fx"),
     (um.SiameseEncoder, torch.randn(2, 2, 6),
      "SiameseEncoder has no prunable layer.*enc.0: it is a shared layer, called 2 times")],
    ids=["untraceable", "all-shared"],
)
def test_models_that_cannot_be_pruned_are_refused_in_one_line(cls, x, message):
    with pytest.raises(ConfigError, match=message) as info:
        MaskedNetwork(cls(), x)
    assert "\n" not in str(info.value)
    data = DatasetSplits("tiny", x, torch.zeros(2, dtype=torch.long), x, torch.zeros(
        2, dtype=torch.long), x, torch.zeros(2, dtype=torch.long), um.CLASSES)
    with pytest.raises(ConfigError, match=message):
        DropNet(cls(), data, DropNetConfig(max_rounds=1))


class _Logits(nn.Module):
    """A head users write for other losses: one squeezed logit, too few classes, per-step."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.fc = nn.Linear(12, 10)
        self.head = nn.Linear(10, {"squeezed": 1, "few": 2, "per-step": um.CLASSES}[kind])

    def forward(self, x):
        out = self.head(F.relu(self.fc(x)))
        if self.kind == "squeezed":
            return out.squeeze(-1)
        if self.kind == "per-step":
            return out.unsqueeze(1).expand(-1, 4, -1)
        return out


@pytest.mark.parametrize("kind,message", [
    ("squeezed", r"logits of shape \(\d+,\).*needs \(\d+, 3\).*not one \(squeezed\) logit"),
    ("few", r"logits of shape \(\d+, 2\).*last layer has 2 outputs; the data has 3 classes"),
    ("per-step", r"logits of shape \(\d+, 4, 3\).*one row of class scores per sample"),
])
@pytest.mark.parametrize("lockstep", [True, False])
def test_logits_of_the_wrong_shape_are_refused_before_training(kind, message, lockstep):
    data = tiny_splits(lambda n, g: torch.randn(n, 12, generator=g))
    with pytest.raises(ConfigError, match=message) as info:
        DropNet(_Logits(kind), data, DropNetConfig(max_rounds=1)).run(lockstep=lockstep)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=message):  # the trainer alone says the same
        train(_Logits(kind), data, TrainConfig(max_epochs=1), progress=False)


class _Options(nn.Module):
    """A forward with options beside its input, traced at their defaults."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 10)
        self.fc2 = nn.Linear(10, 8)
        self.head = nn.Linear(8, um.CLASSES)

    def forward(self, x, mask=None, scale=1.0, return_features=False):
        h = F.relu(self.fc1(x))
        if mask is not None:
            h = h * mask
        h = F.relu(self.fc2(h * scale))
        out = self.head(h)
        return (out, h) if return_features else out


def test_forward_options_with_defaults_are_traced_at_their_defaults(tmp_path):
    model = _Options()
    x = torch.randn(5, 12)
    masked = MaskedNetwork(model, x[:2])
    assert masked.layers == ("fc1", "fc2")
    assert [n.op for n in masked.net.graph.nodes].count("placeholder") == 1
    assert torch.equal(masked.eval()(x), model.eval()(x))
    masked.set_masks({"fc1": torch.arange(10) % 3 != 0})
    exported = export_pruned(masked, x[:2])
    assert torch.allclose(exported.module(x), masked(x), atol=1e-6)
    data = tiny_splits(lambda n, g: torch.randn(n, 12, generator=g))
    result = DropNet(_Options(), data, DropNetConfig(until=None, max_rounds=2)).run()
    assert len(result.rounds) == 3  # rounds 0, 1 and 2


class _KeywordOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, um.CLASSES)

    def forward(self, *, x):
        return self.fc(x)


class _TwoInputs(_KeywordOnly):
    def forward(self, x, lengths):
        return self.fc(x) * lengths


@pytest.mark.parametrize("cls,message", [
    (_KeywordOnly, "_KeywordOnly.forward takes its input as the keyword-only argument 'x'"),
    (_TwoInputs, r"_TwoInputs.forward needs 2 inputs \(x, lengths\).*give the others defaults"),
])
def test_forwards_that_cannot_be_called_with_one_tensor_are_refused_up_front(cls, message):
    with pytest.raises(ConfigError, match=message):
        MaskedNetwork(cls(), torch.randn(2, 12))


class _NoGradBackbone(nn.Module):
    """A frozen 'pretrained' backbone, frozen the way many users write it."""

    def __init__(self, freeze_by: str):
        super().__init__()
        self.freeze_by = freeze_by
        self.backbone = nn.Sequential(nn.Linear(12, 16), nn.ReLU())
        self.fc = nn.Linear(16, 10)
        self.head = nn.Linear(10, um.CLASSES)
        if freeze_by == "requires_grad":
            self.backbone.requires_grad_(False)

    def forward(self, x):
        if self.freeze_by == "no_grad":
            with torch.no_grad():
                f = self.backbone(x)
        else:
            f = self.backbone(x)
        return self.head(F.relu(self.fc(f)))


def test_a_forward_that_turns_gradients_off_is_refused_not_trained_through():
    # torch.fx does not record `with torch.no_grad()`: the traced graph would train the backbone
    with pytest.raises(ConfigError, match=r"turns gradients off around backbone.0.bias, "
                       r"backbone.0.weight.*requires_grad_\(False\)"):
        MaskedNetwork(_NoGradBackbone("no_grad"), torch.randn(2, 12))
    # frozen as the message says, the backbone stays as it was through DropNet's training
    data = tiny_splits(lambda n, g: torch.randn(n, 12, generator=g))
    torch.manual_seed(0)
    model = _NoGradBackbone("requires_grad")
    run = DropNet(model, data, DropNetConfig(until=None, max_rounds=1))
    run.run()
    assert torch.equal(run.weights[0]["net.backbone.0.weight"], model.backbone[0].weight)
    assert not torch.equal(run.weights[0]["net.fc.weight"], model.fc.weight)


def test_a_model_failing_on_the_example_names_the_layer_and_its_error(capfd):
    with pytest.raises(ConfigError, match=r"at fc1 \(RuntimeError: mat1 and mat2 shapes cannot "
                       r"be multiplied \(2x16 and 12x10\)\)") as info:
        MaskedNetwork(_Options(), torch.randn(2, 16))
    assert "\n" not in str(info.value)
    assert capfd.readouterr().err == ""  # no traceback printed beside the one-line error


class _TiedDecoder(nn.Module):
    """Language-model style weight tying: the decoder's weight is the embedding's."""

    def __init__(self, vocab=20, d=8):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.fc = nn.Linear(d, d)
        self.mid = nn.Linear(d, 12)
        self.back = nn.Linear(12, d)
        self.dec = nn.Linear(d, vocab, bias=False)
        self.dec.weight = self.emb.weight
        self.head = nn.Linear(vocab, um.CLASSES)

    def forward(self, x):
        h = F.relu(self.fc(self.emb(x).mean(1)))
        h = F.relu(self.back(F.relu(self.mid(h))))
        return self.head(self.dec(h))


class _TiedLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 16)
        self.fc2 = nn.Linear(16, 16)
        self.fc3 = nn.Linear(16, 16)
        self.fc3.weight = self.fc2.weight
        self.head = nn.Linear(16, um.CLASSES)

    def forward(self, x):
        return self.head(F.relu(self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))))


@pytest.mark.parametrize("cls,x,prunable,kept", [
    (_TiedDecoder, torch.randint(0, 20, (4, 7)), ("fc", "mid"), "back"),
    (_TiedLayers, torch.randn(4, 12), ("fc1",), "fc1"),
])
def test_tied_weights_stay_tied_and_export_never_grows(cls, x, prunable, kept):
    masked = MaskedNetwork(cls(), x[:2])
    assert set(prunable) <= set(masked.layers)
    for layer, why in masked.skipped.items():
        if layer in ("fc2", "fc3"):
            assert "tied to" in why
    masks = masked.get_masks()
    for layer in masked.layers:
        masks[layer][: len(masks[layer]) // 2] = False
    masked.set_masks(masks)
    result = export_pruned(masked, x[:2])
    assert torch.allclose(result.module(x), masked.eval()(x), atol=1e-6)
    assert result.params < result.params_before or not set(masked.layers) - {kept}
    assert result.params <= result.params_before
    # the layer feeding a tied consumer keeps its units (zeroed), and the tie survives export
    assert any("tied to" in why for why in result.kept_because.get(kept, []))
    module = result.module
    if cls is _TiedDecoder:
        assert module.dec.weight is module.emb.weight and module.back.out_features == 8
    else:
        assert module.fc2.weight is module.fc3.weight and module.fc1.out_features == 16


def _weight_norm_old(layer):
    with pytest.warns(FutureWarning):  # torch deprecates the hook form, users still have it
        return torch.nn.utils.weight_norm(layer)


PARAMETRIZATIONS = {
    "weight_norm": torch.nn.utils.parametrizations.weight_norm,
    "spectral_norm": torch.nn.utils.parametrizations.spectral_norm,
    "old weight_norm hook": _weight_norm_old,
}


class _NormedTCN(nn.Module):
    """TCN-style: a parametrized conv in the middle, its input a plain conv, a residual sum."""

    def __init__(self, wrap):
        super().__init__()
        self.inp = nn.Conv1d(4, 8, 3, padding=1)
        self.mid = wrap(nn.Conv1d(8, 8, 3, padding=1))
        self.down = nn.Conv1d(4, 8, 1)
        self.pre = nn.Linear(8, 10)
        self.head = nn.Linear(10, um.CLASSES)

    def forward(self, x):  # (N, 4, T)
        h = F.relu(self.mid(F.relu(self.inp(x))) + self.down(x))
        return self.head(F.relu(self.pre(h.mean(-1))))


@pytest.mark.parametrize("kind", sorted(PARAMETRIZATIONS))
def test_a_parametrized_layer_and_its_inputs_are_kept_and_export_is_exact(kind):
    torch.manual_seed(0)
    model = _NormedTCN(PARAMETRIZATIONS[kind])
    x = torch.randn(6, 4, 9)
    masked = MaskedNetwork(model, x[:2])
    assert "mid" not in masked.layers and "computed by" in masked.skipped["mid"]
    assert "remove_parametrizations" in masked.skipped["mid"]
    assert {"inp", "pre"} <= set(masked.layers)
    masks = masked.get_masks()
    for layer in masked.layers:
        masks[layer][::2] = False
    masked.set_masks(masks)
    result = export_pruned(masked.eval(), x[:2])
    with torch.no_grad():
        assert torch.allclose(result.module.eval()(x), masked(x), atol=1e-5)
    assert result.module.inp.out_channels == 8  # 'mid' reads them: its input stays whole
    assert any("computed by" in why for why in result.kept_because["inp"])
    assert result.module.pre.out_features == 5  # elsewhere pruning goes on
    assert "num_users" not in result.summary()  # ops as written, not in fx notation


def test_a_parametrized_recurrent_weight_keeps_its_units():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(6, 10, batch_first=True)
            torch.nn.utils.parametrize.register_parametrization(
                self.lstm, "weight_hh_l0", nn.Identity()
            )
            self.fc = nn.Linear(10, 7)
            self.head = nn.Linear(7, um.CLASSES)

        def forward(self, x):
            out, _ = self.lstm(x)
            return self.head(F.relu(self.fc(out[:, -1])))

    masked = MaskedNetwork(Net(), torch.randn(2, 5, 6))
    assert masked.layers == ("fc",)
    assert "weight_hh_l0 (Identity) is computed by a parametrization" in masked.skipped["lstm"]


def test_a_reused_weight_keeps_its_layer_and_a_bare_parameter_keeps_the_class():
    masked = MaskedNetwork(um.WeightReuseMLP(), torch.randn(2, 12))
    assert "reads its weight directly (self.fc2.weight" in masked.skipped["fc2"]
    torch.manual_seed(0)
    x = torch.randn(4, 8, 6)
    masked = MaskedNetwork(um.PositionalTokens(), x[:2])
    masked.set_masks({"fc1": torch.arange(10) % 3 != 0})
    result = export_pruned(masked.eval(), x[:2])
    assert type(result.module) is um.PositionalTokens and result.module.fc1.out_features == 6
    assert torch.equal(result.module.pos, masked.original.pos)
    with torch.no_grad():
        assert torch.allclose(result.module(x), masked(x), atol=1e-6)


class _AlwaysOnDropout(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.how = how
        self.fc = nn.Linear(12, 10)
        self.head = nn.Linear(10, um.CLASSES)

    def forward(self, x):
        h = F.relu(self.fc(x))
        if self.how == "default":
            h = F.dropout(h, 0.3)  # training=True by default: random in eval mode too
        elif self.how == "2d":
            h = F.dropout2d(h.unsqueeze(-1), 0.2).squeeze(-1)
        else:
            h = F.dropout(h, 0.3, training=self.training)
        return self.head(h)


class _NamedCode(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(12, 10)
        self.code = nn.Linear(10, 6)  # an autoencoder's latent layer
        self.head = nn.Linear(6, um.CLASSES)

    def forward(self, x):
        return self.head(F.relu(self.code(F.relu(self.enc(x)))))


class _ModuleInForward(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4 * 14 * 14, um.CLASSES)

    def forward(self, x):
        return self.head(nn.Flatten()(F.relu(self.conv(x))))


class _StateFromSizes(nn.Module):
    def __init__(self, pass_zeros):
        super().__init__()
        self.pass_zeros = pass_zeros
        self.lstm = nn.LSTM(6, 10, batch_first=True)
        self.head = nn.Linear(10, um.CLASSES)

    def forward(self, x):
        if self.pass_zeros:  # the PyTorch tutorials' zero state, with a constant batch size
            h0 = torch.zeros(1, 2, 10)
            out, _ = self.lstm(x, (h0, torch.zeros(1, 2, 10)))
            return self.head(out[:, -1])
        out, _ = self.lstm(x)
        return self.head(out[:, -1] + torch.zeros(x.size(0), 10))  # sizes off the input


class _Packed(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(6, 10, batch_first=True)
        self.head = nn.Linear(10, um.CLASSES)

    def forward(self, x):
        lengths = (x.abs().sum(-1) > 0).sum(1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                   enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return self.head(h[-1])


@pytest.mark.parametrize("model,x,message", [
    (_AlwaysOnDropout("default"), torch.randn(2, 12),
     "calls dropout with training=True in eval mode too .node 'dropout'.*training=self.training"),
    (_AlwaysOnDropout("2d"), torch.randn(2, 12), "calls dropout2d with training=True"),
    (_NamedCode(), torch.randn(2, 12), "attribute named 'code'.*rename it"),
    (_ModuleInForward(), torch.randn(2, 3, 16, 16), "created inside forward.*in __init__"),
    (_StateFromSizes(False), torch.randn(2, 5, 6), r"x.new_zeros\(x.size\(0\), h\)"),
    (_StateFromSizes(True), torch.randn(2, 5, 6), "all zeros, which is the default, so drop"),
    (_Packed(), torch.randn(2, 5, 6), "packed sequences cannot be traced.*padded batches"),
], ids=["dropout", "dropout2d", "code", "flatten", "zeros-from-sizes", "zero-state", "packed"])
def test_common_idioms_that_cannot_be_masked_say_the_fix(model, x, message):
    with pytest.raises(ConfigError, match=message) as info:
        MaskedNetwork(model, x)
    assert "\n" not in str(info.value)


def test_functional_dropout_that_follows_the_mode_is_accepted():
    assert MaskedNetwork(_AlwaysOnDropout("mode"), torch.randn(2, 12)).layers == ("fc",)


def test_a_float64_export_loads_in_float64_and_says_so_for_a_float32_model(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(4, 12, dtype=torch.float64)
    masked = MaskedNetwork(um.HeadFirstMLP().double(), x[:2]).eval()
    masked.set_masks({"fc1": torch.arange(masked.widths["fc1"]) % 2 == 0})
    path = save_exported(tmp_path / "m.safetensors", export_pruned(masked, x[:2]))
    with pytest.raises(DataError, match="is a float64 export but the model given has float32 "
                                        r"weights; build it in float64 \(model.to"):
        load_exported(path, model=um.HeadFirstMLP())
    loaded = load_exported(path, model=um.HeadFirstMLP().double())
    with torch.no_grad():
        assert torch.allclose(loaded(x), masked(x))


class _NormAfter(nn.Module):
    """Conv -> norm -> ReLU, or Linear -> LayerNorm -> GELU: the norm is part of the unit."""

    def __init__(self, norm: str):
        super().__init__()
        self.kind = norm
        if norm == "layer":
            self.c1, self.norm = nn.Linear(12, 8), nn.LayerNorm(8)
        else:
            self.c1 = nn.Conv2d(3, 8, 3, padding=1)
            self.norm = {
                "instance": nn.InstanceNorm2d(8, affine=True),
                "instance-plain": nn.InstanceNorm2d(8),
                "group-per-channel": nn.GroupNorm(8, 8),
                "group": nn.GroupNorm(2, 8),
                "batch": nn.BatchNorm2d(8),
            }[norm]
        self.c2 = nn.Linear(8, 6) if norm == "layer" else nn.Conv2d(8, 6, 3, padding=1)
        self.head = nn.Linear(6, um.CLASSES)

    def forward(self, x):
        h = F.relu(self.norm(self.c1(x)))
        h = F.relu(self.c2(h))
        return self.head(h if self.kind == "layer" else h.mean((2, 3)))


@pytest.mark.parametrize("norm,removed", [
    ("instance", True), ("instance-plain", True), ("group-per-channel", True), ("batch", True),
    ("group", False), ("layer", False),
])
def test_a_norm_after_a_layer_is_inside_the_unit_and_removed_with_it_where_it_can_be(
    norm, removed
):
    torch.manual_seed(0)
    model = _NormAfter(norm)
    x = torch.randn(6, 12) if norm == "layer" else torch.randn(6, 3, 8, 8)
    with torch.no_grad():
        if getattr(model.norm, "bias", None) is not None:
            model.norm.bias.uniform_(0.2, 0.8)  # a trained shift: a zero input is not a zero unit
    masked = MaskedNetwork(model, x[:2]).eval()
    assert [n.target for n in masked.flow.tails["c1"][1:]][:1] == ["norm"]
    masks = masked.get_masks()
    masks["c1"][[0, 3, 5]] = False
    masked.set_masks(masks)
    seen = {}
    mask = masked.net.get_submodule("secateurs_unit_masks.c1")
    handle = mask.register_forward_hook(lambda m, i, o: seen.update(out=o))
    with torch.no_grad():
        masked(x)
    handle.remove()
    unit_dim = -1 if norm == "layer" else 1
    dropped = seen["out"].index_select(unit_dim, torch.tensor([0, 3, 5]))
    assert torch.count_nonzero(dropped) == 0  # what follows sees the dropped units at zero
    with torch.no_grad():
        post = F.relu(model.norm(model.c1(x)))  # the score is the post-activation mean
    expected = post.abs().mean(0) if norm == "layer" else post.abs().mean((0, 2, 3))
    alive = masks["c1"]
    got = unit_scores("activation", masked, x)["c1"]
    torch.testing.assert_close(got[alive], expected[alive], rtol=1e-5, atol=1e-6)
    result = export_pruned(masked, x[:2])
    for mode in ("eval", "train"):
        getattr(masked, mode)()
        module = getattr(copy.deepcopy(result.module), mode)()
        with torch.no_grad():
            assert torch.allclose(module(x), masked(x), atol=1e-5), mode
    width = result.module.c1.out_features if norm == "layer" else result.module.c1.out_channels
    assert width == (5 if removed else 8)
    if not removed:
        assert any("normalises its units together" in w for w in result.kept_because["c1"])


class _MaxOverTime(nn.Module):
    """Kim's TextCNN pooling, written the four ways people write it."""

    def __init__(self, how):
        super().__init__()
        self.how = how
        self.emb = nn.Embedding(50, 8)
        self.conv = nn.Conv1d(8, 6, 3)
        self.fc = nn.Linear(6, um.CLASSES)

    def forward(self, x):
        h = F.relu(self.conv(self.emb(x).transpose(1, 2)))
        if self.how == "index":
            h = h.max(dim=2)[0]
        elif self.how == "values":
            h = h.max(dim=2).values
        elif self.how == "torch.max":
            h = torch.max(h, 2)[0]
        else:
            h = h.amax(dim=2)
        return self.fc(h)


@pytest.mark.parametrize("how", ["index", "values", "torch.max", "amax"])
def test_max_over_time_keeps_the_channels_so_export_removes_them(how):
    torch.manual_seed(0)
    x = torch.randint(0, 50, (4, 12))
    masked = MaskedNetwork(_MaxOverTime(how), x[:2])
    masked.set_masks({"conv": torch.tensor([1, 0, 1, 0, 1, 1]).bool()})
    result = export_pruned(masked.eval(), x[:2])
    assert result.module.conv.out_channels == 4 and result.module.fc.in_features == 4
    with torch.no_grad():
        assert torch.allclose(result.module(x), masked(x), atol=1e-6)


# ----------------------------------------------------------------- 1. output layers
@pytest.mark.parametrize(
    "cls,heads",
    [(um.HeadFirstMLP, ["classifier"]), (um.TwoHeadNet, ["head_a", "head_b"]),
     (um.DictOutputNet, ["proj", "cls"]), (um.NestedContainers, ["heads.main"]),
     (um.TupleWithFeatures, ["conv2", "fc"])],
)
def test_output_layers_are_never_prunable_wherever_they_are_defined(cls, heads):
    masked = MaskedNetwork(cls(), vectors(2, torch.Generator()) if cls is not um.TupleWithFeatures
                           else images(2, torch.Generator()))
    for head in heads:
        assert head not in masked.layers
        assert "output layer" in masked.skipped[head]
    with pytest.raises(ConfigError, match=f"'{heads[0]}' cannot be pruned: it is an output layer"):
        MaskedNetwork(cls(), torch.randn(2, 12) if cls is not um.TupleWithFeatures
                      else torch.randn(2, 3, 16, 16), layers=[heads[0]])


def test_a_hidden_layer_returned_as_features_says_how_to_prune_it():
    masked = MaskedNetwork(um.TupleWithFeatures(), images(2, torch.Generator()))
    assert "return the logits alone" in masked.skipped["conv2"]  # feeds fc and is returned
    assert "return the logits alone" not in masked.skipped["fc"]  # the head itself
    assert "return the logits alone" not in MaskedNetwork(
        um.HeadFirstMLP(), vectors(2, torch.Generator())
    ).skipped["classifier"]  # one output: nothing to say


def test_the_head_defined_first_keeps_all_its_logits_after_dropnet():
    run, result = short_run(um.HeadFirstMLP(), tiny_splits(vectors), fraction=0.5, rounds=2)
    exported = export_pruned(run.network_at(2), torch.randn(2, 12))
    assert exported.module.classifier.out_features == um.CLASSES
    assert exported.module.fc2.out_features < 10  # the last hidden layer was pruned


# ----------------------------------------------------------------- 2. tuple and dict outputs
def test_logits_are_the_first_tensor_or_the_named_output():
    x = torch.randn(3, 12)
    two = um.TwoHeadNet()
    masked = MaskedNetwork(two, x)
    with torch.no_grad():
        assert torch.equal(masked(x), two(x)[0])
        assert torch.equal(MaskedNetwork(two, x, output=1)(x), two(x)[1])
    named = um.DictOutputNet()  # secateurs_output = "logits" on the class
    with torch.no_grad():
        assert torch.equal(MaskedNetwork(named, x)(x), named(x)["logits"])
        assert torch.equal(MaskedNetwork(named, x, output="embedding")(x), named(x)["embedding"])
    with pytest.raises(ConfigError, match=r"output='scores' is not among the model's outputs"):
        MaskedNetwork(named, x, output="scores")


# ----------------------------------------------------------------- 3. train and eval mode
def test_functional_dropout_follows_the_mode_and_scores_are_deterministic():
    torch.manual_seed(0)
    model = um.FunctionalDropoutMLP()
    x = torch.randn(64, 12)
    masked = MaskedNetwork(model, x[:2])  # wrapped in train mode
    assert masked.mode_dependent
    with torch.no_grad():
        masked.eval()
        assert torch.equal(masked(x), model.eval()(x))  # no dropout in eval
        masked.train()
        torch.manual_seed(1)
        train_out = masked(x)
        torch.manual_seed(1)
        assert torch.equal(train_out, model.train()(x))  # the same dropout as the model's
        assert not torch.allclose(train_out, masked.eval()(x))
    s1 = unit_scores("activation", masked, x)
    s2 = unit_scores("activation", masked, x)
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_a_training_branch_runs_in_train_mode_only():
    model, x = um.ScaledTrainingBranch(), torch.randn(5, 12)
    masked = MaskedNetwork(model.eval(), x)  # wrapped in eval mode this time
    masked.set_masks({"a": torch.tensor([1] * 7 + [0] * 7)})
    ref_mask = torch.tensor([1.0] * 7 + [0.0] * 7)

    def reference(train):
        h = torch.relu(model.a(x)) * ref_mask * (0.5 if train else 1.0)
        return model.head(torch.relu(model.b(h)))

    with torch.no_grad():
        torch.testing.assert_close(masked.train()(x), reference(True))
        torch.testing.assert_close(masked.eval()(x), reference(False))
        exported = export_pruned(masked, x).module
        torch.testing.assert_close(exported.train()(x), reference(True))
        torch.testing.assert_close(exported.eval()(x), reference(False))


# ----------------------------------------------------------------- 4. units on the right axis
def test_a_per_token_linear_masks_its_features_not_the_time_steps():
    model = um.PerTokenMLP()  # T == hidden == 8: a mask on the wrong axis would fit
    x = torch.randn(4, 8, 6)
    masked = MaskedNetwork(model, x).eval()
    dead = torch.tensor([1, 0, 1, 1, 0, 1, 1, 1], dtype=torch.bool)
    masked.set_masks({"inp": dead})
    assert masked.mask_modules()["inp"].dim == -1
    with torch.no_grad():
        h = F.gelu(model.inp(x)) * dead.float()  # (N, T, H) * (H,)
        want = model.out(F.relu(model.mid(h)).mean(1))
        torch.testing.assert_close(masked(x), want)
        exported = export_pruned(masked, x)
        assert exported.module.inp.out_features == 6 and exported.module.mid.in_features == 6
        torch.testing.assert_close(exported.module(x), want, **TOL)


# ----------------------------------------------------------------- 5. integer inputs
def test_an_embedding_model_export_loads_with_its_integer_input(tmp_path):
    model = um.BagOfEmbeddings()
    x = torch.randint(0, 20, (3, 8))
    masked = MaskedNetwork(model, x).eval()
    masked.set_masks({"fc": torch.tensor([1, 0] * 6)})
    result = export_pruned(masked, x)
    assert result.input_dtype == "int64"
    for path in (tmp_path / "one.safetensors", tmp_path / "dir"):
        loaded = load_exported(save_exported(path, result), model=um.BagOfEmbeddings())
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), masked(x), **TOL)


# ----------------------------------------------------------------- 6. achieved cost
def test_records_count_units_export_must_keep_as_kept():
    run, result = short_run(um.LayerNormMLP(), tiny_splits(vectors), fraction=0.5, rounds=2)
    exported = export_pruned(run.network_at(2), torch.randn(2, 12))
    assert "fc1" in exported.kept_because and "ln1" in exported.kept_because["fc1"][0]
    assert exported.removed["fc1"] == [] and len(exported.zeroed["fc1"]) > 0
    assert result.rounds[2]["params"] == exported.params
    # fc1's dead units stay: only fc2's removal is saved (fc2: 12 -> 12 - dropped units)
    dropped_fc2 = 12 - result.rounds[2]["widths"]["fc2"]
    assert result.rounds[0]["params"] - result.rounds[2]["params"] == dropped_fc2 * (16 + 1 + 3)


# ----------------------------------------------------------------- 7. discovery
def test_shared_and_unused_layers_are_left_out_with_their_reason():
    shared = MaskedNetwork(um.SharedWeightsNet(), torch.randn(2, 12))
    assert "shared layer, called 2 times" in shared.skipped["shared"]
    with pytest.raises(ConfigError, match="'shared' cannot be pruned: it is a shared layer"):
        MaskedNetwork(um.SharedWeightsNet(), torch.randn(2, 12), layers=["inp", "shared"])
    optional = MaskedNetwork(um.OptionalLayerNet(), torch.randn(2, 12))
    assert optional.skipped["extra"] == "forward does not call it"
    lstm = MaskedNetwork(um.EmbeddingLSTM(), torch.randint(0, 20, (2, 7)))
    assert lstm.layers[:2] == ("rnn.l0", "rnn.l0_reverse")  # recurrent units: docs/recurrent.md


def test_depthwise_convolutions_are_coupled_with_their_input_and_removed_together():
    model = um.DepthwiseSeparable()
    x = torch.randn(2, 3, 16, 16)
    masked = MaskedNetwork(model, x).eval()
    assert masked.coupled_groups == [("stem", "dw")]
    dead_both = torch.tensor([1, 0, 1, 0, 1, 1, 1, 1], dtype=torch.bool)
    masked.set_masks({"stem": dead_both, "dw": dead_both & torch.tensor([1] * 7 + [0]).bool()})
    result = export_pruned(masked, x)
    assert result.removed["dw"] == [1, 3] and result.zeroed["dw"] == [7]
    dw = result.module.dw
    assert dw.groups == dw.in_channels == dw.out_channels == 6
    with torch.no_grad():
        torch.testing.assert_close(result.module.eval()(x), masked(x), **TOL)
    mobilenet = MaskedNetwork(um.MiniMobileNetV2(), x)
    assert (MB.format(1, 0), MB.format(1, 3)) in mobilenet.coupled_groups


def test_grouped_convolutions_are_accepted_and_their_channels_kept():
    masked = MaskedNetwork(um.GroupedConvNet(), torch.randn(2, 3, 16, 16)).eval()
    masked.set_masks({x: torch.tensor([1, 0] * (w // 2)) for x, w in masked.widths.items()})
    result = export_pruned(masked, torch.randn(2, 3, 16, 16))
    assert "group by group" in result.kept_because["reduce"][0]
    assert "group by group" in result.kept_because["grouped"][0]
    assert result.removed["expand"] == list(range(1, 12, 2))


# ----------------------------------------------------------------- 8. channel-preserving ops
@pytest.mark.parametrize("cls", [um.TinyUNet, um.ScalarOpsNet, um.ConvTransposeAutoencoder,
                                 um.ConcatChannelsNet, um.Conv3dNet, um.PermutedConv1dTokens])
def test_channels_through_interpolate_scalars_transposed_convs_and_cat_are_removed(cls):
    make = {um.Conv3dNet: volumes, um.PermutedConv1dTokens: sequences}.get(cls, images)
    x = make(2, torch.Generator().manual_seed(0))
    masked = MaskedNetwork(cls(), x).eval()
    g = torch.Generator().manual_seed(1)
    masks = {}
    for layer, w in masked.widths.items():
        alive = torch.rand(w, generator=g) > 0.4
        alive[0] = True
        masks[layer] = alive
    masked.set_masks(masks)
    # the same masks on every layer of a coupled group, so that every dead unit can go
    for group in masked.coupled_groups:
        masked.set_masks({layer: masks[group[0]] for layer in group})
    result = export_pruned(masked, x)
    assert result.kept_because == {}
    assert all(result.zeroed[layer] == [] for layer in masked.layers)
    alive = masked.get_masks()
    assert sum(map(len, result.removed.values())) == sum(int((~m).sum()) for m in alive.values())
    fresh = make(3, torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(result.module.eval()(fresh), masked(fresh), **TOL)


def test_a_hard_coded_flatten_width_keeps_the_channels_instead_of_failing():
    masked = MaskedNetwork(um.LeNet(), torch.randn(2, 3, 16, 16)).eval()
    masked.set_masks({"conv2": torch.tensor([1, 0] * 8), "conv1": torch.tensor([1, 0, 1, 1, 1, 1])})
    result = export_pruned(masked, torch.randn(2, 3, 16, 16))
    assert "hard-codes their number (64)" in result.kept_because["conv2"][0]
    assert result.removed["conv1"] == [1]


# ----------------------------------------------------------------- 9. MACs of every layer type
def test_macs_count_conv1d_transposed_conv_and_lstm_layers():
    conv1d = um.Conv1dNet()
    x = torch.randn(2, 2, 32)
    # c1: 8 x 32 outputs x 2 x 5; c2: 8 x 16 x 8 x 3; fc: 8 x 3
    assert count_params_macs(conv1d, x)[1] == 8 * 32 * 10 + 8 * 16 * 24 + 24
    auto = um.ConvTransposeAutoencoder()
    # enc: 8 x 8 x 8 x 27; dec (transposed): each of 8 x 8 x 8 inputs x 6 x 9; refine: 6 x 8 x 8 x 54
    want = 8 * 64 * 27 + 8 * 64 * 54 + 6 * 64 * 54 + 6 * 3
    assert count_params_macs(auto, torch.randn(2, 3, 16, 16))[1] == want
    lstm = um.LSTMClassifier()
    # proj: 8 steps x 6 x 8; LSTM: 8 steps x 4 x 10 x (8 + 10); head: 10 x 3
    assert count_params_macs(lstm, torch.randn(2, 8, 6))[1] == 8 * 48 + 8 * 4 * 10 * 18 + 30


class _Attention(nn.Module):
    def __init__(self, need_weights: bool):
        super().__init__()
        self.need_weights = need_weights
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=self.need_weights)[0].mean(1)


@pytest.mark.parametrize("need_weights", [False, True])
def test_macs_count_attention_in_its_fused_and_plain_forms(need_weights):
    # 7 tokens of width 8: Q, K, V projections 3 x 7 x 8 x 8; scores 7 x 7 x 8; weighted sum of V
    # 7 x 7 x 8; output projection 7 x 8 x 8 (the fused eval kernel used to count 0 for the middle)
    want = 3 * 7 * 64 + 2 * 7 * 7 * 8 + 7 * 64
    assert count_params_macs(_Attention(need_weights), torch.randn(3, 7, 8))[1] == want
    encoder = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    # the same attention, then the feed-forward block: 7 x 8 x 16 twice
    assert count_params_macs(encoder, torch.randn(3, 7, 8))[1] == want + 2 * 7 * 8 * 16


@pytest.mark.parametrize("cls", [um.MiniMobileNetV2, um.DepthwiseSeparable, um.SmallResNet,
                                 um.BottleneckResNet, um.TinyUNet, um.DenseNetLike])
def test_coupled_groups_agree_with_torch_pruning(cls):
    """Torch-Pruning's DependencyGraph (an independent tool) couples the same prunable layers:
    residual additions and depthwise convolutions with their inputs; concatenations couple none."""
    import torch_pruning as tp

    model, x = cls(), torch.randn(1, 3, 16, 16)
    layers = list(MaskedNetwork(model, x).layers)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    names = {m: n for n, m in model.named_modules()}
    groups = set()
    for layer in layers:
        group = graph.get_pruning_group(
            model.get_submodule(layer), tp.prune_conv_out_channels, idxs=[0]
        )
        coupled = {
            names[item.dep.target.module] for item in group
            if names.get(item.dep.target.module) in layers
            and item.dep.handler.__name__ == "prune_out_channels"
        }
        if len(coupled) > 1:
            groups.add(tuple(sorted(coupled, key=layers.index)))
    expected = sorted(groups, key=lambda g: layers.index(g[0]))
    assert MaskedNetwork(cls(), x).coupled_groups == expected


def test_loading_a_custom_export_without_its_class_says_how(tmp_path):
    masked = MaskedNetwork(_Options(), torch.randn(2, 12))
    path = save_exported(tmp_path / "m.safetensors", export_pruned(masked, torch.randn(2, 12)))
    with pytest.raises(ConfigError, match=r"custom model \(_Options, not one of `secateurs "
                       r"models`\).*load_exported\(path, model=_Options\(...\)\)"):
        load_exported(path)
    assert isinstance(load_exported(path, model=_Options()), nn.Module)
