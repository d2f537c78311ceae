"""MaskedNetwork: where the masks sit, what they do, and the API the DropNet loop relies on.

The reference forwards below re-implement each architecture by hand with the masks applied after
the activation (or after BN2, before the residual add), so a misplaced mask fails them."""

from __future__ import annotations

import copy

import pytest
import torch
import torch_pruning as tp
from torch import nn
from torch.func import functional_call, stack_module_state

from secateurs.errors import ConfigError
from secateurs.models import build_model
from secateurs.pruning.masks import MaskedNetwork, UnitMask


def m4(mask: torch.Tensor) -> torch.Tensor:
    return mask.float().view(1, -1, 1, 1)


def test_unit_mask_multiplies_dim_one_for_2d_and_4d_inputs():
    um = UnitMask(3)
    assert list(um.parameters()) == []
    assert um.mask.dtype == torch.float32 and um.mask.tolist() == [1.0, 1.0, 1.0]
    um.mask.copy_(torch.tensor([1.0, 0.0, 1.0]))
    x2 = torch.arange(6.0).view(2, 3) + 1
    assert um(x2).tolist() == [[1.0, 0.0, 3.0], [4.0, 0.0, 6.0]]
    x4 = torch.randn(2, 3, 4, 5)
    y4 = um(x4)
    assert torch.equal(y4[:, 1], torch.zeros(2, 4, 5))
    assert torch.equal(y4[:, [0, 2]], x4[:, [0, 2]])
    assert "mask" in dict(um.named_buffers())


def _convnet_reference(model, masks, x):
    """Model B/C and VGG: the mask of the latest conv is applied right after each ReLU."""
    last_conv = None
    for i, mod in enumerate(model.features):
        x = mod(x)
        if isinstance(mod, nn.Conv2d):
            last_conv = f"features.{i}"
        if isinstance(mod, nn.ReLU):
            x = x * m4(masks[last_conv])
    return model.classifier(x)


def _mlp_reference(model, masks, x):
    last = None
    for i, mod in enumerate(model.net):
        x = mod(x)
        if isinstance(mod, nn.Linear):
            last = f"net.{i}"
        if isinstance(mod, nn.ReLU):
            x = x * masks[last].float()
    return x


def _resnet_reference(model, masks, x):
    stem = list(model.stem)
    for mod in stem:
        x = mod(x)
        if isinstance(mod, nn.ReLU):  # mask after the stem's activation, before its pool
            x = x * m4(masks["stem.0"])
    for s, stage in enumerate(model.stages):
        for b, block in enumerate(stage):
            if isinstance(block, (nn.MaxPool2d, nn.Identity)):
                x = block(x)
                continue
            p = f"stages.{s}.{b}."
            out = block.relu1(block.bn1(block.conv1(x))) * m4(masks[p + "conv1"])
            out = block.bn2(block.conv2(out)) * m4(masks[p + "conv2"])
            short = block.shortcut(x)
            if isinstance(block.shortcut, nn.Sequential):
                short = short * m4(masks[p + "shortcut.0"])
            x = block.relu2(out + short)
    return model.fc(model.flatten(model.pool(x)))


CASES = [
    ("model-a", (1, 8, 8), {}, _mlp_reference),
    ("model-b", (1, 8, 8), {"widths": [6, 5]}, _convnet_reference),
    ("model-c", (3, 32, 32), {"widths": [6, 5, 4, 7], "hidden": 9}, _convnet_reference),
    ("vgg11", (3, 32, 32), {"scale": 0.0625}, _convnet_reference),
    ("resnet18", (3, 16, 16), {"width": 4}, _resnet_reference),
    ("resnet18-dropnet", (3, 16, 16), {"width": 4}, _resnet_reference),
]


@pytest.mark.parametrize("name,shape,options,reference", CASES, ids=[c[0] for c in CASES])
def test_masked_forward_matches_hand_placed_masks(name, shape, options, reference, helpers):
    gen = torch.Generator().manual_seed(1)
    model = build_model(name, shape, 10, **options)
    helpers.randomize_batchnorm(model, gen)
    x = torch.randn(3, *shape, generator=gen)
    masked = MaskedNetwork(model, x).eval()
    assert masked.layers == tuple(model.prunable_layers)
    masks = helpers.random_masks(masked, gen)
    masked.set_masks(masks)
    with torch.no_grad():
        expected = reference(model.eval(), masks, x)
        torch.testing.assert_close(masked(x), expected, rtol=1e-6, atol=1e-6)


def test_user_module_with_functional_activations_and_residual(helpers):
    gen = torch.Generator().manual_seed(2)
    net = helpers.FunctionalNet()
    helpers.randomize_batchnorm(net, gen)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    masked = MaskedNetwork(net, x).eval()
    assert masked.layers == ("conv1", "conv2", "conv3", "fc1")
    assert masked.coupled_groups == [("conv1", "conv2", "conv3")]
    masks = helpers.random_masks(masked, gen)
    masked.set_masks(masks)
    with torch.no_grad():
        torch.testing.assert_close(masked(x), net.eval().reference(masks, x), rtol=1e-6, atol=1e-6)


