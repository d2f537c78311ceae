"""Stop rules: by remaining fraction (the authors' code), by kappa x unpruned validation accuracy
(the paper's Algorithm 1), by a number of rounds; and their validation."""

from __future__ import annotations

import math

import pytest
import torch

from secateurs.errors import ConfigError
from secateurs.pruning import DropNetConfig, StopRule, select_units


def _rows(remaining: list[float], val_acc: list[float] | None = None) -> list[dict]:
    val_acc = val_acc or [0.9] * len(remaining)
    return [{"round": r, "remaining": f, "val_acc": a}
            for r, (f, a) in enumerate(zip(remaining, val_acc, strict=True))]


def _first_stop(rule: StopRule, rows: list[dict]) -> int | None:
    """The first round after which the rule says stop (the loop checks after every record)."""
    for r in range(len(rows)):
        if rule.reason_to_stop(rows[: r + 1]) is not None:
            return r
    return None


def test_until_with_p_02_follows_08_to_the_r_and_stops_at_or_below_the_target():
    """Drive selection and the stop rule together on one 1000-unit layer, as the loop does."""
    rule = StopRule(until=0.1)
    width, p = 1000, 0.2
    alive = {"fc": torch.ones(width, dtype=torch.bool)}
    scores = {"fc": torch.arange(width, dtype=torch.float32)}
    rows: list[dict] = []
    g = torch.Generator().manual_seed(0)
    while True:
        n = int(alive["fc"].sum())
        rows.append({"round": len(rows), "remaining": n / width, "val_acc": 0.9})
        if rule.reason_to_stop(rows) is not None:
            break
        drop = select_units(scores, alive, p, generator=g)
        # the budget is max(1, floor(p x remaining)) exactly
        assert len(drop["fc"]) == max(1, math.floor(p * n))
        alive["fc"][drop["fc"]] = False
    fractions = [r["remaining"] for r in rows]
    for r, f in enumerate(fractions):
        assert abs(f - 0.8**r) < 0.012, (r, f)  # (1-p)^r up to integer rounding
    # the reference's sequence 1.0, .80, .64, .51, .41, .33, .27, .22, .18, .14, .12, .09
    paper = [1.0, 0.80, 0.64, 0.51, 0.41, 0.33, 0.27, 0.22, 0.18, 0.14, 0.12, 0.09]
    assert len(fractions) == len(paper)
    assert all(abs(a - b) < 0.015 for a, b in zip(fractions, paper, strict=True))
    assert fractions[-1] <= 0.1 < fractions[-2]  # stops at the first size at or below 0.1


def test_until_stops_exactly_at_the_target_and_not_before():
    rule = StopRule(until=0.25)
    rows = _rows([1.0, 0.5, 0.3, 0.25, 0.2])
    assert _first_stop(rule, rows) == 3  # 0.25 <= 0.25 stops
    assert "0.250" in rule.reason_to_stop(rows[:4])
    assert _first_stop(StopRule(until=0.0), _rows([1.0, 0.5, 0.01])) is None
    assert _first_stop(StopRule(until=0.0), _rows([1.0, 0.5, 0.0])) == 2


def test_kappa_stops_once_val_acc_falls_below_kappa_times_round_zero():
    rule = StopRule(until=None, kappa=0.9)
    # round 0: 0.90 -> floor 0.81; 0.81 is not below it; 0.80 is
    rows = _rows([1.0, 0.8, 0.64, 0.51, 0.41], [0.90, 0.95, 0.81, 0.80, 0.5])
    assert _first_stop(rule, rows) == 3
    assert "kappa" in rule.reason_to_stop(rows[:4])
    # the floor is relative to round 0, not to the best round
    rows = _rows([1.0, 0.8, 0.6], [0.5, 0.99, 0.46])
    assert _first_stop(StopRule(until=None, kappa=0.9), rows) is None
    assert _first_stop(StopRule(until=None, kappa=1.0), rows) == 2
    # round 0 alone never stops by kappa
    assert StopRule(until=None, kappa=1.0).reason_to_stop(_rows([1.0], [0.0])) is None


def test_max_rounds_and_the_first_rule_that_holds():
    rule = StopRule(until=None, max_rounds=2)
    assert _first_stop(rule, _rows([1.0, 0.8, 0.64, 0.51])) == 2
    assert _first_stop(StopRule(until=None, max_rounds=0), _rows([1.0, 0.8])) == 0
    both = StopRule(until=0.5, kappa=0.9, max_rounds=10)
    assert _first_stop(both, _rows([1.0, 0.8, 0.64, 0.51], [0.9, 0.7, 0.9, 0.9])) == 1  # kappa
    assert _first_stop(both, _rows([1.0, 0.8, 0.5], [0.9, 0.9, 0.9])) == 2  # until


@pytest.mark.parametrize(
    "kwargs",
    [dict(until=1.0), dict(until=-0.1), dict(until=1.5), dict(kappa=0.0), dict(kappa=1.01),
     dict(kappa=-1.0), dict(max_rounds=-1), dict(until=None, kappa=None, max_rounds=None)],
)
def test_bad_stop_rules_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        StopRule(**kwargs)
    with pytest.raises(ConfigError):
        DropNetConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [dict(fraction=0.0), dict(fraction=1.2), dict(fraction=-0.2), dict(reset="zeros"),
     dict(metric="median"), dict(score_samples=0)],
)
def test_bad_dropnet_settings_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        DropNetConfig(**kwargs)


def test_good_settings_round_trip_through_a_dict():
    cfg = DropNetConfig(metric="random_layer", fraction=0.5, until=None, kappa=0.8, max_rounds=4,
                        reset="continue", one_per_round=True, score_samples=100)
    again = DropNetConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert cfg.stop_rule() == StopRule(None, 0.8, 4)
