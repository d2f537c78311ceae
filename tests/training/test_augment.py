"""Batch augmentation: shapes, flips equal torch.flip, crops equal a slow per-image loop written
here, reproducibility from the seed, training batches only, and refusal for non-image data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from secateurs.data.splits import DatasetSplits
from secateurs.errors import ConfigError
from secateurs.training import TrainConfig, augment_batch, random_crop, random_flip, train

pytestmark = pytest.mark.usefixtures("one_thread")


def images(n=16, c=3, h=7, w=5, seed=0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed)) + 0.5  # no zeros


def slow_crop(x: torch.Tensor, padding: int, offsets: torch.Tensor) -> torch.Tensor:
    """One image at a time: paste into a zero canvas, cut the window at (row, col) offsets."""
    n, c, h, w = x.shape
    out = torch.empty_like(x)
    for i in range(n):
        canvas = torch.zeros(c, h + 2 * padding, w + 2 * padding)
        for ch in range(c):
            for r in range(h):
                for q in range(w):
                    canvas[ch, r + padding, q + padding] = x[i, ch, r, q]
        dy, dx = int(offsets[0, i]), int(offsets[1, i])
        out[i] = canvas[:, dy : dy + h, dx : dx + w]
    return out


def test_crop_equals_a_slow_loop_and_keeps_shapes():
    x = images()
    out = random_crop(x, 3, torch.Generator().manual_seed(5))
    assert out.shape == x.shape and out.dtype == x.dtype
    offsets = torch.randint(0, 7, (2, len(x)), generator=torch.Generator().manual_seed(5))
    assert torch.equal(out, slow_crop(x, 3, offsets))
    # the offsets cover shifted crops (zeros came in) and an unshifted one is the image itself
    shifted = (offsets != 3).any(0)
    assert shifted.any() and all(bool((out[i] == 0).any()) for i in range(len(x)) if shifted[i])
    for i in range(len(x)):
        if not shifted[i]:
            assert torch.equal(out[i], x[i])


def test_flip_equals_torch_flip_of_the_chosen_images():
    x = images(n=32)
    out = random_flip(x, torch.Generator().manual_seed(2))
    chosen = torch.rand(32, generator=torch.Generator().manual_seed(2)) < 0.5
    assert 0 < int(chosen.sum()) < 32
    assert torch.equal(out[chosen], torch.flip(x[chosen], dims=[3]))
    assert torch.equal(out[~chosen], x[~chosen])


def test_augment_batch_is_crop_then_flip_from_one_generator():
    x = images(n=24, h=8, w=8)
    config = TrainConfig(augment=True, crop_padding=2)
    out = augment_batch(x, config, torch.Generator().manual_seed(9))
    gen = torch.Generator().manual_seed(9)
    offsets = torch.randint(0, 5, (2, 24), generator=gen)
    flips = torch.rand(24, generator=gen) < 0.5
    want = slow_crop(x, 2, offsets)
    want[flips] = torch.flip(want[flips], dims=[3])
    assert torch.equal(out, want)
    no_flip = augment_batch(x, TrainConfig(augment=True, crop_padding=2, flip=False),
                            torch.Generator().manual_seed(9))
    assert torch.equal(no_flip, slow_crop(x, 2, offsets))


def test_reproducible_from_the_seed_and_different_across_seeds():
    x = images(n=20, h=10, w=10)
    config = TrainConfig(augment=True)
    a = augment_batch(x, config, torch.Generator().manual_seed(1))
    b = augment_batch(x, config, torch.Generator().manual_seed(1))
    c = augment_batch(x, config, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_off_by_default_and_returned_untouched():
    x = images()
    assert TrainConfig().augment is False
    assert augment_batch(x, TrainConfig(), torch.Generator()) is x


def _tiny_split(x: torch.Tensor, y: torch.Tensor) -> DatasetSplits:
    return DatasetSplits("tiny", x, y, x[:8].clone(), y[:8].clone(), x[:8].clone(), y[:8].clone(), 2)


class Recorder(nn.Module):
    """A small net that records what it sees in training and in evaluation."""

    def __init__(self, features: int):
        super().__init__()
        self.fc = nn.Linear(features, 2)
        self.seen = {True: [], False: []}

    def forward(self, x):
        self.seen[self.training].append(x.detach().clone())
        return self.fc(x.flatten(1))


def test_only_training_batches_are_augmented():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 1, 6, 6, generator=g) + 0.5
    y = torch.randint(0, 2, (40,), generator=g)
    data = _tiny_split(x, y)
    model = Recorder(36)
    train(model, data, TrainConfig(augment=True, max_epochs=2, patience=None, batch_size=10),
          progress=False)
    trained = torch.cat(model.seen[True])
    assert trained.shape == (80, 1, 6, 6)
    assert bool((trained == 0).any())  # zero padding came in: the batches were cropped
    evaluated = torch.cat(model.seen[False])
    assert torch.equal(evaluated, data.x_val.repeat(2, 1, 1, 1))  # validation as it is
    plain = Recorder(36)
    train(plain, data, TrainConfig(max_epochs=1, patience=None, batch_size=10), progress=False)
    assert not bool((torch.cat(plain.seen[True]) == 0).any())  # default: no augmentation


def test_non_image_data_is_refused_when_asked_and_trains_by_default():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(30, 5, generator=g), torch.randint(0, 2, (30,), generator=g)
    data = _tiny_split(x, y)
    train(nn.Linear(5, 2), data, TrainConfig(max_epochs=1), progress=False)
    with pytest.raises(ConfigError, match=r"augment needs image data .* shape \(5,\)"):
        train(nn.Linear(5, 2), data, TrainConfig(max_epochs=1, augment=True), progress=False)


def test_training_with_augmentation_is_reproducible(digits):
    from secateurs.training import seeded_model

    config = TrainConfig(augment=True, crop_padding=1, flip=False, max_epochs=2, patience=None,
                         batch_size=128)
    a = seeded_model("model-a:widths=8-8", digits, 0)
    b = seeded_model("model-a:widths=8-8", digits, 0)
    plain = seeded_model("model-a:widths=8-8", digits, 0)
    train(a, digits, config, seed=3, progress=False)
    train(b, digits, config, seed=3, progress=False)
    train(plain, digits, TrainConfig(max_epochs=2, patience=None, batch_size=128), seed=3,
          progress=False)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.net[1].weight, plain.net[1].weight)
