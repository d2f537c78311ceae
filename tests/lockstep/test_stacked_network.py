"""StackedNetwork: K models of one architecture run as one batched model. Every check compares
against each model's own forward pass, run one at a time."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import secateurs.pruning.lockstep  # noqa: F401  (registers UnitMask)
from secateurs.models import build_model
from secateurs.pruning.masks import MaskedNetwork
from secateurs.training.lockstep import LockstepUnsupported, StackedNetwork


def masked_models(spec: str, shape, k: int, gen: torch.Generator) -> list[MaskedNetwork]:
    nets = []
    for seed in range(k):
        torch.manual_seed(seed)
        net = MaskedNetwork(build_model(spec, shape, 10), torch.zeros(2, *shape))
        masks = {}
        for layer, width in net.widths.items():
            alive = torch.rand(width, generator=gen) > 0.4
            alive[0] = True
            masks[layer] = alive
        net.set_masks(masks)
        nets.append(net)
    return nets


class Residual(nn.Module):
    """Functional ops the engine batches: relu, an addition, pooling, torch.flatten, scaling."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 2 * 2, 3)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        h = h + 0.5 * torch.tanh(self.conv2(h))
        h = F.adaptive_avg_pool2d(F.max_pool2d(h, 2), 2)
        return self.fc(torch.flatten(h, 1)) - 1.0


@pytest.mark.parametrize(
    "spec", ["model-a:widths=7-5", "model-b:widths=4-6", "model-c:widths=3-4-5-6,hidden=7"]
)
def test_every_layout_gives_each_models_own_logits(spec):
    gen = torch.Generator().manual_seed(0)
    shape = (1, 8, 8)
    nets = masked_models(spec, shape, 3, gen)
    stacked = StackedNetwork([n.net for n in nets])
    x = torch.rand(3, 5, *shape, generator=gen)  # a different batch per network
    expected = torch.stack([n(x[i]) for i, n in enumerate(nets)])
    with torch.no_grad():
        kb = stacked(x, "kb")
        bk = stacked(x.transpose(0, 1).contiguous(), "bk")
        shared = stacked(x[0], "shared")
    assert kb.shape == (3, 5, 10)
    assert torch.allclose(kb, expected, atol=1e-6)
    assert torch.allclose(bk, expected, atol=1e-6)
    for i, n in enumerate(nets):
        assert torch.allclose(shared[i], n(x[0]), atol=1e-6)


def test_fully_connected_logits_agree_to_float_rounding():
    gen = torch.Generator().manual_seed(1)
    nets = masked_models("model-a:widths=20-20", (1, 8, 8), 4, gen)
    stacked = StackedNetwork([n.net for n in nets])
    x = torch.rand(4, 32, 1, 8, 8, generator=gen)
    with torch.no_grad():
        out = stacked(x, "kb")
        shared = stacked(x[0], "shared")
        for i, n in enumerate(nets):
            scale = n(x[i]).abs().max()
            assert (out[i] - n(x[i])).abs().max() <= 1e-6 * scale
            assert (shared[i] - n(x[0])).abs().max() <= 1e-6 * scale


def test_taps_see_each_networks_masked_activations():
    gen = torch.Generator().manual_seed(2)
    nets = masked_models("model-b:widths=4-6", (1, 8, 8), 2, gen)
    names = {id(m): name for name, m in nets[0].net.named_modules()}
    layer = nets[0].layers[1]
    name = names[id(nets[0].mask_modules()[layer])]
    seen = {}
    stacked = StackedNetwork([n.net for n in nets])
    x = torch.rand(2, 3, 1, 8, 8, generator=gen)
    with torch.no_grad():
        stacked(x, "kb", taps={name: lambda t: seen.setdefault("t", t.clone())})
    for i, n in enumerate(nets):
        got = []
        hook = n.mask_modules()[layer].register_forward_hook(lambda m, a, out, got=got: got.append(out))
        with torch.no_grad():
            n(x[i])
        hook.remove()
        assert torch.allclose(seen["t"][i], got[0], atol=1e-6)
        dead = ~n.get_masks()[layer]
        assert dead.any() and (seen["t"][i][:, dead] == 0).all()


def test_functional_ops_and_residual_additions():
    torch.manual_seed(0)
    models = [Residual() for _ in range(3)]
    stacked = StackedNetwork(models)
    x = torch.rand(3, 4, 1, 8, 8)
    with torch.no_grad():
        out = stacked(x, "kb")
    for i, m in enumerate(models):
        assert torch.allclose(out[i], m(x[i]), atol=1e-6)


def test_gradients_are_each_networks_own():
    gen = torch.Generator().manual_seed(3)
    nets = masked_models("model-b:widths=4-6", (1, 8, 8), 3, gen)
    stacked = StackedNetwork([n.net for n in nets])
    x = torch.rand(3, 6, 1, 8, 8, generator=gen)
    y = torch.randint(0, 10, (3, 6), generator=gen)
    logits = stacked(x, "kb")
    F.cross_entropy(logits.reshape(18, 10), y.reshape(-1), reduction="none").view(3, 6).mean(
        1
    ).sum().backward()
    grads = dict(stacked.named_parameters())
    for i, n in enumerate(nets):
        n.zero_grad()
        F.cross_entropy(n(x[i]), y[i]).backward()
        for name, p in n.net.named_parameters():
            stacked_name = "ops." + name.rsplit(".", 1)[0].replace(".", "__") + "." + name.rsplit(".", 1)[1]
            assert torch.allclose(grads[stacked_name].grad[i], p.grad, atol=1e-6), name


