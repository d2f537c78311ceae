"""Training on in-memory tensors: the paper's defaults, early stopping, learning-rate schedules
and batch augmentation, deterministic on CPU; or a user's own loop through a training hook."""

from .augment import augment_batch, random_crop, random_flip
from .config import TrainConfig
from .hook import RoundInfo, TrainFn, as_train_result
from .run import TrainedModel, save_trained, seeded_model, split_metrics, train_model
from .schedules import learning_rate
from .trainer import EpochRecord, TrainResult, evaluate, predict_proba, resolve_device, train

__all__ = [
    "EpochRecord",
    "RoundInfo",
    "TrainFn",
    "as_train_result",
    "augment_batch",
    "learning_rate",
    "random_crop",
    "random_flip",
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
