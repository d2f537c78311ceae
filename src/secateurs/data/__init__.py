"""Datasets addressed by spec strings, loaded into in-memory train / validation / test tensors."""

from .catalog import DatasetInfo, list_datasets
from .download import RemoteFile
from .named import download_dataset
from .specs import load_dataset
from .splits import DatasetSplits, make_splits, stratified_split

__all__ = [
    "DatasetInfo",
    "DatasetSplits",
    "RemoteFile",
    "download_dataset",
    "list_datasets",
    "load_dataset",
    "make_splits",
    "stratified_split",
]
