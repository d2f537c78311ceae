"""secateurs: make neural networks and deep ensembles smaller without making them worse.

The public API is re-exported here and loaded on first use, so that ``import secateurs.ensembles``
(numpy only) does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("secateurs")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    "SecateursError": "errors", "ConfigError": "errors", "DataError": "errors",
    "TrainingDiverged": "errors",
    "DatasetSplits": "data", "load_dataset": "data", "list_datasets": "data",
    "build_model": "models", "find_prunable_layers": "models", "list_models": "models",
    "register_model": "models",
    "TrainConfig": "training", "train": "training", "train_model": "training",
    "evaluate": "training", "predict_proba": "training", "RoundInfo": "training",
    "TrainFn": "training", "learning_rate": "training",
    "MaskedNetwork": "pruning", "DropNet": "pruning", "DropNetConfig": "pruning",
    "DropNetResult": "pruning", "run_dropnet": "pruning", "run_dropnets": "pruning",
    "export_pruned": "pruning",
    "save_exported": "pruning", "load_exported": "pruning",
    "PredictionPool": "ensembles", "select_team": "ensembles", "load_predictions": "ensembles",
    "save_predictions": "ensembles", "HQ": "ensembles", "Consensus": "ensembles",
    "GreedySelection": "ensembles", "RankSelection": "ensembles", "RandomSelection": "ensembles",
    "ClusterSelection": "ensembles", "select_consensus": "ensembles",
    "compare_selections": "ensembles",
    "TeamEnsemble": "deploy", "load_team": "deploy", "save_team": "deploy",
    "export_team_from_run": "deploy",
    "run_prune_study": "experiments", "run_experiment": "experiments", "load_config": "experiments",
    "mean_interval": "reporting", "compare_paired": "reporting",
    "run_sweep": "experiments.sweep", "interpret_study": "reporting.interpret",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'secateurs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

