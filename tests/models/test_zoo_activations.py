"""The zoo's activation options (``model-a:act=softplus``, ...) for Models A, B and C."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from secateurs.errors import ConfigError
from secateurs.models import build_model
from secateurs.pruning import export_pruned
from secateurs.pruning.importance import activation_stats
from secateurs.pruning.masks import MaskedNetwork

ACTS = {"relu": nn.ReLU, "softplus": nn.Softplus, "tanh": nn.Tanh, "gelu": nn.GELU}
MODELS = {
    "model-a": "widths=6-5",
    "model-b": "widths=3-4",
    "model-c": "widths=2-3-2-3,hidden=7",
}


def _activations(model: nn.Module) -> list[type]:
    return [type(m) for m in model.modules() if isinstance(m, tuple(ACTS.values()))]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("act", ACTS)
def test_act_option_puts_that_activation_after_every_hidden_layer(name, act):
    model = build_model(f"{name}:{MODELS[name]},act={act}", (1, 8, 8), 10)
    # every Linear/Conv2d but the output layer is followed by one activation of that kind
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    assert _activations(model) == [ACTS[act]] * (len(layers) - 1)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("name", MODELS)
def test_default_is_relu_and_act_is_case_insensitive(name):
    default = build_model(f"{name}:{MODELS[name]}", (1, 8, 8), 10)
    assert set(_activations(default)) == {nn.ReLU}
    upper = build_model(f"{name}:{MODELS[name]},act=Softplus", (1, 8, 8), 10)
    assert set(_activations(upper)) == {nn.Softplus}


@pytest.mark.parametrize("name", MODELS)
def test_unknown_activation_is_a_one_line_error_naming_it(name):
    with pytest.raises(ConfigError, match=rf"{name}: act must be one of relu, softplus, tanh, "
                                          r"gelu, got 'swish'"):
        build_model(f"{name}:act=swish", (1, 8, 8), 10)
    with pytest.raises(ConfigError, match="got 3"):
        build_model(name, (1, 8, 8), 10, act=3)


def test_same_seed_same_weights_whatever_the_activation():
    # The activation has no parameters, so a seed gives the same theta0 for every act: studies
    # with different activations start from the same weights.
    states = []
    for act in ACTS:
        torch.manual_seed(3)
        states.append(build_model(f"model-a:widths=6-5,act={act}", (1, 8, 8), 10).state_dict())
    for state in states[1:]:
        assert all(torch.equal(state[k], states[0][k]) for k in state)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("act", ["softplus", "tanh", "gelu"])
def test_masked_and_exported_networks_agree_with_non_relu_activations(name, act):
    torch.manual_seed(0)
    model = build_model(f"{name}:{MODELS[name]},act={act}", (1, 8, 8), 10)
    x = torch.rand(5, 1, 8, 8)
    masked = MaskedNetwork(model, x[:2])
    gen = torch.Generator().manual_seed(1)
    masks = {}
    for layer, width in masked.widths.items():
        alive = torch.rand(width, generator=gen) > 0.5
        alive[0] = True
        masks[layer] = alive
    masked.set_masks(masks)
    masked.eval()
    want = masked(x)
    small = export_pruned(masked, x[:1]).module.eval()
    assert torch.allclose(small(x), want, atol=1e-5)


def test_softplus_scores_are_mean_absolute_activation_and_dropped_units_score_zero():
    torch.manual_seed(0)
    model = build_model("model-a:widths=6-5,act=softplus", (1, 8, 8), 10)
    x = torch.rand(20, 1, 8, 8)
    masked = MaskedNetwork(model, x[:2])
    masked.set_masks({"net.1": torch.tensor([1, 0, 1, 1, 1, 1]).bool()})
    stats = activation_stats(masked, x)
    with torch.no_grad():
        a = torch.nn.functional.softplus(model.net[1](x.flatten(1)))  # never exactly zero
    want = a.abs().mean(0)
    want[1] = 0.0
    assert torch.allclose(stats.mean_abs["net.1"], want, atol=1e-6)
    assert (stats.mean_abs["net.1"][[0, 2, 3, 4, 5]] > 0).all()
    assert float(stats.apoz["net.1"][0]) == 0.0  # softplus output is never an exact zero
