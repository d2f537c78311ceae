"""The model zoo. Importing this package registers every model."""

from . import dropnet_zoo, recurrent_zoo, resnet, vgg  # noqa: F401  (registration)
from .registry import (
    ModelInfo,
    build_model,
    find_prunable_layers,
    list_models,
    parse_model_spec,
    register_model,
)

__all__ = [
    "ModelInfo",
    "build_model",
    "find_prunable_layers",
    "list_models",
    "parse_model_spec",
    "register_model",
]
