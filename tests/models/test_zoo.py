import math

import pytest
import torch
from torch import nn

from secateurs.errors import ConfigError
from secateurs.models import build_model, find_prunable_layers, list_models, parse_model_spec
from secateurs.pruning.recurrent import resolve

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]
# Small widths keep the big models quick; shapes are what is checked.
SMALL = {
    "resnet18": {"width": 8},
    "resnet18-dropnet": {"width": 8},
    "vgg11": {"scale": 0.125},
    "vgg13": {"scale": 0.125},
    "vgg16": {"scale": 0.125},
    "vgg19": {"scale": 0.125},
}


@pytest.mark.parametrize("name", [m.name for m in list_models()])
@pytest.mark.parametrize("shape", SHAPES)
def test_every_model_gives_logits_for_every_input_shape(name, shape):
    model = build_model(name, shape, 10, **SMALL.get(name, {}))
    out = model(torch.rand(3, *shape))
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()
    model7 = build_model(name, shape, 7, **SMALL.get(name, {}))
    assert model7(torch.rand(2, *shape)).shape == (2, 7)


@pytest.mark.parametrize("name", [m.name for m in list_models()])
def test_prunable_layers_exist_and_exclude_the_output_layer(name):
    model = build_model(name, (3, 32, 32), 10, **SMALL.get(name, {}))
    modules = dict(model.named_modules())
    layers = model.prunable_layers
    assert layers
    for layer in layers:
        if resolve(model, layer) is not None:  # a recurrent layer (docs/recurrent.md)
            continue
        assert isinstance(modules[layer], (nn.Linear, nn.Conv2d))
    linears = [n for n, m in modules.items() if isinstance(m, nn.Linear)]
    assert linears[-1] not in layers


def test_paper_architectures_have_the_papers_sizes():
    # Model A FC40-FC40 on MNIST: 784*40+40 + 40*40+40 + 40*10+10 parameters.
    a = build_model("model-a", (1, 28, 28), 10)
    assert sum(p.numel() for p in a.parameters()) == 784 * 40 + 40 + 40 * 40 + 40 + 40 * 10 + 10
    # The paper's ResNet18: 20 pruned convs, 4800 filters.
    r = build_model("resnet18-dropnet", (3, 32, 32), 10)
    convs = [dict(r.named_modules())[n] for n in r.prunable_layers]
    assert len(convs) == 20 and sum(c.out_channels for c in convs) == 4800
    assert not any(isinstance(m, nn.BatchNorm2d) for m in r.modules())
    # Model C: the FC 256 before the output is not prunable.
    c = build_model("model-c", (3, 32, 32), 10)
    fc = [n for n, m in c.named_modules() if isinstance(m, nn.Linear)]
    assert len(fc) == 2 and fc[0] not in c.prunable_layers
    assert [dict(c.named_modules())[n].out_channels for n in c.prunable_layers] == [
        64,
        64,
        128,
        128,
    ]
    # VGG19 has 16 convs, BatchNorm after the last conv of each of its 5 blocks.
    v = build_model("vgg19", (3, 32, 32), 10)
    assert len(v.prunable_layers) == 16
    assert sum(isinstance(m, nn.BatchNorm2d) for m in v.modules()) == 5


def test_options_and_specs():
    m = build_model("model-a:widths=20-30", (1, 8, 8), 10)
    widths = [dict(m.named_modules())[n].out_features for n in m.prunable_layers]
    assert widths == [20, 30]
    assert parse_model_spec("model-c:widths=128-128-256-256,hidden=64") == (
        "model-c",
        {"widths": [128, 128, 256, 256], "hidden": 64},
    )
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        build_model("nope", (1, 8, 8), 10)
    with pytest.raises(ConfigError, match="widths must be positive"):
        build_model("model-a:widths=0-3", (1, 8, 8), 10)
    assert len(build_model("model-a:widths=7", (1, 8, 8), 10).prunable_layers) == 1
    with pytest.raises(ConfigError, match="no option depth"):
        build_model("model-a", (1, 8, 8), 10, depth=3)


def test_find_prunable_layers_of_a_users_module():
    class Mine(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.fc1 = nn.Linear(4 * 6 * 6, 16)
            self.out = nn.Linear(16, 3)

        def forward(self, x):
            x = torch.relu(self.conv(x)).flatten(1)
            return self.out(torch.tanh(self.fc1(x)))

    assert find_prunable_layers(Mine()) == ("conv", "fc1")
    assert math.prod((2, 3)) == 6
