"""Intervals and tests of reporting/stats.py against tabulated values, hand-computed cases and
slow, obviously correct loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from secateurs.errors import ConfigError
from secateurs.reporting.stats import (
    compare_paired,
    mcnemar_exact,
    mean_interval,
    paired_bootstrap,
    t_quantile,
)


@pytest.mark.parametrize(
    "df, expected",  # two-sided 95% critical values from any t table
    [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (30, 2.042), (1000, 1.962)],
)
def test_t_quantile_matches_the_table(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-3)


def test_mean_interval_is_a_t_interval_by_hand():
    # mean 0.92, sd 0.02, n = 3: half-width t(0.975, 2) * 0.02 / sqrt(3) = 4.303 * 0.011547
    iv = mean_interval([0.90, 0.92, 0.94])
    assert iv.mean == pytest.approx(0.92)
    assert iv.n == 3
    assert iv.half_width == pytest.approx(4.3027 * 0.02 / math.sqrt(3), rel=1e-4)
    assert (iv.low, iv.high) == pytest.approx((0.92 - iv.half_width, 0.92 + iv.half_width))
    # 2.2x the normal band 1.96 sd / sqrt(n) that the report used to print
    assert iv.half_width / (1.96 * 0.02 / math.sqrt(3)) == pytest.approx(2.195, abs=0.01)


def test_mean_interval_is_clipped_to_the_range_of_an_accuracy():
    iv = mean_interval([0.99, 1.0, 0.95])
    assert iv.mean + iv.half_width > 1.0  # the raw interval leaves [0, 1] ...
    assert iv.high == 1.0  # ... and is clipped
    assert iv.low == pytest.approx(iv.mean - iv.half_width)
    low = mean_interval([0.0, 0.02, 0.10])
    assert low.low == 0.0
    free = mean_interval([0.99, 1.0, 0.95], bounds=None)
    assert free.high > 1.0


def test_one_value_has_no_interval():
    iv = mean_interval([0.8])
    assert (iv.mean, iv.low, iv.high, iv.n, iv.half_width) == (0.8, 0.8, 0.8, 1, 0.0)


def test_t_interval_covers_the_mean_95_percent_of_the_time_with_three_seeds():
    rng = np.random.default_rng(0)
    draws = rng.normal(0.5, 0.05, size=(3000, 3))
    covered = sum((iv := mean_interval(row, bounds=None)).low <= 0.5 <= iv.high for row in draws)
    normal_band = np.abs(draws.mean(1) - 0.5) <= 1.96 * draws.std(1, ddof=1) / math.sqrt(3)
    assert covered / len(draws) == pytest.approx(0.95, abs=0.015)
    assert normal_band.mean() < 0.85  # the old band covers far less than it claims


def test_bad_values_are_refused():
    with pytest.raises(ConfigError, match="at least one value"):
        mean_interval([])
    with pytest.raises(ConfigError, match="confidence"):
        mean_interval([0.1, 0.2], confidence=1.5)
    with pytest.raises(ConfigError, match="equal, non-empty"):
        paired_bootstrap([1, 0, 1], [1, 0])
    with pytest.raises(ConfigError, match="resamples"):
        paired_bootstrap([1, 0], [1, 0], resamples=0)


def _slow_bootstrap(a, b, resamples, seed, confidence=0.95):
    """The textbook paired bootstrap: resample the samples' indices, one resample at a time."""
    rng = np.random.default_rng(seed)
    n = len(a)
    diffs = []
    for _ in range(resamples):
        idx = rng.integers(0, n, n)  # n draws with replacement
        diffs.append((int(a[idx].sum()) - int(b[idx].sum())) / n)
    alpha = (1 - confidence) / 2
    return tuple(np.quantile(diffs, [alpha, 1 - alpha])), diffs


def test_bootstrap_matches_resampling_indices_in_a_slow_loop():
    # 200 samples: 15 only a gets right, 8 only b gets right. Both estimates of the 2.5% and
    # 97.5% quantiles carry Monte-Carlo error far below one sample (1/200) at 4000 resamples.
    a = np.zeros(200, dtype=bool)
    b = np.zeros(200, dtype=bool)
    a[:15] = True
    b[15:23] = True
    a[23:170] = b[23:170] = True
    (lo, hi), diffs = _slow_bootstrap(a, b, 4000, seed=5)
    fast = paired_bootstrap(a, b, resamples=4000, seed=11)
    assert fast == pytest.approx((lo, hi), abs=1 / 200 + 1e-12)
    # and the whole distribution: mean (15 - 8) / 200, variance of a sum of n paired draws
    assert np.mean(diffs) == pytest.approx(7 / 200, abs=0.002)
    d = np.r_[np.ones(15), -np.ones(8), np.zeros(177)]
    assert np.std(diffs) == pytest.approx(d.std() / np.sqrt(200), rel=0.05)


def test_bootstrap_is_seeded_and_independent_of_sample_order():
    rng = np.random.default_rng(2)
    a = rng.random(5000) < 0.9
    b = rng.random(5000) < 0.9
    order = rng.permutation(5000)
    assert paired_bootstrap(a, b, seed=9) == paired_bootstrap(a[order], b[order], seed=9)
    assert paired_bootstrap(a, b, seed=9) != paired_bootstrap(a, b, seed=10)


def test_bootstrap_hand_cases():
    same = np.array([1, 0, 1, 1, 0], dtype=bool)
    assert paired_bootstrap(same, same) == (0.0, 0.0)  # identical classifiers: no difference
    assert paired_bootstrap(np.ones(7), np.zeros(7)) == (1.0, 1.0)
    # One sample of 360 better: a resample holds that sample k ~ Binomial(360, 1/360) times
    # (P(k = 0) = 0.37, P(k <= 3) = 0.981, P(k <= 2) = 0.920), so the 95% interval is
    # [0, 3/360]: it reaches zero, noise rather than gain.
    a = np.ones(360, dtype=bool)
    b = a.copy()
    b[0] = False
    low, high = paired_bootstrap(a, b, seed=0)
    assert low == 0.0 and high == pytest.approx(3 / 360)


@pytest.mark.parametrize(
    "a_only, b_only, p",
    [
        (0, 0, 1.0),
        (1, 0, 1.0),  # 2 x P(X <= 0), n = 1: 2 x 1/2
        (0, 6, 2 / 64),
        (3, 10, 2 * (1 + 13 + 78 + 286) / 2**13),  # P(X <= 3), X ~ Bin(13, 1/2)
        (5, 5, 1.0),
    ],
)
def test_mcnemar_exact_by_hand(a_only, b_only, p):
    assert mcnemar_exact(a_only, b_only) == pytest.approx(p)
    assert mcnemar_exact(b_only, a_only) == pytest.approx(p)  # symmetric


def test_compare_paired_counts_discordant_samples():
    a = np.array([1, 1, 1, 0, 0, 1, 1, 0], dtype=bool)
    b = np.array([1, 0, 0, 0, 1, 1, 0, 0], dtype=bool)
    c = compare_paired(a, b, seed=0)
    assert (c.a_only, c.b_only, c.n) == (3, 1, 8)
    assert c.difference == pytest.approx(2 / 8)
    assert c.p_value == pytest.approx(2 * (1 + 4) / 16)
    assert c.low <= c.difference <= c.high
    d = c.to_dict()
    assert d["difference_low"] == c.low and d["mcnemar_p"] == c.p_value
