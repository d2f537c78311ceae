"""Live input paths and path strength against slow loops over pixels and paths written here."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from secateurs.errors import ConfigError
from secateurs.models import build_model
from secateurs.pruning.masks import MaskedNetwork
from secateurs.reporting.input_paths import input_path_strength, live_inputs

pytestmark = pytest.mark.usefixtures("one_thread")


def _masked(spec: str, seed: int = 0) -> MaskedNetwork:
    torch.manual_seed(seed)
    model = build_model(spec, (1, 8, 8), 10)
    return MaskedNetwork(model, torch.zeros(2, 1, 8, 8))


def _slow_fc(w1, m1, w2, m2, w3) -> torch.Tensor:
    """Model A with two hidden layers: for every pixel, the sum over (unit j, unit k, output c)
    of |w3[c,k]| m2[k] |w2[k,j]| m1[j] |w1[j,i]|."""
    out = torch.zeros(w1.shape[1], dtype=torch.float64)
    for i in range(w1.shape[1]):
        total = 0.0
        for j in range(w1.shape[0]):
            if not m1[j] or w1[j, i] == 0:
                continue
            for k in range(w2.shape[0]):
                if not m2[k] or w2[k, j] == 0:
                    continue
                for c in range(w3.shape[0]):
                    total += abs(float(w3[c, k])) * abs(float(w2[k, j])) * abs(float(w1[j, i]))
        out[i] = total
    return out


def test_model_a_path_strength_and_live_pixels_match_the_loop():
    masked = _masked("model-a:widths=6-5")
    net = masked.original.net
    m1 = torch.tensor([1, 0, 1, 1, 0, 1]).bool()
    m2 = torch.tensor([0, 1, 1, 0, 1]).bool()
    masked.set_masks({"net.1": m1, "net.3": m2})
    with torch.no_grad():
        # pixel 5 reaches only dropped units of the first layer: dead
        net[1].weight[m1, 5] = 0.0
        # pixel 9 reaches alive unit 2 only, and unit 2 reaches only dropped second-layer units
        net[1].weight[:, 9] = 0.0
        net[1].weight[2, 9] = 0.7
        net[3].weight[m2, 2] = 0.0
        # pixel 20 reaches only unit 0, whose paths all end in a zero row of the output layer
        net[1].weight[:, 20] = 0.0
        net[1].weight[0, 20] = -0.3
        net[3].weight[:, 0] = 0.0
        net[3].weight[4, 0] = 0.5
        net[5].weight[:, 4] = 0.0
    want = _slow_fc(net[1].weight.detach(), m1, net[3].weight.detach(), m2, net[5].weight.detach())
    got = input_path_strength(masked).flatten()
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-12)
    live = live_inputs(masked).flatten()
    assert not live[5] and not live[9] and not live[20]
    assert int(live.sum()) == 64 - 3
    assert torch.equal(live, want > 0)


def test_path_strength_ignores_activations_and_biases():
    relu, soft = _masked("model-a:widths=6-5", 1), _masked("model-a:widths=6-5,act=softplus", 1)
    with torch.no_grad():
        for p in soft.original.parameters():
            if p.dim() == 1:
                p.add_(3.0)  # other biases
    assert torch.allclose(input_path_strength(relu), input_path_strength(soft))


def _slow_conv(x, w, mask):
    """3x3 convolution, padding 1, with |w|, per output channel times its mask, by loops."""
    c_out, c_in, h, wd = w.shape[0], x.shape[0], x.shape[1], x.shape[2]
    out = torch.zeros(c_out, h, wd, dtype=torch.float64)
    for o in range(c_out):
        if not mask[o]:
            continue
        for y in range(h):
            for xx in range(wd):
                s = 0.0
                for c in range(c_in):
                    for dy in range(3):
                        for dx in range(3):
                            yy, xs = y + dy - 1, xx + dx - 1
                            if 0 <= yy < h and 0 <= xs < wd:
                                s += abs(float(w[o, c, dy, dx])) * float(x[c, yy, xs])
                out[o, y, xx] = s
    return out


def _slow_sum_pool(x):
    c, h, w = x.shape
    out = torch.zeros(c, h // 2, w // 2, dtype=torch.float64)
    for k in range(c):
        for y in range(h // 2):
            for xx in range(w // 2):
                out[k, y, xx] = sum(float(x[k, 2 * y + a, 2 * xx + b]) for a in (0, 1)
                                    for b in (0, 1))
    return out


def test_model_b_path_strength_matches_one_hot_loops_through_every_window():
    masked = _masked("model-b:widths=2-3", 2)
    f = masked.original.features
    head = masked.original.classifier[1].weight.detach()
    m1, m2 = torch.tensor([1, 0]).bool(), torch.tensor([1, 1, 0]).bool()
    masked.set_masks({"features.0": m1, "features.3": m2})
    want = torch.zeros(64, dtype=torch.float64)
    for i in range(64):
        x = torch.zeros(1, 8, 8, dtype=torch.float64)
        x.view(-1)[i] = 1.0
        a = _slow_sum_pool(_slow_conv(x, f[0].weight.detach(), m1))
        b = _slow_sum_pool(_slow_conv(a, f[3].weight.detach(), m2))
        flat = b.flatten()
        want[i] = sum(abs(float(head[c, j])) * float(flat[j])
                      for c in range(head.shape[0]) for j in range(len(flat)))
    got = input_path_strength(masked).flatten()
    assert torch.allclose(got, want, rtol=1e-9)
    assert bool((got > 0).all())  # 3x3 convolutions with zero padding reach every pixel


class _Square(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.out = nn.Linear(3, 2)

    def forward(self, x):
        h = self.fc(x)
        return self.out(h * h)


def test_an_op_with_no_path_rule_is_a_config_error():
    masked = MaskedNetwork(_Square(), torch.zeros(2, 4), layers=["fc"])
    with pytest.raises(ConfigError, match="cannot follow input paths through a product of two"):
        input_path_strength(masked)
