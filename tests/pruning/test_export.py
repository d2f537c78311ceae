"""Physical removal: the exported network computes what the masked one does, is as small as the
masks imply, handles coupled residual channels, and saves / loads without pickle."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import fx, nn

from secateurs.errors import ConfigError, DataError
from secateurs.io import save_tensors
from secateurs.models import build_model
from secateurs.pruning.counting import count_params_macs, implied_params_macs
from secateurs.pruning.masks import MaskedNetwork, UnitMask
from secateurs.pruning.surgery import export_pruned, load_exported, save_exported

TOL = {"rtol": 1e-5, "atol": 1e-5}

REGISTRY_CASES = [
    ("model-a", (1, 8, 8), {}),
    ("model-a", (3, 32, 32), {}),
    ("model-b", (1, 8, 8), {"widths": [16, 16]}),
    ("model-b", (3, 32, 32), {"widths": [16, 16]}),
    ("model-c", (1, 8, 8), {"widths": [16, 16, 32, 32]}),
    ("model-c", (3, 32, 32), {"widths": [16, 16, 32, 32]}),
    ("vgg11", (3, 32, 32), {"scale": 0.125}),
    ("vgg13", (3, 32, 32), {"scale": 0.125}),
    ("vgg16", (1, 8, 8), {"scale": 0.125}),
    ("vgg19", (3, 32, 32), {"scale": 0.125}),
    ("resnet18", (1, 8, 8), {"width": 8}),
    ("resnet18", (3, 32, 32), {"width": 8}),
    ("resnet18-dropnet", (1, 8, 8), {"width": 8}),
    ("resnet18-dropnet", (3, 32, 32), {"width": 8}),
]
IDS = [f"{n}-{'x'.join(map(str, s))}" for n, s, _ in REGISTRY_CASES]


@pytest.fixture(scope="module")
def exported_case(helpers):
    """``exported_case(i)``: (masked, example input, export result, generator) for
    REGISTRY_CASES[i], with random BatchNorm statistics and about half the units dropped."""
    cache = {}

    def make(index: int):
        if index not in cache:
            name, shape, options = REGISTRY_CASES[index]
            gen = torch.Generator().manual_seed(100 + index)
            torch.manual_seed(index)
            model = build_model(name, shape, 10, **options)
            helpers.randomize_batchnorm(model, gen)
            x = torch.randn(2, *shape, generator=gen)
            masked = MaskedNetwork(model, x).eval()
            masked.set_masks(helpers.random_masks(masked, gen))
            cache[index] = (masked, x, export_pruned(masked, x), gen)
        return cache[index]

    return make


def _out_units(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


@pytest.mark.parametrize("index", range(len(REGISTRY_CASES)), ids=IDS)
def test_export_equals_masked_network_for_every_registry_model(index, exported_case):
    masked, x, result, gen = exported_case(index)
    exported = result.module.eval()
    assert type(exported) is type(masked.original)
    assert not any(isinstance(m, UnitMask) for m in exported.modules())
    fresh = torch.randn(4, *x.shape[1:], generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(exported(fresh), masked(fresh), **TOL)
    alive = masked.get_masks()
    for layer in masked.layers:
        group = next((g for g in masked.coupled_groups if layer in g), (layer,))
        dead_everywhere = {i for i in range(masked.widths[layer]) if not any(alive[g][i] for g in group)}
        assert set(result.removed[layer]) == dead_everywhere
        dead_here = {i for i in range(masked.widths[layer]) if not alive[layer][i]}
        assert set(result.zeroed[layer]) == dead_here - dead_everywhere
        assert _out_units(exported.get_submodule(layer)) == masked.widths[layer] - len(dead_everywhere)
    if not masked.coupled_groups:
        assert all(not z for z in result.zeroed.values())
    assert result.removed and sum(map(len, result.removed.values())) > 0


@pytest.mark.parametrize("index", range(len(REGISTRY_CASES)), ids=IDS)
def test_exported_counts_equal_what_the_masks_imply(index, exported_case):
    masked, x, result, _ = exported_case(index)
    assert (result.params, result.macs) == count_params_macs(result.module, x)
    assert (result.params, result.macs) == implied_params_macs(masked, x)
    assert (result.params_before, result.macs_before) == count_params_macs(masked.original, x)
    assert result.params < result.params_before and result.macs < result.macs_before


def test_export_leaves_the_masked_network_unchanged(exported_case):
    masked, x, _, _ = exported_case(11)
    state = {k: v.clone() for k, v in masked.state_dict().items()}
    masks = masked.get_masks()
    export_pruned(masked, x, masks={layer: torch.ones(w) for layer, w in masked.widths.items()})
    for k, v in masked.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert all(torch.equal(masks[x], m) for x, m in masked.get_masks().items())


def test_counts_by_hand_for_a_small_mlp_and_convnet():
    mlp = MaskedNetwork(build_model("model-a", (5,), 10, widths=[4, 3]), torch.randn(2, 5))
    assert count_params_macs(mlp.original, torch.randn(2, 5)) == (24 + 15 + 40, 20 + 12 + 30)
    mlp.set_masks({"net.1": torch.tensor([1, 0, 1, 0]), "net.3": torch.tensor([0, 0, 1])})
    expected = ((5 * 2 + 2) + (2 * 1 + 1) + (1 * 10 + 10), 5 * 2 + 2 * 1 + 1 * 10)
    assert implied_params_macs(mlp, torch.randn(2, 5)) == expected
    assert (export_pruned(mlp, torch.randn(2, 5)).params, export_pruned(mlp, torch.randn(2, 5)).macs) == expected

    x = torch.randn(2, 1, 4, 4)
    conv = MaskedNetwork(build_model("model-b", (1, 4, 4), 10, widths=[2, 3]), x)
    # conv1 1->2 3x3 on 4x4, pool, conv2 2->3 on 2x2, pool, flatten 3 -> fc 10
    assert count_params_macs(conv.original, x) == (20 + 57 + 40, 16 * 2 * 9 + 4 * 3 * 18 + 30)
    conv.set_masks({"features.0": torch.tensor([0, 1]), "features.3": torch.tensor([1, 0, 1])})
    expected = ((9 + 1) + (2 * 9 + 2) + (2 * 10 + 10), 16 * 9 + 4 * 2 * 9 + 20)
    assert implied_params_macs(conv, x) == expected
    result = export_pruned(conv, x)
    assert (result.params, result.macs) == expected


def test_flatten_removes_every_spatial_position_of_a_dropped_channel():
    x = torch.randn(2, 1, 8, 8)
    masked = MaskedNetwork(build_model("model-b", (1, 8, 8), 10, widths=[2, 3]), x)
    masked.set_masks({"features.3": torch.tensor([1, 0, 1])})  # 2x2 map after two pools
    fc_before = masked.original.classifier[1].weight.detach().clone()
    result = export_pruned(masked, x)
    fc = result.module.classifier[1]
    assert fc.in_features == 8
    torch.testing.assert_close(fc.weight, fc_before[:, [0, 1, 2, 3, 8, 9, 10, 11]], rtol=0, atol=0)


def _block_masks(masked, dead: dict[str, list[int]]):
    masks = {layer: torch.ones(w, dtype=torch.bool) for layer, w in masked.widths.items()}
    for layer, idx in dead.items():
        masks[layer][idx] = False
    return masks


@pytest.mark.parametrize("name", ["resnet18", "resnet18-dropnet"])
def test_coupled_channel_dropped_everywhere_is_removed_dropped_once_is_zeroed(name, helpers):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 3, 16, 16, generator=gen)
    model = build_model(name, (3, 16, 16), 10, width=8)
    helpers.randomize_batchnorm(model, gen)
    masked = MaskedNetwork(model, x).eval()
    group = masked.coupled_groups[0]  # the stem and stage-1 convs2: 8 shared channels
    # channel 0: dropped by every producer -> removed; channel 1: by the stem only -> zeroed;
    # channel 2: by two of three producers -> zeroed in both
    dead = {group[0]: [0, 1, 2], group[1]: [0, 2], group[2]: [0]}
    masked.set_masks(_block_masks(masked, dead))
    result = export_pruned(masked, x)
    assert {g: result.removed[g] for g in group} == {g: [0] for g in group}
    assert {g: result.zeroed[g] for g in group} == {group[0]: [1, 2], group[1]: [2], group[2]: []}
    net = result.module.eval()
    assert all(_out_units(net.get_submodule(g)) == 7 for g in group)
    assert not any(isinstance(m, UnitMask) for m in net.modules())
    fresh = torch.randn(3, 3, 16, 16, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(net(fresh), masked(fresh), **TOL)
    # the stem's zeroed channels (now at positions 0, 1) are zeroed at its BN, or its conv if none
    stem_zero = net.stem[1] if name == "resnet18" else net.stem[0]
    assert stem_zero.weight[[0, 1]].abs().sum() == 0 and stem_zero.bias[[0, 1]].abs().sum() == 0
    assert stem_zero.weight[2:].abs().sum() > 0
    assert f"({group[0]}+2: 2 channels)" in result.summary()  # channels 1 and 2


def test_user_module_exports_exactly_and_keeps_a_mask_only_after_softplus(helpers):
    gen = torch.Generator().manual_seed(8)
    for shape in ((1, 8, 8), (3, 32, 32)):
        net = helpers.FunctionalNet(channels=shape[0])
        helpers.randomize_batchnorm(net, gen)
        x = torch.randn(2, *shape, generator=gen)
        masked = MaskedNetwork(net, x).eval()
        # channel 0 dead in all three coupled convs -> removed; channel 1 dead only in conv3
        # (BN -> Softplus: zeroing BN gives softplus(0) = log 2, so a UnitMask must stay)
        masked.set_masks(_block_masks(
            masked, {"conv1": [0, 3], "conv2": [0], "conv3": [0, 1], "fc1": [2, 5]}
        ))
        result = export_pruned(masked, x)
        assert result.removed == {"conv1": [0], "conv2": [0], "conv3": [0], "fc1": [2, 5]}
        assert result.zeroed == {"conv1": [3], "conv2": [], "conv3": [1], "fc1": []}
        assert result.masked_layers == ("conv3",)
        exported = result.module.eval()
        assert isinstance(exported, fx.GraphModule)
        assert sum(isinstance(m, UnitMask) for m in exported.modules()) == 1
        fresh = torch.randn(3, *shape, generator=gen)
        with torch.no_grad():
            torch.testing.assert_close(exported(fresh), masked(fresh), **TOL)
        assert (result.params, result.macs) == implied_params_macs(masked, x)
        # without the Softplus case, the user's own class comes back and no mask stays
        masked.set_masks({"conv3": torch.tensor([0, 1, 1, 1, 1, 1])})
        plain = export_pruned(masked, x)
        assert type(plain.module) is helpers.FunctionalNet and plain.masked_layers == ()
        with torch.no_grad():
            torch.testing.assert_close(plain.module.eval()(fresh), masked(fresh), **TOL)


class PostMaskBatchNorm(nn.Module):
    """BatchNorm after the pool (so after the mask): a dropped channel becomes a non-zero constant
    there, so it cannot be removed; export must keep it and stay exact."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn = nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.fc = nn.Conv2d(4, 3, 3, padding=1), nn.Linear(3, 2)

    def forward(self, x):
        h = self.bn(F.max_pool2d(F.relu(self.conv1(x)), 2))
        return self.fc(F.relu(self.conv2(h)).mean((2, 3)))


