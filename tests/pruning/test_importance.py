"""Unit scores against slow references written here: one sample at a time, post-activation
values recomputed by hand from the layers' parameters, then |spatial mean| and the mean over
samples (DropNet's E), the fraction of exact zeros (APoZ) and incoming L1 norms (magnitude)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from secateurs.pruning import MaskedNetwork, activation_stats, unit_scores, weight_magnitude

pytestmark = pytest.mark.usefixtures("one_thread")


class TanhGeluMLP(nn.Module):
    """Activations with negative outputs (tanh, GELU) and a BatchNorm1d with no activation after
    it, so |.| is not a no-op at any mask."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 5)
        self.act1 = nn.Tanh()
        self.fc2 = nn.Linear(5, 4)
        self.act2 = nn.GELU()
        self.fc3 = nn.Linear(4, 4)
        self.bn3 = nn.BatchNorm1d(4)
        self.out = nn.Linear(4, 3)
        self.prunable_layers = ("fc1", "fc2", "fc3")

    def forward(self, x):
        h = self.act2(self.fc2(self.act1(self.fc1(x))))
        return self.out(self.bn3(self.fc3(h)))


class BnConvNet(nn.Module):
    """conv1 -> BatchNorm -> Tanh (negative values, so |spatial mean| != spatial mean of |.|),
    conv2 -> Softplus, then a linear head."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 3, 3, padding=1)
        self.head = nn.Linear(3 * 5 * 5, 3)
        self.prunable_layers = ("conv1", "conv2")

    def forward(self, x):
        h = torch.tanh(self.bn1(self.conv1(x)))
        h = F.softplus(self.conv2(h))
        return self.head(torch.flatten(h, 1))


class ReluNet(nn.Module):
    """ReLU everywhere (exact zeros, for APoZ), a conv and a linear prunable layer."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 5, 3, padding=1)
        self.fc = nn.Linear(5 * 4 * 4, 6)
        self.out = nn.Linear(6, 2)
        self.prunable_layers = ("conv", "fc")

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.out(F.relu(self.fc(torch.flatten(h, 1))))


def _bn_eval(bn: nn.modules.batchnorm._BatchNorm, h: torch.Tensor) -> torch.Tensor:
    shape = (1, -1) + (1,) * (h.dim() - 2)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (h - bn.running_mean.view(shape)) * scale.view(shape) + bn.bias.view(shape)


def _post_mlp(model: TanhGeluMLP, masks: dict, x1: torch.Tensor) -> dict[str, torch.Tensor]:
    """Post-activation, post-mask values of one sample (1, 6), from the parameters."""
    a1 = torch.tanh(x1 @ model.fc1.weight.T + model.fc1.bias) * masks["fc1"]
    a2 = F.gelu(a1 @ model.fc2.weight.T + model.fc2.bias) * masks["fc2"]
    a3 = _bn_eval(model.bn3, a2 @ model.fc3.weight.T + model.fc3.bias) * masks["fc3"]
    return {"fc1": a1, "fc2": a2, "fc3": a3}


def _post_conv(model: BnConvNet, masks: dict, x1: torch.Tensor) -> dict[str, torch.Tensor]:
    m = {k: v.float().view(1, -1, 1, 1) for k, v in masks.items()}
    a1 = torch.tanh(_bn_eval(model.bn1, F.conv2d(x1, model.conv1.weight, model.conv1.bias,
                                                  padding=1))) * m["conv1"]
    a2 = F.softplus(F.conv2d(a1, model.conv2.weight, model.conv2.bias, padding=1)) * m["conv2"]
    return {"conv1": a1, "conv2": a2}


def _post_relu(model: ReluNet, masks: dict, x1: torch.Tensor) -> dict[str, torch.Tensor]:
    a1 = F.relu(F.conv2d(x1, model.conv.weight, model.conv.bias, padding=1))
    a1 = a1 * masks["conv"].float().view(1, -1, 1, 1)
    h = torch.flatten(F.max_pool2d(a1, 2), 1)
    a2 = F.relu(h @ model.fc.weight.T + model.fc.bias) * masks["fc"].float()
    return {"conv": a1, "fc": a2}


def reference_mean_abs(post, model, masks, x) -> dict[str, torch.Tensor]:
    """E(|a_i|): for each sample alone, the spatial mean of the unit's map, its absolute value;
    then the mean over samples (plain Python accumulation in float64)."""
    totals: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for n in range(len(x)):
            for layer, a in post(model, masks, x[n : n + 1].double()).items():
                per_unit = a[0].reshape(a.shape[1], -1).mean(1).abs()
                totals[layer] = totals.get(layer, 0) + per_unit
    return {k: v / len(x) for k, v in totals.items()}


