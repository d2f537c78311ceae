"""Intervals and tests for the numbers in reports, so a reader can tell noise from gain.

- Across seeds: a Student-t interval for the mean (with n = 3 seeds it is 2.2x wider than the
  normal 1.96 sd / sqrt(n) band), clipped to the range an accuracy can take.
- Between two classifiers on the same test samples (a team and its whole pool): a paired
  bootstrap over test samples for the difference in accuracy, and McNemar's exact test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (scipy comes with
    scikit-learn, a dependency)."""
    from scipy.stats import t

    if not 0 < p < 1:
        raise ConfigError(f"quantile must be in (0, 1), got {p!r}")
    if df < 1:
        raise ConfigError(f"degrees of freedom must be >= 1, got {df!r}")
    return float(t.ppf(p, df))


@dataclass(frozen=True)
class MeanInterval:
    """Mean of n values with a two-sided t interval, clipped to [lower bound, upper bound];
    with n = 1 there is no interval (low = high = mean)."""

    mean: float
    low: float
    high: float
    n: int
    half_width: float  # t * sd / sqrt(n), before clipping (0 when n = 1)


def mean_interval(
    values: list[float] | np.ndarray,
    confidence: float = 0.95,
    bounds: tuple[float, float] | None = (0.0, 1.0),
) -> MeanInterval:
    """Mean and its t interval over ``values`` (e.g. one accuracy per seed); ``bounds`` clips the
    interval (accuracies lie in [0, 1]; None for no clipping)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    n = int(v.size)
    if n == 0:
        raise ConfigError("mean_interval needs at least one value")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    mean = float(v.mean())
    if n < 2:
        return MeanInterval(mean, mean, mean, 1, 0.0)
    sd = float(v.std(ddof=1))
    half = t_quantile(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return MeanInterval(mean, low, high, n, half)


@dataclass(frozen=True)
class PairedComparison:
    """Accuracy of ``a`` minus accuracy of ``b`` on the same samples, with a paired bootstrap
    percentile interval and McNemar's exact p-value (``a_only``/``b_only``: samples only a / only
    b gets right)."""

    difference: float
    low: float
    high: float
    confidence: float
    n: int
    a_only: int
    b_only: int
    p_value: float

    def to_dict(self) -> dict:
        return {
            "difference": self.difference,
            "difference_low": self.low,
            "difference_high": self.high,
            "confidence": self.confidence,
            "n_samples": self.n,
            "a_only": self.a_only,
            "b_only": self.b_only,
            "mcnemar_p": self.p_value,
        }


def _check_pair(correct_a, correct_b) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(correct_a, dtype=bool).ravel()
    b = np.asarray(correct_b, dtype=bool).ravel()
    if a.shape != b.shape or a.size == 0:
        raise ConfigError(
            f"paired samples must be two equal, non-empty vectors; got {a.size} and {b.size}"
        )
    return a, b


def paired_bootstrap(
    correct_a,
    correct_b,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of accuracy(a) - accuracy(b) over ``resamples`` bootstrap resamples of
    the samples (the same resample for both, so their correlation is kept).

    A resample of the n samples with replacement changes the difference only through how many
    of the samples that only a gets right, and that only b gets right, it draws; those counts are
    Multinomial(n, [a_only / n, b_only / n, rest]). Drawing them directly gives the same
    distribution as resampling indices, at a cost independent of n."""
    a, b = _check_pair(correct_a, correct_b)
    if resamples < 1:
        raise ConfigError(f"resamples must be >= 1, got {resamples!r}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    n = a.size
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(b & ~a))
    rng = np.random.default_rng(seed)
    rest = max(0.0, 1.0 - (a_only + b_only) / n)
    counts = rng.multinomial(n, [a_only / n, b_only / n, rest], size=resamples)
    diffs = (counts[:, 0] - counts[:, 1]) / n
    alpha = (1 - confidence) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return float(low), float(high)


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: under "a and b are equally accurate" each of the
    ``a_only + b_only`` discordant samples is equally likely to favour either, so the smaller
    count is Binomial(n, 1/2); p = min(1, 2 P(X <= min))."""
    if a_only < 0 or b_only < 0:
        raise ConfigError(f"discordant counts must be >= 0, got {a_only} and {b_only}")
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = min(a_only, b_only)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2**n)


def compare_paired(
    correct_a,
    correct_b,
    *,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> PairedComparison:
    """Everything a report needs about "a is better than b on these samples"."""
    a, b = _check_pair(correct_a, correct_b)
    low, high = paired_bootstrap(a, b, resamples=resamples, confidence=confidence, seed=seed)
    a_only = int(np.sum(a & ~b))
    b_only = int(np.sum(b & ~a))
    return PairedComparison(
        difference=float(a.mean() - b.mean()),
        low=low,
        high=high,
        confidence=confidence,
        n=int(a.size),
        a_only=a_only,
        b_only=b_only,
        p_value=mcnemar_exact(a_only, b_only),
    )
