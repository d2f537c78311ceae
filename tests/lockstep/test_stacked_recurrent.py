"""Recurrent modules, embeddings and shape operations in the stacked engine. Every check compares
K stacked networks against each network run alone by PyTorch (nn.LSTM's own kernels, the
masked network's own forward, the separate trainer)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import secateurs.pruning.lockstep  # noqa: F401  (registers the masked recurrent stacker)
from secateurs.data.splits import DatasetSplits
from secateurs.pruning.importance import activation_stats
from secateurs.pruning.lockstep import lockstep_activation_stats, masked_unsupported_reason
from secateurs.pruning.masks import MaskedNetwork
from secateurs.pruning.recurrent import set_recurrent_score
from secateurs.training import TrainConfig, train
from secateurs.training.lockstep import LockstepUnsupported, StackedNetwork, train_lockstep

CELLS = {"lstm": (nn.LSTM, {}), "gru": (nn.GRU, {}), "rnn_tanh": (nn.RNN, {}),
         "rnn_relu": (nn.RNN, {"nonlinearity": "relu"})}


class SeqNet(nn.Module):
    """A recurrent module over (N, T, F) inputs, read the ways people read it."""

    def __init__(self, cell="lstm", layers=1, bidirectional=False, batch_first=True, bias=True,
                 readout="last", dropout=0.0, features=5, hidden=6, classes=3):
        super().__init__()
        kind, extra = CELLS[cell]
        self.batch_first, self.readout, self.lstm = batch_first, readout, cell == "lstm"
        self.rnn = kind(features, hidden, num_layers=layers, bidirectional=bidirectional,
                        batch_first=batch_first, bias=bias, dropout=dropout, **extra)
        width = hidden * (2 if bidirectional else 1)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        if not self.batch_first:
            x = x.transpose(0, 1)
        out, state = self.rnn(x)
        if self.readout == "state":  # the last layer's final state, both directions
            h = state[0] if self.lstm else state  # (layers x directions, N, hidden)
            if self.rnn.bidirectional:
                return self.head(torch.cat([h[-2], h[-1]], dim=1))
            return self.head(h[-1])
        if self.readout == "mean":
            return self.head(out.mean(1 if self.batch_first else 0))
        return self.head(out[:, -1] if self.batch_first else out[-1])


VARIANTS = [
    dict(cell=c, layers=n, bidirectional=b, batch_first=f, bias=bias, readout=r)
    for (c, n, b, f, bias, r) in [
        ("lstm", 1, False, True, True, "last"),
        ("lstm", 2, True, False, True, "state"),
        ("lstm", 2, True, True, False, "mean"),
        ("gru", 1, False, False, True, "state"),
        ("gru", 2, True, True, True, "last"),
        ("gru", 1, False, True, False, "mean"),
        ("rnn_tanh", 2, False, True, True, "state"),
        ("rnn_relu", 1, True, False, True, "last"),
    ]
]


def _ids(v):
    return "-".join(f"{k}={val}" for k, val in v.items())


def models(k: int, **kw) -> list[nn.Module]:
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(SeqNet(**kw))
    return out


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_stacked_recurrent_networks_give_each_networks_own_logits_and_gradients(variant):
    nets = models(3, **variant)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 7, 5, generator=gen)  # a batch of 4 sequences per network
    y = torch.randint(0, 3, (3, 4), generator=gen)
    stacked = StackedNetwork(nets)
    logits = stacked(x, "kb")
    for i, net in enumerate(nets):
        want = net(x[i])
        assert torch.allclose(logits[i], want, atol=1e-6), i
        F.cross_entropy(want, y[i]).backward()
    shared = stacked(x[0], "shared")  # one batch read by every network
    for i, net in enumerate(nets):
        with torch.no_grad():
            assert torch.allclose(shared[i], net(x[0]), atol=1e-6)
    F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(1).sum().backward()
    for name, p in stacked.named_parameters():
        module, tensor = name.removeprefix("ops.").split(".", 1)
        for i, net in enumerate(nets):
            want = net.get_submodule(module.replace("__", ".")).get_parameter(tensor).grad
            assert torch.allclose(p.grad[i], want, atol=1e-6), (name, i)


def test_write_back_and_select_keep_each_networks_weights():
    nets = models(3, cell="gru", layers=2, bidirectional=True)
    stacked = StackedNetwork(nets)
    with torch.no_grad():
        for p in stacked.parameters():
            p.add_(torch.arange(3, dtype=p.dtype).view(3, *(1,) * (p.dim() - 1)))
    stacked.select([2, 0])
    twins = models(3, cell="gru", layers=2, bidirectional=True)
    for position, original in enumerate([2, 0]):
        stacked.write_back(twins[original], position)
        for (name, got), (_, before) in zip(twins[original].state_dict().items(),
                                            nets[original].state_dict().items(), strict=True):
            assert torch.equal(got, before + original), name
    x = torch.randn(4, 7, 5)
    with torch.no_grad():
        out = stacked(x)
        assert torch.allclose(out[0], twins[2](x), atol=1e-6)
        assert torch.allclose(out[1], twins[0](x), atol=1e-6)


def _masked(variant, k: int, gen) -> list[MaskedNetwork]:
    out = []
    for net in models(k, **variant):
        masked = MaskedNetwork(net, torch.zeros(2, 7, 5))
        masks = {}
        for layer, width in masked.widths.items():
            alive = torch.rand(width, generator=gen) > 0.4
            alive[0] = True
            masks[layer] = alive
        masked.set_masks(masks)
        out.append(masked)
    return out


@pytest.mark.parametrize("variant", VARIANTS[:5], ids=_ids)
def test_masked_recurrent_units_stack_as_each_masked_network(variant):
    gen = torch.Generator().manual_seed(2)
    nets = _masked(variant, 3, gen)
    assert masked_unsupported_reason(nets[0], torch.zeros(2, 7, 5)) is None
    stacked = StackedNetwork([n.net for n in nets])
    x = torch.randn(3, 4, 7, 5, generator=gen)
    y = torch.randint(0, 3, (3, 4), generator=gen)
    logits = stacked(x, "kb")
    F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(1).sum().backward()
    for i, net in enumerate(nets):
        want = net(x[i])
        assert torch.allclose(logits[i], want, atol=1e-6), i
        F.cross_entropy(want, y[i]).backward()
        rnn_grads = dict(net.net.rnn.named_parameters())
        key = "secateurs_recurrent__rnn"
        for name, p in stacked.ops[key].named_parameters():
            assert torch.allclose(p.grad[i], rnn_grads[name].grad, atol=1e-6), (name, i)
            if name.startswith("weight_hh"):  # a dropped unit's recurrent weights learn nothing
                layer = f"rnn.l{name.split('_l')[1]}"
                dead = ~net.get_masks()[layer]
                assert (p.grad[i][:, dead] == 0).all()


@pytest.mark.parametrize("score", ["abs_mean", "mean_abs"])
def test_batched_scores_of_recurrent_units_are_each_networks_own(score):
    gen = torch.Generator().manual_seed(3)
    nets = _masked(dict(cell="lstm", layers=2, bidirectional=True), 3, gen)
    for n in nets:
        set_recurrent_score(n, score)
    x = torch.randn(50, 7, 5, generator=gen)
    got = lockstep_activation_stats(nets, x, batch_size=16)
    for net, stats in zip(nets, got, strict=True):
        want = activation_stats(net, x)
        for layer in net.layers:
            assert torch.allclose(stats.mean_abs[layer], want.mean_abs[layer], atol=1e-6), layer
            assert torch.allclose(stats.apoz[layer], want.apoz[layer]), layer
            assert (stats.mean_abs[layer][~net.get_masks()[layer]] == 0).all()


def _sequences(n=96, seed=0) -> DatasetSplits:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 7, 5, generator=gen)
    y = (x[:, :, 0].sum(1) > 0).long() + (x[:, -1, 1] > 0.5).long()
    return DatasetSplits("seq", x[:64], y[:64], x[64:80], y[64:80], x[80:], y[80:], num_classes=3)


@pytest.mark.parametrize("variant", [VARIANTS[0], VARIANTS[4]], ids=_ids)
def test_training_recurrent_networks_in_lockstep_equals_separate_training(variant):
    data = _sequences()
    config = TrainConfig(max_epochs=3, patience=None, batch_size=16, lr=0.1)
    separate = models(3, **variant)
    results = [train(m, data, config, seed=s, progress=False) for s, m in enumerate(separate)]
    together = models(3, **variant)
    got = train_lockstep(together, data, config, seeds=[0, 1, 2])
    for a, b, ra, rb in zip(separate, together, results, got, strict=True):
        assert [h.train_loss for h in ra.history] == pytest.approx(
            [h.train_loss for h in rb.history], rel=1e-5)
        for (k, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert torch.allclose(va, vb, atol=1e-5), k


def test_dropout_between_layers_is_each_networks_own_and_off_in_eval():
    nets = models(3, cell="lstm", layers=2, dropout=0.5)
    x = torch.randn(4, 7, 5)
    together = StackedNetwork(nets).train()
    together.seed_dropout([10, 11, 12])
    alone = StackedNetwork([nets[1]]).train()
    alone.seed_dropout([11])
    with torch.no_grad():
        a, b = together(x)[1], alone(x)[0]
        assert torch.allclose(a, b, atol=1e-6)  # network 1's masks do not depend on the others
        together.eval()
        assert not torch.allclose(a, together(x)[1], atol=1e-3)  # dropout was on in training
        for i, net in enumerate(nets):
            assert torch.allclose(together(x)[i], net.eval()(x), atol=1e-6)


class TokenNet(nn.Module):
    """Token ids, an embedding with a padding row, a sequence-first bidirectional GRU, a mean."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 4, padding_idx=0)
        self.rnn = nn.GRU(4, 5, bidirectional=True)
        self.out = nn.Linear(10, 3)

    def forward(self, tokens):  # (N, T)
        out, _ = self.rnn(self.emb(tokens).transpose(0, 1))
        return self.out(F.relu(out.mean(0)))


