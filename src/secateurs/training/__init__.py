"""Training on in-memory tensors: the paper's defaults, early stopping, deterministic on CPU."""

from .config import TrainConfig
from .run import TrainedModel, save_trained, seeded_model, split_metrics, train_model
from .trainer import EpochRecord, TrainResult, evaluate, predict_proba, resolve_device, train

__all__ = [
    "EpochRecord",
    "TrainedModel",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "predict_proba",
    "resolve_device",
    "save_trained",
    "seeded_model",
    "split_metrics",
    "train",
    "train_model",
]