def test_all_ones_masks_leave_the_model_unchanged_and_share_its_weights():
    model = build_model("model-c", (3, 32, 32), 10, widths=[4, 4, 4, 4])
    x = torch.randn(2, 3, 32, 32)
    masked = MaskedNetwork(model, x)
    torch.testing.assert_close(masked(x), model(x), rtol=0, atol=0)
    assert masked.net.get_submodule("features.0").weight is model.features[0].weight


def test_construction_does_not_touch_batchnorm_statistics_or_modes():
    model = build_model("vgg11", (3, 32, 32), 10, scale=0.0625)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    masked = MaskedNetwork(model, torch.randn(4, 3, 32, 32) * 5 + 3)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert masked.training and all(m.training for m in model.modules())


def test_get_set_masks_and_remaining_fractions():
    model = build_model("model-a", (6,), 3, widths=[4, 5])
    masked = MaskedNetwork(model, torch.randn(2, 6))
    assert masked.widths == {"net.1": 4, "net.3": 5}
    assert all(bool(m.all()) for m in masked.get_masks().values())
    masked.set_masks({"net.1": torch.tensor([True, False, False, True])})
    masked.set_masks({"net.3": torch.tensor([0, 1, 0, 0, 0])})  # 0/1 numbers work too
    got = masked.get_masks()
    assert got["net.1"].dtype == torch.bool
    assert got["net.1"].tolist() == [True, False, False, True]
    assert got["net.3"].tolist() == [False, True, False, False, False]
    assert masked.remaining_per_layer() == {"net.1": 0.5, "net.3": 0.2}
    assert masked.remaining_fraction() == pytest.approx(3 / 9)


@pytest.mark.parametrize(
    "masks,message",
    [
        ({"nope": torch.ones(4)}, "no prunable layer 'nope'"),
        ({"net.1": torch.ones(3)}, "expected (4,)"),
        ({"net.1": torch.zeros(4, dtype=torch.bool)}, "at least 1"),
        ({"net.1": torch.tensor([1.0, 0.5, 1.0, 1.0])}, "boolean or 0/1"),
    ],
)
def test_set_masks_rejects_bad_masks_and_changes_nothing(masks, message):
    masked = MaskedNetwork(build_model("model-a", (6,), 3, widths=[4, 5]), torch.randn(2, 6))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        masked.set_masks({"net.3": torch.tensor([1, 0, 1, 1, 1]), **masks})
    assert masked.remaining_fraction() == 1.0  # the valid entry was not applied either


def test_weight_state_dict_excludes_masks_and_reset_keeps_masks():
    model = build_model("model-b", (1, 8, 8), 10, widths=[3, 4])
    masked = MaskedNetwork(model, torch.randn(2, 1, 8, 8))
    initial = masked.weight_state_dict()
    assert not any("mask" in k for k in initial)
    assert set(initial) | {k for k in masked.state_dict() if k.endswith(".mask")} == set(
        masked.state_dict()
    )
    masked.set_masks({"features.0": torch.tensor([1, 0, 1]), "features.3": torch.tensor([0, 1, 1, 1])})
    with torch.no_grad():
        for p in masked.parameters():
            p.add_(1.0)
    masked.load_weight_state_dict(initial)
    for k, v in masked.weight_state_dict().items():
        assert torch.equal(v, initial[k])
    assert masked.get_masks()["features.0"].tolist() == [True, False, True]
    initial["features.0.weight"] = initial.pop("net.features.0.weight")
    with pytest.raises(ConfigError, match="missing"):
        masked.load_weight_state_dict(initial)


RESNET18_GROUPS = [
    ("stem.0", "stages.0.0.conv2", "stages.0.1.conv2"),
    ("stages.1.0.conv2", "stages.1.0.shortcut.0", "stages.1.1.conv2"),
    ("stages.2.0.conv2", "stages.2.0.shortcut.0", "stages.2.1.conv2"),
    ("stages.3.0.conv2", "stages.3.0.shortcut.0", "stages.3.1.conv2"),
]


def _torch_pruning_groups(model, x, layers):
    """Coupled prunable layers according to torch-pruning's DependencyGraph (an independent tool)."""
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    names = {m: n for n, m in model.named_modules()}
    groups = set()
    for layer in layers:
        group = graph.get_pruning_group(
            model.get_submodule(layer), tp.prune_conv_out_channels, idxs=[0]
        )
        coupled = {
            names[item.dep.target.module]
            for item in group
            if names.get(item.dep.target.module) in layers
            and item.dep.handler.__name__ == "prune_out_channels"
        }
        if len(coupled) > 1:
            groups.add(tuple(sorted(coupled, key=layers.index)))
    return sorted(groups, key=lambda g: layers.index(g[0]))


