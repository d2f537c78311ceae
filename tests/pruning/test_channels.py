"""Channel flow helpers against hand-computed cases: which input positions a consumer keeps, and
how a reshape moves the channel axis."""

from __future__ import annotations

import torch

from secateurs.pruning.channels import Space, _merge_groups, _reshaped


def test_input_index_of_concatenated_and_flattened_segments():
    # cat([A (3 channels), fixed (2), B (2)]) then flatten of 2 positions per channel
    space = Space(1, (("A", 3), (None, 2), ("B", 2)), inner=2)
    keep = {"A": [0, 2], "B": [1]}
    # channels kept: A0 A2 | f0 f1 | B1  -> positions (channel * 2 + j)
    channels = [0, 2, 3, 4, 6]
    assert space.input_index(keep) == [c * 2 + j for c in channels for j in range(2)]
    # a per-token layout flattened: (T=2 outer copies) x (A: 3 channels)
    tokens = Space(1, (("A", 3),), outer=2)
    assert tokens.input_index({"A": [1]}) == [1, 4]
    assert tokens.length == 6


def test_input_index_matches_slicing_a_real_tensor():
    gen = torch.Generator().manual_seed(0)
    a, b, fixed = torch.randn(2, 3, 2, 2, generator=gen), torch.randn(2, 2, 2, 2, generator=gen), \
        torch.randn(2, 1, 2, 2, generator=gen)
    full = torch.cat([a, fixed, b], 1).flatten(1)
    small = torch.cat([a[:, [0, 2]], fixed, b[:, [1]]], 1).flatten(1)
    space = Space(1, (("A", 3), (None, 1), ("B", 2)), inner=4)
    assert torch.equal(full[:, space.input_index({"A": [0, 2], "B": [1]})], small)


def test_reshapes_that_merge_dims_move_the_channel_axis():
    assert _merge_groups((2, 4, 3, 3), (2, 36)) == [[0], [1, 2, 3]]
    assert _merge_groups((2, 4, 1, 1), (2, 4)) == [[0], [1, 2, 3]]
    assert _merge_groups((2, 4), (2, 4, 1, 1)) == [[0], [1], [], []]
    assert _merge_groups((2, 6), (2, 2, 3)) is None  # a split: not followed
    moved = _reshaped(Space(1, (("A", 4),)), (2, 4, 3, 3), (2, 36))
    assert moved == Space(1, (("A", 4),), inner=9)
    per_token = _reshaped(Space(2, (("A", 5),)), (2, 8, 5), (2, 40))
    assert per_token == Space(1, (("A", 5),), outer=8)
