"""Dropping residual-coupled channels as one group, so that export can remove every one of them."""

import torch

from secateurs.data import load_dataset
from secateurs.pruning import DropNet, DropNetConfig, export_pruned
from secateurs.pruning.dropnet import group_coupled, ungroup_coupled
from secateurs.training import TrainConfig


def test_group_view_scores_a_channel_by_the_mean_of_the_producers_that_keep_it():
    scores = {
        "a": torch.tensor([1.0, 2.0, 3.0]),
        "b": torch.tensor([3.0, 0.0, 5.0]),
        "c": torch.tensor([9.0]),
    }
    alive = {
        "a": torch.tensor([True, True, False]),
        "b": torch.tensor([True, False, False]),
        "c": torch.tensor([True]),
    }
    s, on = group_coupled(scores, alive, [("a", "b")])
    assert set(s) == {"c", "a+b"}
    assert torch.equal(on["a+b"], torch.tensor([True, True, False]))
    assert torch.allclose(s["a+b"][:2], torch.tensor([2.0, 2.0]))  # (1+3)/2 and 2 alone
    drop = ungroup_coupled({"c": [], "a+b": [0, 1]}, [("a", "b")], alive)
    assert drop == {"c": [], "a": [0, 1], "b": [0]}  # only where the unit is still alive


def _run(coupled: str) -> DropNet:
    data = load_dataset("synthetic:n=120,classes=3,shape=3x8x8")
    config = DropNetConfig(
        metric="minimum",
        fraction=0.3,
        until=None,
        max_rounds=2,
        coupled=coupled,
        train=TrainConfig(max_epochs=1),
    )
    dn = DropNet("resnet18-dropnet:width=4", data, config, seed=0)
    dn.run()
    return dn


def test_grouped_drops_keep_coupled_masks_equal_and_export_removes_every_dropped_unit():
    dn = _run("group")
    masks = dn.masked.get_masks()
    assert dn.masked.coupled_groups
    for group in dn.masked.coupled_groups:
        for layer in group[1:]:
            assert torch.equal(masks[group[0]], masks[layer])
    exported = export_pruned(dn.masked, torch.zeros(1, 3, 8, 8))
    dropped = sum(int((~m).sum()) for m in masks.values())
    assert dropped > 0
    assert sum(len(v) for v in exported.removed.values()) == dropped
    assert not any(exported.zeroed.values())


def test_separate_drops_follow_the_paper_and_may_leave_channels_to_zero():
    dn = _run("separate")
    masks = dn.masked.get_masks()
    differs = any(
        not torch.equal(masks[g[0]], masks[x]) for g in dn.masked.coupled_groups for x in g[1:]
    )
    exported = export_pruned(dn.masked, torch.zeros(1, 3, 8, 8))
    assert differs and any(exported.zeroed.values())