def test_channels_that_cannot_be_removed_are_kept_zeroed_and_exact(helpers):
    gen = torch.Generator().manual_seed(9)
    net = PostMaskBatchNorm()
    helpers.randomize_batchnorm(net, gen)
    x = torch.randn(2, 2, 8, 8, generator=gen)
    masked = MaskedNetwork(net, x).eval()
    masked.set_masks({"conv1": torch.tensor([1, 0, 1, 0]), "conv2": torch.tensor([0, 1, 1])})
    result = export_pruned(masked, x)
    assert result.removed == {"conv1": [], "conv2": [0]}
    assert result.zeroed == {"conv1": [1, 3], "conv2": []}
    assert "conv1" in result.kept_because
    assert "kept 2 dropped units zeroed that cannot be removed" in result.summary()
    with torch.no_grad():
        fresh = torch.randn(3, 2, 8, 8, generator=gen)
        torch.testing.assert_close(result.module.eval()(fresh), masked(fresh), **TOL)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), p=st.floats(0.0, 0.95))
def test_property_any_masks_export_exactly_on_a_small_resnet(seed, p, helpers):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    model = build_model("resnet18", (3, 8, 8), 10, width=4)
    helpers.randomize_batchnorm(model, gen)
    masked = MaskedNetwork(model, x).eval()
    masked.set_masks(helpers.random_masks(masked, gen, p))
    result = export_pruned(masked, x)
    with torch.no_grad():
        torch.testing.assert_close(result.module.eval()(x), masked(x), **TOL)
    assert (result.params, result.macs) == implied_params_macs(masked, x)


