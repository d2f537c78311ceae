"""Learning-rate schedules: hand-computed rates, torch's schedulers stepped per epoch as a second
reference, the rate the trainer really steps with, lockstep following the same schedule, and
refused settings."""

from __future__ import annotations

import math

import pytest
import torch

from secateurs.errors import ConfigError
from secateurs.training import TrainConfig, learning_rate, seeded_model, train
from secateurs.training.lockstep import train_lockstep
from secateurs.training.trainer import PlainSGD

pytestmark = pytest.mark.usefixtures("one_thread")


def rates(config: TrainConfig, steps_per_epoch: int = 1) -> list[float]:
    return [
        learning_rate(config, e, s, steps_per_epoch)
        for e in range(config.max_epochs)
        for s in range(steps_per_epoch)
    ]


def test_constant_is_the_base_rate_everywhere():
    assert rates(TrainConfig(lr=0.3, max_epochs=4), 3) == [0.3] * 12


def test_step_schedule_multiplies_by_gamma_at_each_milestone():
    config = TrainConfig(lr=0.1, max_epochs=6, schedule="step", milestones=[2, 4], gamma=0.5)
    assert rates(config) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    # per step: the epoch decides, every step of an epoch shares its rate
    per_step = TrainConfig(lr=0.1, max_epochs=3, schedule="step", milestones=[1], gamma=0.1,
                           schedule_unit="step")
    assert rates(per_step, 2) == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.01, 0.01])


def test_cosine_per_epoch_hand_computed():
    config = TrainConfig(lr=1.0, max_epochs=4, schedule="cosine")
    # (1 + cos(pi * e / 4)) / 2 for e = 0..3
    assert rates(config) == pytest.approx([1.0, 0.8535533905932737, 0.5, 0.14644660940672624])
    floor = TrainConfig(lr=1.0, min_lr=0.1, max_epochs=2, schedule="cosine")
    assert rates(floor) == pytest.approx([1.0, 0.55])  # 0.1 + 0.9 * (1 + cos(pi / 2)) / 2


def test_cosine_per_step_runs_over_all_steps():
    config = TrainConfig(lr=1.0, max_epochs=2, schedule="cosine", schedule_unit="step")
    # 4 steps in all: (1 + cos(pi * u / 4)) / 2 for u = 0..3
    assert rates(config, 2) == pytest.approx([1.0, 0.8535533905932737, 0.5, 0.14644660940672624])


def test_linear_warmup_then_cosine_over_the_remaining_epochs():
    config = TrainConfig(lr=0.4, max_epochs=6, schedule="cosine", warmup_epochs=2)
    # warm-up 0.4 * 1/2, 0.4 * 2/2; then cosine over 4 epochs: 0.4 * (1 + cos(pi * k / 4)) / 2
    expected = [0.2, 0.4, 0.4, 0.3414213562373095, 0.2, 0.058578643762690494]
    assert rates(config) == pytest.approx(expected)


def test_fractional_warmup_in_steps():
    config = TrainConfig(lr=0.1, max_epochs=2, warmup_epochs=0.5, schedule_unit="step")
    # 4 steps per epoch, warm-up 0.5 epoch = 2 steps: 0.05, 0.1, then constant
    assert rates(config, 4) == pytest.approx([0.05, 0.1] + [0.1] * 6)
    step = TrainConfig(lr=0.1, max_epochs=3, warmup_epochs=1, schedule="step", milestones=[2],
                       schedule_unit="step", gamma=0.5)
    assert rates(step, 2) == pytest.approx([0.05, 0.1, 0.1, 0.1, 0.05, 0.05])


def _torch_rates(config: TrainConfig, make) -> list[float]:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=config.lr)
    sched = make(opt)
    out = []
    for _ in range(config.max_epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_equals_torch_schedulers_stepped_per_epoch():
    cos = TrainConfig(lr=0.05, min_lr=0.001, max_epochs=15, schedule="cosine")
    want = _torch_rates(
        cos, lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=15, eta_min=0.001)
    )
    assert rates(cos) == pytest.approx(want, rel=1e-9)
    step = TrainConfig(lr=0.1, max_epochs=10, schedule="step", milestones=[3, 7], gamma=0.2)
    want = _torch_rates(
        step, lambda o: torch.optim.lr_scheduler.MultiStepLR(o, milestones=[3, 7], gamma=0.2)
    )
    assert rates(step) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("unit", ["epoch", "step"])
