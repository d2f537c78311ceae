"""secateurs: make neural networks and deep ensembles smaller without making them worse."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("secateurs")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0"

from .data import DatasetSplits, load_dataset
from .errors import ConfigError, DataError, SecateursError, TrainingDiverged
from .models import build_model, find_prunable_layers, list_models, register_model
from .training import TrainConfig, evaluate, predict_proba, train, train_model

__all__ = [
    "ConfigError",
    "DataError",
    "DatasetSplits",
    "SecateursError",
    "TrainConfig",
    "TrainingDiverged",
    "__version__",
    "build_model",
    "evaluate",
    "find_prunable_layers",
    "list_models",
    "load_dataset",
    "predict_proba",
    "register_model",
    "train",
    "train_model",
]
