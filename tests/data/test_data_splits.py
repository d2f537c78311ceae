"""Stratified, seeded splitting: checked against the definition (per-class fractions, disjoint
cover) rather than against the implementation's own output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from secateurs.data import load_dataset, make_splits, stratified_split
from secateurs.errors import DataError


def labelled(counts: list[int], seed: int = 0):
    y = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    y = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))]
    x = torch.arange(len(y), dtype=torch.float32)[:, None]  # x identifies the sample
    return x, y


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=10, max_value=60), min_size=2, max_size=6),
    fraction=st.floats(min_value=0.1, max_value=0.5),
    seed=st.integers(0, 1000),
)
def test_stratified_split_is_a_partition_with_per_class_fractions(counts, fraction, seed):
    x, y = labelled(counts, seed)
    x_rest, y_rest, x_part, y_part = stratified_split(x, y, fraction, seed)
    ids = sorted(x_rest[:, 0].long().tolist() + x_part[:, 0].long().tolist())
    assert ids == list(range(len(y)))  # disjoint and covering
    assert torch.equal(y[x_part[:, 0].long()], y_part)  # labels travel with their samples
    # the held-out part has ceil(fraction * n) samples, shared among classes in proportion: each
    # class's count is within rounding (under 2 samples) of fraction * its size
    assert len(y_part) == int(np.ceil(fraction * len(y)))
    part_counts = torch.bincount(y_part, minlength=len(counts)).tolist()
    assert all(abs(p - fraction * c) < 2 for p, c in zip(part_counts, counts, strict=True))
    again = stratified_split(x, y, fraction, seed)
    assert torch.equal(again[2], x_part)  # seeded: the same split each time


def test_split_depends_on_seed():
    x, y = labelled([50, 50, 50])
    a = stratified_split(x, y, 0.2, 0)[2]
    b = stratified_split(x, y, 0.2, 1)[2]
    assert not torch.equal(a, b)


def test_bad_fraction():
    x, y = labelled([10, 10])
    with pytest.raises(DataError, match="fraction must be in"):
        stratified_split(x, y, 1.0, 0)


def test_make_splits_counts_and_mismatch():
    x, y = labelled([30, 30, 40])
    s = make_splits("t", x, y, None, None, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert (len(s.y_train), len(s.y_val), len(s.y_test)) == (72, 8, 20)
    assert torch.bincount(s.y_test).tolist() == [6, 6, 8]
    with pytest.raises(DataError, match="100 images but 99 labels"):
        make_splits("t", x, y[:-1], None, None)


def test_digits_default_is_ten_percent_validation():
    d = load_dataset("digits")
    assert len(d.y_val) == pytest.approx(0.1 * (len(d.y_train) + len(d.y_val)), abs=1)
    assert d.note == "" and d.source == ""


def test_a_class_of_one_sample_does_not_turn_stratification_off():
    y = torch.tensor([0] * 40 + [1] * 40 + [2])
    x = torch.arange(len(y)).float()[:, None]
    x_rest, y_rest, x_part, y_part = stratified_split(x, y, 0.2, seed=0)
    assert torch.bincount(y_part, minlength=3).tolist() == [8, 8, 0]
    assert 2 in y_rest.tolist()  # the single sample stays in the first part
    assert sorted(torch.cat([x_rest, x_part]).flatten().tolist()) == x.flatten().tolist()


@pytest.mark.parametrize("labels,message", [
    ([0, 1, 2, 3] * 10 + [10**9], r"labels go up to 1000000000 but only 5 distinct values"),
    ([3] * 20, r"every sample has label 3; a classifier needs at least 2 classes"),
])
def test_labels_that_are_not_class_indices_are_refused(labels, message):
    y = torch.tensor(labels)
    with pytest.raises(DataError, match=message):
        make_splits("d", torch.zeros(len(y), 2), y, None, None)