def test_embeddings_look_up_each_networks_own_table_and_leave_the_padding_row():
    torch.manual_seed(0)
    nets = [TokenNet() for _ in range(3)]
    tokens = torch.randint(0, 11, (3, 6, 8))
    tokens[:, :, -2:] = 0
    stacked = StackedNetwork(nets)
    logits = stacked(tokens, "kb")
    logits.sum().backward()
    for i, net in enumerate(nets):
        want = net(tokens[i])
        assert torch.allclose(logits[i], want, atol=1e-6)
        want.sum().backward()
        assert torch.allclose(stacked.ops["emb"].weight.grad[i], net.emb.weight.grad, atol=1e-6)
    assert (stacked.ops["emb"].weight.grad[:, 0] == 0).all()


class ShapeNet(nn.Module):
    """Shape operations as people write them: view(size(0), -1), permute, squeeze, slicing,
    transpose, cat along features, unsqueeze, a mean over a named dimension."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 4 * 4 + 4, 5)
        self.head = nn.Linear(5, 3)

    def forward(self, x):  # (N, 2, 4, 4)
        h = F.relu(self.conv(x))
        flat = h.view(h.size(0), -1)
        side = x.permute(0, 2, 3, 1)[:, :, 0, 0]  # (N, 4)
        z = torch.cat([flat, side], dim=1)
        z = F.relu(self.fc(z)).unsqueeze(1).transpose(1, 2)  # (N, 5, 1)
        return self.head(z.squeeze(-1) + z.mean(dim=2))


def test_shape_operations_act_on_each_networks_own_tensor():
    torch.manual_seed(0)
    nets = [ShapeNet() for _ in range(3)]
    x = torch.randn(3, 6, 2, 4, 4)
    stacked = StackedNetwork(nets)
    with torch.no_grad():
        for layout, inp in (("kb", x), ("bk", x.transpose(0, 1).contiguous()), ("shared", x[0])):
            out = stacked(inp, layout)
            for i, net in enumerate(nets):
                want = net(x[0] if layout == "shared" else x[i])
                assert torch.allclose(out[i], want, atol=1e-6), (layout, i)


class StateNet(nn.Module):
    """An encoder's final state as a decoder's initial state."""

    def __init__(self):
        super().__init__()
        self.enc = nn.GRU(5, 4, batch_first=True)
        self.dec = nn.GRU(5, 4, batch_first=True)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        _, h = self.enc(x)
        out, _ = self.dec(x, h)
        return self.fc(out[:, -1])


class OwnForward(nn.LSTM):
    def forward(self, x, hx=None):
        return super().forward(x * 2, hx)


class Wrapped(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn, self.fc = rnn, nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.rnn(x)[0][:, -1])


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (StateNet, "passes one tensor"),
        (lambda: Wrapped(nn.LSTM(5, 4, batch_first=True, proj_size=2)), "proj_size"),
        (lambda: Wrapped(OwnForward(5, 4, batch_first=True)), "overrides forward"),
    ],
    ids=["initial-state", "proj_size", "own-forward"],
)
def test_recurrent_modules_the_engine_cannot_batch_are_refused_with_the_reason(model, match):
    with pytest.raises(LockstepUnsupported, match=match):
        StackedNetwork([model(), model()])(torch.zeros(2, 7, 5))


def test_reductions_over_every_dimension_are_refused():
    class Pooled(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 3)

        def forward(self, x):
            return self.fc(x) - x.mean()

    with pytest.raises(LockstepUnsupported, match="needs a dimension for mean"):
        StackedNetwork([Pooled(), Pooled()])(torch.zeros(2, 4, 5), "kb")


@pytest.mark.parametrize(("cin", "k"), list(itertools.product([2, 4, 7], [1, 2])))
def test_strided_pointwise_convolutions_train_in_a_stack_of_any_size(cin, k):
    """A 1x1 stride-2 convolution with few input channels (a ResNet shortcut): its weight
    gradient on channels-last input crashed oneDNN's AVX2 kernel for an ungrouped stack."""

    class Shortcut(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, cin, 3, padding=1)
            self.down = nn.Conv2d(cin, 8, 1, stride=2)
            self.fc = nn.Linear(8 * 8 * 8, 3)

        def forward(self, x):
            return self.fc(torch.flatten(F.relu(self.down(F.relu(self.conv(x)))), 1))

    torch.manual_seed(0)
    nets = [Shortcut() for _ in range(k)]
    x = torch.randn(k, 16, 3, 16, 16)
    stacked = StackedNetwork(nets)
    stacked(x.transpose(0, 1).contiguous(), "bk").sum().backward()
    for i, net in enumerate(nets):
        net(x[i]).sum().backward()
        assert torch.allclose(stacked.ops["down"].weight.grad[i], net.down.weight.grad, atol=1e-4)


class FunctionalShapes(nn.Module):
    """LeNet's view(-1, n), torch.chunk, functional softmax with its keyword defaults."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2 * 4 * 4, 6)
        self.head = nn.Linear(3, 3)

    def forward(self, x):
        a, b = torch.chunk(F.relu(self.fc(x.view(-1, 2 * 4 * 4))), 2, dim=1)
        return F.log_softmax(self.head(a * torch.softmax(b, dim=-1)), dim=1)


def test_functional_shape_operations_act_on_each_networks_own_tensor():
    torch.manual_seed(0)
    nets = [FunctionalShapes() for _ in range(3)]
    x = torch.randn(3, 6, 2, 4, 4)
    stacked = StackedNetwork(nets)
    with torch.no_grad():
        out = stacked(x, "kb")
        for i, net in enumerate(nets):
            assert torch.allclose(out[i], net(x[i]), atol=1e-6), i