def reference_apoz(post, model, masks, x) -> dict[str, torch.Tensor]:
    """Fraction of exact zeros of each unit over every sample and every spatial position."""
    zeros: dict[str, list[int]] = {}
    count: dict[str, int] = {}
    with torch.no_grad():
        for n in range(len(x)):
            for layer, a in post(model, masks, x[n : n + 1]).items():
                flat = a[0].reshape(a.shape[1], -1)
                z = zeros.setdefault(layer, [0] * flat.shape[0])
                for unit in range(flat.shape[0]):
                    for value in flat[unit].tolist():
                        z[unit] += value == 0.0
                count[layer] = count.get(layer, 0) + flat.shape[1]
    return {k: torch.tensor(v, dtype=torch.float64) / count[k] for k, v in zeros.items()}


def _randomize_bn(model: nn.Module, gen: torch.Generator) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen))
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(n, generator=gen))
                m.bias.copy_(torch.randn(n, generator=gen))


def _double(model: nn.Module) -> nn.Module:
    return model.double()


def _setup(cls, input_shape, n=23, seed=0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = cls()
    _randomize_bn(model, gen)
    x = torch.randn(n, *input_shape, generator=gen)
    masked = MaskedNetwork(model, x[:2])
    return model, masked, x


def _assert_close(got: dict, want: dict, atol=1e-6):
    assert set(got) == set(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
        torch.testing.assert_close(got[k].double(), want[k].double(), atol=atol, rtol=1e-5)


@pytest.mark.parametrize(
    ("cls", "shape", "post"),
    [(TanhGeluMLP, (6,), _post_mlp), (BnConvNet, (2, 5, 5), _post_conv),
     (ReluNet, (1, 8, 8), _post_relu)],
    ids=["tanh-gelu-bn-mlp", "bn-tanh-softplus-cnn", "relu-cnn"],
)
def test_mean_abs_matches_a_per_sample_loop(cls, shape, post):
    model, masked, x = _setup(cls, shape)
    masks = {k: torch.ones(w) for k, w in masked.widths.items()}
    stats = activation_stats(masked, x, batch_size=5)  # uneven batches: running means
    want = reference_mean_abs(post, _double(model), masks, x)
    model.float()
    _assert_close(stats.mean_abs, want)
    assert stats.samples == len(x)


def test_the_absolute_value_is_taken_after_the_spatial_mean_and_matters():
    """With tanh after BatchNorm some units' spatial means are negative: E uses |mean|, which is
    neither the signed mean nor the mean of |values|."""
    model, masked, x = _setup(BnConvNet, (2, 5, 5))
    stats = activation_stats(masked, x)
    masks = {k: torch.ones(w) for k, w in masked.widths.items()}
    with torch.no_grad():
        signed = torch.stack([post["conv1"][0].mean((1, 2)) for post in
                              (_post_conv(model, masks, x[i : i + 1]) for i in range(len(x)))])
        abs_first = torch.stack([post["conv1"][0].abs().mean((1, 2)) for post in
                                 (_post_conv(model, masks, x[i : i + 1]) for i in range(len(x)))])
    assert (signed < 0).any(), "the test needs negative spatial means to be meaningful"
    got = stats.mean_abs["conv1"]
    assert not torch.allclose(got, signed.mean(0), atol=1e-4)
    assert not torch.allclose(got, abs_first.mean(0), atol=1e-4)
    torch.testing.assert_close(got, signed.abs().mean(0), atol=1e-5, rtol=1e-5)


def test_mlp_with_negative_activations_needs_the_absolute_value():
    model, masked, x = _setup(TanhGeluMLP, (6,))
    stats = activation_stats(masked, x)
    masks = {k: torch.ones(w) for k, w in masked.widths.items()}
    with torch.no_grad():
        signed = torch.cat([_post_mlp(model, masks, x[i : i + 1])["fc3"] for i in range(len(x))])
    assert (signed.mean(0) < 0).any()  # BatchNorm before the mask gives negative outputs
    torch.testing.assert_close(stats.mean_abs["fc3"], signed.abs().mean(0), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("cls", "shape", "post"),
    [(TanhGeluMLP, (6,), _post_mlp), (BnConvNet, (2, 5, 5), _post_conv),
     (ReluNet, (1, 8, 8), _post_relu)],
    ids=["mlp", "bn-cnn", "relu-cnn"],
)
def test_dropped_units_score_exactly_zero_and_others_follow_the_masked_reference(cls, shape, post):
    model, masked, x = _setup(cls, shape, seed=1)
    masks = {}
    for i, (layer, w) in enumerate(masked.widths.items()):
        alive = torch.ones(w, dtype=torch.bool)
        alive[(i % w)] = False
        if w > 3:
            alive[w - 1] = False
        masks[layer] = alive
    masked.set_masks(masks)
    stats = activation_stats(masked, x)
    for layer, alive in masks.items():
        assert torch.all(stats.mean_abs[layer][~alive] == 0.0)
        assert (stats.mean_abs[layer][alive] > 0.0).any()  # zeros are not everywhere
    want = reference_mean_abs(post, _double(model), {k: v.double() for k, v in masks.items()}, x)
    model.float()
    _assert_close(stats.mean_abs, want)


def test_samples_uses_only_the_first_n_rows():
    model, masked, x = _setup(TanhGeluMLP, (6,), n=30)
    masks = {k: torch.ones(w) for k, w in masked.widths.items()}
    stats = activation_stats(masked, x, samples=7, batch_size=3)
    assert stats.samples == 7
    want = reference_mean_abs(_post_mlp, _double(model), masks, x[:7])
    model.float()
    _assert_close(stats.mean_abs, want)
    full = activation_stats(masked, x)
    assert not torch.allclose(full.mean_abs["fc1"], stats.mean_abs["fc1"], atol=1e-4)
    # the rows after the first 7 do not matter at all
    x2 = x.clone()
    x2[7:] = torch.randn_like(x2[7:]) * 10
    again = activation_stats(masked, x2, samples=7)
    _assert_close(again.mean_abs, stats.mean_abs)


def test_apoz_matches_a_loop_over_samples_and_positions():
    model, masked, x = _setup(ReluNet, (1, 8, 8), n=19)
    masks = {"conv": torch.tensor([1, 1, 0, 1, 1], dtype=torch.bool),
             "fc": torch.tensor([1, 0, 1, 1, 1, 1], dtype=torch.bool)}
    masked.set_masks(masks)
    stats = activation_stats(masked, x, batch_size=4)
    want = reference_apoz(_post_relu, model, masks, x)
    _assert_close(stats.apoz, want)
    assert stats.apoz["conv"][2] == 1.0 and stats.apoz["fc"][1] == 1.0  # dropped: always zero
    # the test is only meaningful with units that are neither always nor never zero
    assert ((want["conv"] > 0) & (want["conv"] < 1)).any()


def test_activation_stats_restores_training_mode_and_changes_no_weight():
    model, masked, x = _setup(BnConvNet, (2, 5, 5))
    masked.train()
    before = {k: v.clone() for k, v in masked.state_dict().items()}
    activation_stats(masked, x)
    assert masked.training
    after = masked.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats untouched


def test_weight_magnitude_is_the_l1_norm_of_incoming_rows():
    model, masked, x = _setup(ReluNet, (1, 8, 8))
    got = weight_magnitude(masked)
    for layer, module in (("conv", model.conv), ("fc", model.fc)):
        w = module.weight.detach()
        want = torch.tensor([sum(abs(v) for v in w[i].flatten().tolist()) for i in range(len(w))])
        torch.testing.assert_close(got[layer], want.float(), atol=1e-5, rtol=1e-5)


def test_unit_scores_turns_every_criterion_into_lower_goes_first():
    model, masked, x = _setup(ReluNet, (1, 8, 8))
    stats = activation_stats(masked, x)
    mags = weight_magnitude(masked)
    for layer in masked.layers:
        assert torch.equal(unit_scores("activation", masked, x)[layer], stats.mean_abs[layer])
        assert torch.equal(unit_scores("negative_activation", masked, x)[layer],
                           -stats.mean_abs[layer])
        assert torch.equal(unit_scores("apoz", masked, x)[layer], -stats.apoz[layer])
        assert torch.equal(unit_scores("magnitude", masked, x)[layer], mags[layer])
        assert torch.equal(unit_scores("random", masked, x)[layer],
                           torch.zeros(masked.widths[layer]))
    sub = unit_scores("activation", masked, x, samples=4)
    assert torch.equal(sub["fc"], activation_stats(masked, x, samples=4).mean_abs["fc"])
    with pytest.raises(ValueError, match="unknown criterion"):
        unit_scores("nope", masked, x)
