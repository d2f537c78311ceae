"""The oracle: the batched removal losses equal an obvious loop (written here, and the library's
naive one), its choice is the argmin, and a unit alone in its layer is never a candidate."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from secateurs.models import build_model
from secateurs.pruning import (
    MaskedNetwork,
    oracle_choice,
    removal_losses,
    removal_losses_naive,
)
from secateurs.pruning.oracle import candidates

pytestmark = pytest.mark.usefixtures("one_thread")


def _net(spec: str, data, seed=0) -> MaskedNetwork:
    torch.manual_seed(seed)
    model = build_model(spec, data.input_shape, data.num_classes)
    with torch.no_grad():  # larger weights than the init, so that units matter unequally
        for p in model.parameters():
            p.mul_(2.0)
    return MaskedNetwork(model, data.x_train[:2])


def _loop(masked: MaskedNetwork, x, y, units) -> torch.Tensor:
    """Reference: for each unit, set the masks with it removed, one forward, mean cross-entropy."""
    original = {k: v.clone() for k, v in masked.get_masks().items()}
    out = []
    masked.eval()
    with torch.no_grad():
        for layer, unit in units:
            masks = {k: v.clone() for k, v in original.items()}
            masks[layer][unit] = False
            masked.set_masks(masks)
            out.append(F.cross_entropy(masked(x).double(), y).item())
    masked.set_masks(original)
    return torch.tensor(out, dtype=torch.float64)


@pytest.fixture(scope="module")
def small(digits):
    return digits.x_train[:300], digits.y_train[:300]


@pytest.mark.parametrize("spec", ["model-a:widths=7-5", "model-b:widths=4-3"], ids=["mlp", "cnn"])
def test_batched_removal_losses_equal_the_naive_loop(spec, digits, small):
    x, y = small
    masked = _net(spec, digits)
    layers = list(masked.widths)
    masks = {k: torch.ones(w, dtype=torch.bool) for k, w in masked.widths.items()}
    masks[layers[0]][1] = False  # an already dropped unit is not a candidate
    masked.set_masks(masks)
    units = candidates(masked)
    assert (layers[0], 1) not in units
    assert len(units) == sum(masked.widths.values()) - 1
    # chunk and batch sizes that do not divide the counts, to exercise the accumulation
    batched = removal_losses(masked, x, y, units, chunk=4, batch_size=70)
    naive = removal_losses_naive(masked, x, y, units)
    reference = _loop(masked, x, y, units)
    assert batched.shape == naive.shape == (len(units),)
    torch.testing.assert_close(batched.double(), reference, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(naive.double(), reference, atol=1e-5, rtol=1e-5)
    # different units give different losses: the comparison is not trivially satisfied
    assert reference.max() - reference.min() > 1e-3
    # the defaults (all candidates, one chunk) give the same
    torch.testing.assert_close(removal_losses(masked, x, y), batched, atol=1e-6, rtol=1e-6)
    # masks untouched afterwards
    assert all(torch.equal(masked.get_masks()[k], masks[k]) for k in masks)


def test_removal_losses_leave_the_network_as_it_was(digits, small):
    x, y = small
    masked = _net("model-a:widths=6-6", digits)
    masked.train()
    before = {k: v.clone() for k, v in masked.state_dict().items()}
    removal_losses(masked, x, y, chunk=5)
    assert masked.training
    assert all(torch.equal(before[k], v) for k, v in masked.state_dict().items())


def test_oracle_choice_is_the_argmin_over_candidates(digits, small):
    x, y = small
    for seed in range(3):
        masked = _net("model-a:widths=6-5", digits, seed=seed)
        units = candidates(masked)
        losses = _loop(masked, x, y, units)
        want = units[int(torch.argmin(losses))]
        assert oracle_choice(masked, x, y, chunk=3) == want
        # and it is not simply the first candidate
        assert want == min(units, key=lambda u: losses[units.index(u)].item())


def test_a_unit_alone_in_its_layer_is_never_a_candidate(digits, small):
    x, y = small
    masked = _net("model-a:widths=6-5", digits)
    masks = {"net.1": torch.ones(6, dtype=torch.bool), "net.3": torch.zeros(5, dtype=torch.bool)}
    masks["net.3"][2] = True  # net.3 is down to its last unit
    masked.set_masks(masks)
    units = candidates(masked)
    assert units == [("net.1", i) for i in range(6)]
    # even if removing that last unit would give the lowest loss, the oracle never picks it
    pick = oracle_choice(masked, x, y)
    assert pick is not None and pick[0] == "net.1"
    masks["net.1"] = torch.zeros(6, dtype=torch.bool)
    masks["net.1"][4] = True
    masked.set_masks(masks)
    assert candidates(masked) == []
    assert oracle_choice(masked, x, y) is None


def test_exact_ties_are_broken_at_random_with_the_runs_generator(digits, small):
    x, y = small
    masked = _net("model-a:widths=6-5", digits)
    last = [m for m in masked.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()  # the logits no longer depend on any hidden unit: every removal ties
    units = candidates(masked)
    losses = removal_losses(masked, x, y, units)
    assert torch.all(losses == losses[0])
    assert oracle_choice(masked, x, y) == units[0]  # no generator: the first candidate
    picks = [oracle_choice(masked, x, y, generator=torch.Generator().manual_seed(s))
             for s in range(40)]
    assert {layer for layer, _ in picks} == {layer for layer, _ in units}
    assert len(set(picks)) >= 6
    again = [oracle_choice(masked, x, y, generator=torch.Generator().manual_seed(s))
             for s in range(40)]
    assert again == picks  # seeded: reproducible
