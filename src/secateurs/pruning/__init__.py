"""DropNet pruning, split as the best pruning libraries split it:

- what scores units: ``importance`` (activations, APoZ, weight magnitude) and ``oracle``;
- which units go: ``selection`` (global or per layer, budgets, seeded ties);
- when: ``schedule`` (stop by remaining fraction or by accuracy), one run's steps in ``dropnet``,
  and the one ``driver`` that takes a run or a whole study through them;
- how they are removed: ``masks`` during the search, ``surgery`` (physical removal) at export;
  ``recurrent`` for the hidden units of LSTM / GRU / RNN layers.
"""

from .counting import count_params_macs, implied_params_macs
from .driver import LockstepFallback, run_dropnet_lockstep, run_dropnets
from .dropnet import DropNet, DropNetConfig, DropNetResult, run_dropnet
from .importance import ActivationStats, activation_stats, unit_scores, weight_magnitude
from .masks import MaskedNetwork, UnitMask
from .metrics import METRICS, PAPER_METRICS, Metric, get_metric
from .oracle import oracle_choice, removal_losses, removal_losses_naive
from .record import load_run, save_run
from .recurrent import set_recurrent_score
from .schedule import StopRule
from .selection import select_units
from .surgery import ExportResult, export_pruned, load_exported, save_exported

__all__ = [
    "METRICS",
    "PAPER_METRICS",
    "ActivationStats",
    "DropNet",
    "DropNetConfig",
    "DropNetResult",
    "ExportResult",
    "LockstepFallback",
    "MaskedNetwork",
    "Metric",
    "StopRule",
    "UnitMask",
    "activation_stats",
    "count_params_macs",
    "export_pruned",
    "get_metric",
    "implied_params_macs",
    "load_exported",
    "load_run",
    "oracle_choice",
    "removal_losses",
    "removal_losses_naive",
    "run_dropnet",
    "run_dropnet_lockstep",
    "run_dropnets",
    "save_exported",
    "save_run",
    "select_units",
    "set_recurrent_score",
    "unit_scores",
    "weight_magnitude",
]
