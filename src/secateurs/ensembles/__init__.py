"""Deep-ensemble pruning: diversity metrics, focal diversity, HQ and other team selections, voting.

Typical use::

    from secateurs.ensembles import PredictionPool, select_team
    pool = PredictionPool.from_arrays(names, probs, labels, test_probs, test_labels)
    result = select_team(pool, method="hq", metric="gd", beta=0.1)
    print(result.recommended.names, result.to_dict()["rule"])

See docs/ensembles.md for the file format, the metric definitions and the recommendation rule.
"""

from .diversity import team_diversity, team_focal_diversity
from .focal import (
    RESAMPLE_SIZE,
    RESAMPLE_TIMES,
    WEIGHTINGS,
    FocalStats,
    focal_diversity,
    focal_raw,
    focal_stats,
    member_weights,
    plain_diversity,
)
from .interchange import load_predictions, save_predictions
from .metrics import (
    DEGENERATE,
    LOWER_IS_DIVERSE,
    METRIC_NAMES,
    METRICS,
    SampleStats,
    pair_matrix,
    sample_stats,
    team_raw,
    team_raw_matrix,
    to_score,
)
from .pool import PROB_SUM_TOLERANCE, PredictionPool, Split, softmax
from .results import Level, SelectionResult, TeamReport, TeamStats
from .selection import (
    METHODS,
    diversity_of_teams,
    recommendation_rule,
    select_team,
    team_accuracy,
)
from .teams import DEFAULT_MAX_TEAMS, all_teams, next_level_candidates, team_keys
from .voting import VOTES, TeamAccuracy, predict

__all__ = [
    "DEFAULT_MAX_TEAMS",
    "DEGENERATE",
    "LOWER_IS_DIVERSE",
    "METHODS",
    "METRICS",
    "METRIC_NAMES",
    "PROB_SUM_TOLERANCE",
    "RESAMPLE_SIZE",
    "RESAMPLE_TIMES",
    "VOTES",
    "WEIGHTINGS",
    "FocalStats",
    "Level",
    "PredictionPool",
    "SampleStats",
    "SelectionResult",
    "Split",
    "TeamAccuracy",
    "TeamReport",
    "TeamStats",
    "all_teams",
    "diversity_of_teams",
    "focal_diversity",
    "focal_raw",
    "focal_stats",
    "load_predictions",
    "member_weights",
    "next_level_candidates",
    "pair_matrix",
    "plain_diversity",
    "predict",
    "recommendation_rule",
    "sample_stats",
    "save_predictions",
    "select_team",
    "softmax",
    "team_accuracy",
    "team_diversity",
    "team_keys",
    "team_focal_diversity",
    "team_raw",
    "team_raw_matrix",
    "to_score",
]
