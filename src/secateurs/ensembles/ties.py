"""When two classes' vote totals are a tie.

Probabilities arrive rounded: a model's CSV written to two decimals, a float32 softmax, rows that
sum to 1 only within 1e-3. Ties then stop being exact in floating point: [0.7, 0.3] + [0.2, 0.8] +
[0.6, 0.4] sums to 1.5 for both classes in decimal but not in binary, and two routines that add in
different orders (a matrix product of margins, a running sum of probabilities) would break the
tie differently and give one team two accuracies. So totals within a few units in the last place
of the inputs' precision, per unit of vote weight, are a tie, and ties go to the lowest class,
in every routine and for a single model's own prediction too.
"""

from __future__ import annotations

import numpy as np

TIE_ULPS = 4  # well above the rounding of the sums, far below any real difference


def tie_tolerance(dtype, weight: float | np.ndarray = 1.0) -> float | np.ndarray:
    """How close two totals of ``weight`` units of vote (a team's size, or its members' summed
    weights) computed from probabilities of ``dtype`` must be to be a tie."""
    eps = np.finfo(dtype).eps if np.issubdtype(np.dtype(dtype), np.floating) else 0.0
    return TIE_ULPS * eps * np.asarray(weight, dtype=np.float64)


def vote_argmax(total: np.ndarray, tol: float | np.ndarray) -> np.ndarray:
    """The lowest class whose total is within ``tol`` of the highest, along the last axis
    (``tol`` broadcasts against ``total`` without its last axis)."""
    best = total.max(axis=-1, keepdims=True)
    return (total >= best - np.expand_dims(np.asarray(tol), -1)).argmax(axis=-1)
