from __future__ import annotations

import copy

import pytest
from pipeline_configs import TINY


@pytest.fixture
def tiny_config(tmp_path):
    cfg = copy.deepcopy(TINY)
    cfg["output"] = str(tmp_path / "run")
    return cfg
