"""Datasets addressed by spec strings, loaded into in-memory train / validation / test tensors."""

from .specs import load_dataset
from .splits import DatasetSplits, make_splits, stratified_split

__all__ = ["DatasetSplits", "load_dataset", "make_splits", "stratified_split"]
