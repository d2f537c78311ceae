"""Tables, figures, intervals and the experiment report."""

from .plots import CurvePoint, curves_by_round, plot_accuracy_vs_remaining, save_figure
from .stats import (
    MeanInterval,
    PairedComparison,
    compare_paired,
    mcnemar_exact,
    mean_interval,
    paired_bootstrap,
    t_quantile,
)
from .tables import write_csv

__all__ = [
    "CurvePoint",
    "MeanInterval",
    "PairedComparison",
    "compare_paired",
    "curves_by_round",
    "mcnemar_exact",
    "mean_interval",
    "paired_bootstrap",
    "plot_accuracy_vs_remaining",
    "save_figure",
    "t_quantile",
    "write_csv",
]
