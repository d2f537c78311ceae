"""Tables and figures for results."""

from .plots import curves_by_round, mean_band, plot_accuracy_vs_remaining
from .tables import write_csv

__all__ = ["curves_by_round", "mean_band", "plot_accuracy_vs_remaining", "write_csv"]