@pytest.mark.parametrize("name", ["resnet18", "resnet18-dropnet"])
def test_coupled_groups_match_hand_list_and_torch_pruning(name):
    x = torch.randn(1, 3, 16, 16)
    model = build_model(name, (3, 16, 16), 10, width=4)
    masked = MaskedNetwork(model, x)
    expected = RESNET18_GROUPS
    if name == "resnet18-dropnet":  # a max-pool leads stages 2-4, so the blocks are 1 and 2 there
        expected = [tuple(x.replace(f"stages.{s}.1", f"stages.{s}.2").replace(
            f"stages.{s}.0", f"stages.{s}.1") if s else x for x in g) for s, g in enumerate(expected)]
    assert masked.coupled_groups == expected
    assert masked.coupled_groups == _torch_pruning_groups(model, x, list(masked.layers))


def test_plain_convnets_have_no_coupled_groups():
    masked = MaskedNetwork(build_model("vgg11", (3, 32, 32), 10, scale=0.0625), torch.randn(1, 3, 32, 32))
    assert masked.coupled_groups == []


def test_functional_call_and_vmap_over_stacked_networks(helpers):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 16, 16, generator=gen)
    nets = []
    for k in range(3):
        torch.manual_seed(k)
        net = MaskedNetwork(build_model("resnet18", (3, 16, 16), 10, width=4), x).eval()
        net.set_masks(helpers.random_masks(net, gen))
        nets.append(net)
    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")

    def one(p, b, inp):
        return functional_call(base, (p, b), (inp,))

    batched = torch.vmap(one, in_dims=(0, 0, None))(params, buffers, x)
    with torch.no_grad():
        for k, net in enumerate(nets):
            torch.testing.assert_close(batched[k], net(x), rtol=1e-5, atol=1e-6)


class Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow
            x = -x
        return self.fc2(self.fc1(x))


class CalledTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(self.fc1(torch.relu(self.fc1(x))))


def test_configuration_errors_name_the_problem():
    with pytest.raises(ConfigError, match="cannot trace Untraceable"):
        MaskedNetwork(Untraceable(), torch.randn(2, 4))
    with pytest.raises(ConfigError, match="fc1: it is a shared layer, called 2 times"):
        MaskedNetwork(CalledTwice(), torch.randn(2, 4))
    with pytest.raises(ConfigError, match="'fc1' cannot be pruned: it is a shared layer"):
        MaskedNetwork(CalledTwice(), torch.randn(2, 4), layers=["fc1"])
    with pytest.raises(ConfigError, match="'act' cannot be pruned: it is a ReLU; prunable layers"):
        net = nn.Sequential()
        net.add_module("fc", nn.Linear(4, 4))
        net.add_module("act", nn.ReLU())
        net.add_module("out", nn.Linear(4, 2))
        MaskedNetwork(net, torch.randn(2, 4), layers=["act"])
    with pytest.raises(ConfigError, match="example input of shape"):
        MaskedNetwork(build_model("model-a", (6,), 3), torch.randn(2, 7))


class _Assigned(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(16, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = self.fc1(x)
        h = torch.relu(h)
        return self.fc2(h)


class _Statement(_Assigned):
    def forward(self, x):
        h = self.fc1(x)
        h.relu_()  # in place, as a statement (ported code): fx shows fc2 reading fc1's output
        return self.fc2(h)


def test_an_in_place_activation_written_as_a_statement_is_in_the_units_tail():
    from secateurs.pruning.importance import unit_scores

    torch.manual_seed(0)
    x = torch.randn(200, 16)
    a, b = _Assigned(), _Statement()
    b.load_state_dict(a.state_dict())
    ma, mb = MaskedNetwork(a, x[:2]).eval(), MaskedNetwork(b, x[:2]).eval()
    for criterion in ("activation", "apoz"):  # scores after the ReLU, as for the assigned form
        want = unit_scores(criterion, ma, x)["fc1"]
        assert torch.equal(unit_scores(criterion, mb, x)["fc1"], want)
    assert float(unit_scores("apoz", mb, x)["fc1"].abs().sum()) > 0  # once -0.0 for every unit


def test_alpha_dropout_joins_the_tail_so_dropped_units_stay_zero_in_training():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(12, 10), nn.SELU(), nn.AlphaDropout(0.2), nn.Linear(10, 3))
    x = torch.rand(64, 12)
    masked = MaskedNetwork(net, x[:2])
    masked.set_masks({"0": torch.arange(10) >= 5})
    seen = {}
    net[3].register_forward_hook(lambda m, i, o: seen.__setitem__("in", i[0].detach()))
    masked.train()(x)  # AlphaDropout maps 0 to a non-zero value in training
    assert bool((seen["in"][:, :5] == 0).all())
    assert bool((seen["in"][:, 5:] != 0).any())