# ----------------------------------------------------------------------------- save / load


def test_save_load_round_trip_registry_model(tmp_path, exported_case):
    masked, x, result, gen = exported_case(12)  # resnet18-dropnet, coupled channels zeroed
    save_exported(tmp_path / "exp", result, spec=masked.spec)
    arch = json.loads((tmp_path / "exp" / "architecture.json").read_text())
    assert arch["model"] == {"name": "resnet18-dropnet", "options": {"width": 8}}
    assert arch["input_shape"] == [1, 8, 8] and arch["num_classes"] == 10
    assert arch["removed"] == result.removed and arch["zeroed"] == result.zeroed
    assert (arch["params"], arch["macs"]) == (result.params, result.macs)
    loaded = load_exported(tmp_path / "exp")
    assert not loaded.training
    fresh = torch.randn(3, 1, 8, 8, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(loaded(fresh), result.module.eval()(fresh), rtol=0, atol=0)
    assert count_params_macs(loaded, fresh) == (result.params, result.macs)


def test_save_load_round_trip_user_module_with_kept_mask(tmp_path, helpers):
    gen = torch.Generator().manual_seed(10)
    torch.manual_seed(0)
    net = helpers.FunctionalNet()
    helpers.randomize_batchnorm(net, gen)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    masked = MaskedNetwork(net, x).eval()
    masked.set_masks(_block_masks(masked, {"conv1": [0, 2], "conv2": [0], "conv3": [0, 1, 4]}))
    result = export_pruned(masked, x)
    assert result.masked_layers == ("conv3",)
    save_exported(tmp_path, result)
    with pytest.raises(ConfigError, match="custom model"):
        load_exported(tmp_path)
    loaded = load_exported(tmp_path, model=helpers.FunctionalNet())
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), masked(x), **TOL)