def test_the_trainer_steps_with_the_scheduled_rate(digits, monkeypatch, unit):
    config = TrainConfig(lr=0.2, max_epochs=3, patience=None, batch_size=512,
                         schedule="cosine", warmup_epochs=1, schedule_unit=unit)
    seen = []

    def spy_on(cls):  # the trainer may use torch's SGD or its own stateless one
        real_step = cls.step

        def spy(self, *args, **kwargs):
            seen.append(self.param_groups[0]["lr"])
            return real_step(self, *args, **kwargs)

        monkeypatch.setattr(cls, "step", spy)

    spy_on(torch.optim.SGD)
    spy_on(PlainSGD)
    model = seeded_model("model-a:widths=8-8", digits, 0)
    train(model, digits, config, progress=False)
    steps = math.ceil(len(digits.y_train) / 512)
    assert steps == 3
    assert seen == pytest.approx(rates(config, steps))
    if unit == "epoch":  # hand-computed: warm-up 1 epoch, then cosine over 2
        assert seen == pytest.approx([0.2] * 3 + [0.2] * 3 + [0.1] * 3)


def test_lockstep_follows_the_schedule_like_separate_runs(digits):
    config = TrainConfig(lr=0.3, max_epochs=4, patience=None, schedule="cosine",
                         warmup_epochs=0.5, schedule_unit="step", momentum=0.5)
    reference = []
    for seed in (0, 1):
        model = seeded_model("model-a:widths=12-12", digits, seed)
        train(model, digits, config, seed=seed, progress=False)
        reference.append(model)
    models = [seeded_model("model-a:widths=12-12", digits, s) for s in (0, 1)]
    train_lockstep(models, digits, config, seeds=[0, 1])
    constant = seeded_model("model-a:widths=12-12", digits, 0)
    train(constant, digits, TrainConfig(lr=0.3, max_epochs=4, patience=None, momentum=0.5),
          seed=0, progress=False)
    for ref, got in zip(reference, models, strict=True):
        for (k, a), (_, b) in zip(ref.state_dict().items(), got.state_dict().items(), strict=True):
            assert torch.allclose(a, b, atol=1e-4), k
    # and the schedule mattered: without it the weights end elsewhere
    assert not torch.allclose(constant.net[1].weight, reference[0].net[1].weight, atol=1e-3)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"schedule": "linear"}, "schedule must be one of"),
        ({"schedule_unit": "batch"}, "schedule_unit must be one of"),
        ({"schedule": "step"}, "needs milestones"),
        ({"milestones": [3]}, "only used by schedule 'step'"),
        ({"schedule": "step", "milestones": [5, 2]}, "must increase"),
        ({"schedule": "step", "milestones": [0]}, "epochs >= 1"),
        ({"schedule": "step", "milestones": "10"}, "list of epochs"),
        ({"warmup_epochs": 100}, "below max_epochs"),
        ({"warmup_epochs": -1}, "warmup_epochs must be >= 0"),
        ({"warmup_epochs": 0.5}, "whole number"),
        ({"gamma": 0}, "gamma must be in (0, 1]"),
        ({"min_lr": 0.5}, "min_lr must be in [0, lr=0.1]"),
        ({"augment": "yes"}, "augment must be true or false"),
        ({"crop_padding": -1}, "crop_padding must be >= 0"),
    ],
)
def test_bad_settings_are_refused_with_the_value(kwargs, words):
    with pytest.raises(ConfigError, match=None) as info:
        TrainConfig(**kwargs)
    assert words in str(info.value)


def test_milestones_round_trip_through_a_dict_as_a_list():
    config = TrainConfig(schedule="step", milestones=(3, 6))
    assert config.milestones == [3, 6]
    assert TrainConfig.from_dict(config.to_dict()) == config