def test_select_and_write_back_move_the_right_networks():
    gen = torch.Generator().manual_seed(4)
    nets = masked_models("model-a:widths=5-4", (1, 8, 8), 4, gen)
    stacked = StackedNetwork([n.net for n in nets])
    mapping = stacked.select([3, 1])
    assert stacked.k == 2 and len(mapping) == len(list(stacked.parameters()))
    x = torch.rand(2, 1, 8, 8, generator=gen)
    with torch.no_grad():
        out = stacked(x, "shared")
    assert torch.allclose(out[0], nets[3](x)) and torch.allclose(out[1], nets[1](x))
    with torch.no_grad():
        for p in stacked.parameters():
            p.add_(1.0)
    before = {k: v.clone() for k, v in nets[0].state_dict().items()}
    stacked.write_back(nets[0].net, 1)  # the former network 1, shifted by one
    for k, v in nets[0].state_dict().items():
        if "mask" in k:
            assert torch.equal(v, nets[1].state_dict()[k])
        else:
            assert torch.allclose(v, nets[1].state_dict()[k] + 1.0), k
            assert not torch.equal(v, before[k])


@pytest.mark.parametrize(
    "module, match",
    [
        (nn.Sequential(nn.Conv2d(1, 4, 3, groups=1), nn.Conv2d(4, 4, 3, groups=2)), "groups=2"),
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.AlphaDropout(0.5), nn.Linear(4, 2)),
         "AlphaDropout"),
        (nn.Sequential(nn.Flatten(), nn.Linear(64, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)),
         None),
        (nn.Sequential(nn.Conv2d(1, 4, 3, groups=1, padding_mode="circular"), nn.Flatten()),
         "zero padding"),
    ],
)
def test_unsupported_layers_are_refused_with_the_reason(module, match):
    if match is None:  # BatchNorm over (N, C) is batched (tests/lockstep/test_batchnorm_dropout.py)
        StackedNetwork([module])
        return
    with pytest.raises(LockstepUnsupported, match=match):
        StackedNetwork([module])


class TrainOnlyBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x) * 2 if self.training else self.fc(x)


def test_a_forward_that_differs_between_modes_is_refused():
    with pytest.raises(LockstepUnsupported, match="differs between train and eval"):
        StackedNetwork([TrainOnlyBranch()])


def test_models_of_different_architectures_are_refused():
    a = build_model("model-a:widths=4-4", (1, 8, 8), 10)
    b = build_model("model-a:widths=4-5", (1, 8, 8), 10)
    with pytest.raises(Exception, match="shapes|architecture"):
        StackedNetwork([a, b])


class Scaled(nn.Module):
    """Binary functions with keyword arguments: ``alpha`` scales the second operand."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, x):
        h = torch.add(self.a(x), self.b(x), alpha=3.0)
        return torch.sub(h, torch.tanh(self.b(x)), alpha=0.5) + torch.add(x, h, alpha=-2.0)


def test_keyword_arguments_of_binary_functions_are_honoured():
    torch.manual_seed(0)
    models = [Scaled() for _ in range(2)]
    stacked = StackedNetwork(models)
    x = torch.rand(2, 5, 4)
    with torch.no_grad():
        for layout, inp in (("kb", x), ("bk", x.transpose(0, 1).contiguous())):
            out = stacked(inp, layout)
            for i, m in enumerate(models):
                a, b = m.a(x[i]), m.b(x[i])  # by hand: a + 3b - 0.5 tanh(b) + x - 2 (a + 3b)
                by_hand = (a + 3 * b) - 0.5 * torch.tanh(b) + x[i] - 2 * (a + 3 * b)
                assert torch.allclose(out[i], by_hand, atol=1e-5), layout
                assert torch.allclose(out[i], m(x[i]), atol=1e-5), layout
        shared = stacked(x[0], "shared")
    for i, m in enumerate(models):
        assert torch.allclose(shared[i], m(x[0]), atol=1e-5)


class Settings(nn.Module):
    def __init__(self, stride=1, slope=0.01, pool=2):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, stride=stride)
        self.act = nn.LeakyReLU(slope)
        self.pool = nn.MaxPool2d(pool, stride=1)
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.flat = nn.Flatten()

    def forward(self, x):
        return self.flat(self.avg(self.pool(self.act(self.conv(x)))))


@pytest.mark.parametrize(
    "other, setting",
    [({"stride": 2}, "stride=(2, 2)"), ({"slope": 0.5}, "negative_slope=0.5"),
     ({"pool": 3}, "kernel_size=3")],
)
def test_models_whose_modules_have_other_settings_are_refused(other, setting):
    a, b = Settings(), Settings(**other)
    assert StackedNetwork([a, Settings()]).k == 2  # alike: accepted
    with pytest.raises(LockstepUnsupported, match="model 1") as info:
        StackedNetwork([a, b])
    assert setting in str(info.value)  # the setting of model 1, next to model 0's
