"""Shared fixtures. Tests run on CPU with few threads so that the suite is quick and repeatable."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real datasets beside the repository (../shared/datasets), or skip."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for modules of many tiny networks (faster than two on a busy machine);
    use with ``pytestmark = pytest.mark.usefixtures("one_thread")``. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits():
    from secateurs.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test reaches the internet: named datasets never download unless a test serves them."""
    monkeypatch.setenv("SECATEURS_OFFLINE", "1")