def _tamper(directory, **changes):
    path = directory / "architecture.json"
    arch = json.loads(path.read_text())
    for key, value in changes.items():
        arch[key] = value(arch[key]) if callable(value) else value
    path.write_text(json.dumps(arch))


def test_tampered_files_give_clear_errors(tmp_path, exported_case):
    masked, x, result, _ = exported_case(2)  # model-b 16-16 on 1x8x8
    good = tmp_path / "good"
    save_exported(good, result)
    original = (good / "architecture.json").read_text()

    def reset():
        (good / "architecture.json").write_text(original)

    _tamper(good, model={"name": "model-z", "options": {}})
    with pytest.raises(ConfigError, match="unknown model 'model-z'"):
        load_exported(good)
    reset()
    _tamper(good, model={"name": "model-b", "options": {"widths": [16, 8]}})
    with pytest.raises(DataError, match="index out of range|does not fit"):
        load_exported(good)
    reset()
    _tamper(good, model={"name": "model-b", "options": {"widths": [16, 20]}})
    with pytest.raises(DataError, match="does not fit the rebuilt network"):
        load_exported(good)
    reset()
    _tamper(good, removed=lambda r: {**r, "features.0": r["features.0"][1:]})
    with pytest.raises(DataError, match="does not fit"):
        load_exported(good)
    reset()
    _tamper(good, removed=lambda r: {**r, "features.0": [99]})
    with pytest.raises(DataError, match="out of range"):
        load_exported(good)
    reset()
    _tamper(good, format="something-else")
    with pytest.raises(DataError, match="not a secateurs export"):
        load_exported(good)
    reset()
    (good / "architecture.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_exported(good)
    reset()
    (good / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable safetensors file"):
        load_exported(good)
    (good / "architecture.json").unlink()
    with pytest.raises(DataError, match="not found"):
        load_exported(good)


def test_tampered_removed_list_inconsistent_with_coupling_is_rejected(tmp_path, exported_case):
    masked, x, result, _ = exported_case(12)  # resnet18-dropnet
    layer, zeroed = next((k, v) for k, v in result.zeroed.items() if v)
    save_exported(tmp_path, result)
    # claim a kept-and-zeroed coupled channel was removed in its layer
    _tamper(tmp_path, removed=lambda r: {**r, layer: sorted(r[layer] + zeroed[:1])},
            zeroed=lambda z: {**z, layer: zeroed[1:]})
    with pytest.raises(DataError, match="do not match what the surgery gives"):
        load_exported(tmp_path)


class ViewCatNet(nn.Module):
    """``x.view(x.size(0), -1)`` flatten, in-place ReLU, and a ``torch.cat`` of two branches
    (the concatenated channels are tracked segment by segment, so fc1 loses exactly the inputs
    of the dropped conv2/conv3 channels at every position)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.conv3 = nn.Conv2d(4, 3, 1), nn.Conv2d(4, 2, 1)
        self.fc1, self.fc2 = nn.Linear(5 * 4, 6), nn.Linear(6, 2)

    def forward(self, x):
        h = F.max_pool2d(self.relu(self.conv1(x)), 4)
        h = torch.cat([torch.tanh(self.conv2(h)), self.conv3(h)], 1)
        return self.fc2(F.relu(self.fc1(h.view(h.size(0), -1))))


def test_view_flatten_inplace_relu_and_concatenation():
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(2, 1, 8, 8, generator=gen)
    masked = MaskedNetwork(ViewCatNet(), x).eval()
    masked.set_masks({"conv1": torch.tensor([1, 0, 0, 1]), "conv2": torch.tensor([1, 0, 1]),
                      "conv3": torch.tensor([0, 1]), "fc1": torch.tensor([1, 1, 0, 1, 0, 1])})
    result = export_pruned(masked, x)
    assert result.removed == {"conv1": [1, 2], "conv2": [1], "conv3": [0], "fc1": [2, 4]}
    assert result.zeroed == {"conv1": [], "conv2": [], "conv3": [], "fc1": []}
    assert result.kept_because == {}
    assert result.module.conv2.in_channels == 2 and result.module.fc2.in_features == 4
    # fc1 reads (conv2 0, conv2 2, conv3 1) x 4 positions, in that order
    kept_inputs = [c * 4 + j for c in (0, 2, 4) for j in range(4)]
    want = masked.original.fc1.weight.detach()[[0, 1, 3, 5]][:, kept_inputs]
    assert torch.equal(result.module.fc1.weight.detach(), want)
    assert result.module.fc1.in_features == 12
    with torch.no_grad():
        fresh = torch.randn(3, 1, 8, 8, generator=gen)
        torch.testing.assert_close(result.module.eval()(fresh), masked(fresh), **TOL)


def test_one_file_export_carries_its_architecture_and_loads_alike(tmp_path, exported_case):
    masked, x, result, gen = exported_case(12)  # resnet18-dropnet, coupled channels zeroed
    path = save_exported(tmp_path / "sub" / "small.safetensors", result, spec=masked.spec)
    assert path.is_file() and list(path.parent.iterdir()) == [path]  # one file, no leftovers
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        arch = json.loads(f.metadata()["architecture"])
    assert arch["model"] == {"name": "resnet18-dropnet", "options": {"width": 8}}
    assert arch["removed"] == result.removed and arch["zeroed"] == result.zeroed
    loaded = load_exported(path)
    fresh = torch.randn(3, 1, 8, 8, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(loaded(fresh), result.module.eval()(fresh), rtol=0, atol=0)
    # the same network as the directory form
    save_exported(tmp_path / "dir", result, spec=masked.spec)
    with torch.no_grad():
        torch.testing.assert_close(load_exported(tmp_path / "dir")(fresh), loaded(fresh),
                                   rtol=0, atol=0)


def test_one_file_export_errors_name_the_file(tmp_path, exported_case):
    masked, x, result, _ = exported_case(2)
    missing = tmp_path / "missing.safetensors"
    with pytest.raises(DataError, match="missing.safetensors not found"):
        load_exported(missing)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable safetensors file"):
        load_exported(garbage)
    plain = tmp_path / "plain.safetensors"  # weights alone, written by someone else
    save_tensors(plain, result.module.state_dict())
    with pytest.raises(DataError, match="not a secateurs export"):
        load_exported(plain)
    broken = tmp_path / "broken.safetensors"
    save_tensors(broken, result.module.state_dict(),
                 metadata={"format": "secateurs-exported-v1", "architecture": "{not json"})
    with pytest.raises(DataError, match="not valid JSON"):
        load_exported(broken)


class TiedDecoder(nn.Module):
    """A decoder that shares its embedding's weight, as language models write it."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(20, 8)
        self.fc = nn.Linear(8, 8)
        self.dec = nn.Linear(8, 20, bias=False)
        self.dec.weight = self.emb.weight

    def forward(self, x):
        return self.dec(torch.relu(self.fc(self.emb(x))).mean(1))


@pytest.mark.parametrize("single_file", [True, False])
def test_an_export_with_tied_weights_saves_them_once_and_loads_them_tied(tmp_path, single_file):
    from safetensors import safe_open

    torch.manual_seed(0)
    x = torch.randint(0, 20, (6, 5))
    masked = MaskedNetwork(TiedDecoder(), x[:2]).eval()
    masked.set_masks({"fc": torch.tensor([True, False] * 4)})
    result = export_pruned(masked, x[:2])
    path = save_exported(tmp_path / ("tied.safetensors" if single_file else "tied"), result)
    weights = path if single_file else path / "model.safetensors"
    with safe_open(str(weights), framework="pt") as f:
        assert sorted(f.keys()) == ["emb.weight", "fc.bias", "fc.weight"]  # dec.weight: an alias
    loaded = load_exported(path, model=TiedDecoder())
    assert loaded.dec.weight is loaded.emb.weight
    with torch.no_grad():
        assert torch.equal(loaded(x), result.module(x))


class SqueezedPool(nn.Module):
    """``.squeeze()`` after global pooling: fine for any batch but one, which loses its batch dim."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8, 12)
        self.bn = nn.BatchNorm1d(12)
        self.out = nn.Linear(12, 10)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(F.relu(self.conv(x)), 1).squeeze()
        return self.out(F.relu(self.bn(self.fc(x))))


def test_an_export_from_one_example_sample_runs_two_for_forwards_that_squeeze_the_batch():
    torch.manual_seed(0)
    x = torch.rand(8, 1, 8, 8)
    masked = MaskedNetwork(SqueezedPool(), x[:2]).eval()
    masked.set_masks({"conv": torch.arange(8) % 2 == 0, "fc": torch.arange(12) < 9})
    result = export_pruned(masked, x[:1])  # what secateurs export and each DropNet round give
    assert result.num_classes == 10  # once 0 (or a BatchNorm error), from a squeezed batch of one
    with torch.no_grad():
        assert torch.allclose(result.module.eval()(x), masked(x), atol=1e-5)


def test_a_dropnet_run_of_a_model_that_squeezes_its_batch_records_every_round(digits):
    from secateurs.pruning import DropNet, DropNetConfig
    from secateurs.training import TrainConfig

    torch.manual_seed(0)
    config = DropNetConfig(max_rounds=2, train=TrainConfig(max_epochs=1))
    result = DropNet(SqueezedPool(), digits, config, seed=0).run()  # lockstep, the default
    assert [r["units"] for r in result.rounds] == [20, 16, 13]
    assert result.rounds[-1]["params"] < result.rounds[0]["params"]


def test_tensors_sharing_memory_are_saved_as_an_alias_or_a_copy(tmp_path):
    from secateurs.io import load_tensors

    w = torch.arange(12.0).reshape(4, 3)
    save_tensors(tmp_path / "t.safetensors", {"a": w, "tied": w, "rows": w[:2], "col": w[:, 1]})
    back = load_tensors(tmp_path / "t.safetensors")
    assert back["tied"] is back["a"]  # the same tensor: stored once, restored as one
    assert torch.equal(back["rows"], w[:2]) and torch.equal(back["col"], w[:, 1])  # views: copies


def test_a_failed_save_leaves_no_half_export(tmp_path, exported_case, monkeypatch):
    """The architecture failing after the weights: a new folder is removed; in an existing one
    the new weights do not stay beside the old architecture; a failure before the weights were
    replaced leaves the old export whole."""
    from secateurs.pruning import surgery

    masked, x, result, gen = exported_case(0)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(surgery, "write_json", broken)
        with pytest.raises(OSError, match="disk full"):
            save_exported(tmp_path / "new", result, spec=masked.spec)
    assert not (tmp_path / "new").exists()

    save_exported(tmp_path / "old", result, spec=masked.spec)
    (tmp_path / "old" / "notes.txt").write_text("mine")
    with monkeypatch.context() as m:
        m.setattr(surgery, "save_tensors", broken)
        with pytest.raises(OSError):
            save_exported(tmp_path / "old", result, spec=masked.spec)
    load_exported(tmp_path / "old")  # untouched, still loads
    with monkeypatch.context() as m:
        m.setattr(surgery, "write_json", broken)
        with pytest.raises(OSError):
            save_exported(tmp_path / "old", result, spec=masked.spec)
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == ["notes.txt"]
