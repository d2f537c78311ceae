"""Experiments: DropNet studies, and the pipeline that joins DropNet pools with HQ selection."""

from .config import load_config, validate
from .demo import DEMO_CONFIG
from .pipeline import pareto_front, run_experiment
from .prune_study import StudyResult, load_study, mask_similarity, rebuild_round, run_prune_study

__all__ = [
    "DEMO_CONFIG",
    "StudyResult",
    "load_config",
    "load_study",
    "mask_similarity",
    "pareto_front",
    "rebuild_round",
    "run_experiment",
    "run_prune_study",
    "validate",
]
