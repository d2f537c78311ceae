"""Deep-ensemble pruning: diversity metrics, focal diversity, HQ and other team selections, voting.

Typical use::

    from secateurs.ensembles import HQ, GreedySelection, PredictionPool, select_team
    hq = HQ(metric="gd", beta=0.1).fit(probs, labels)      # probs [M, N, C], labels [N]
    print(hq.team_, hq.team_names_, hq.variant_)
    pool = PredictionPool.from_arrays(names, probs, labels, test_probs, test_labels)
    result = select_team(pool, method="hq", metric="gd", beta=0.1)   # functional form
    greedy = GreedySelection(criterion="reduced-error", size=3).fit(pool)

See docs/ensembles.md for the file format, the metric definitions and the recommendation rule.
"""

from .api import (
    COMPARE_BASELINES,
    HQ,
    ClusterSelection,
    Consensus,
    GreedySelection,
    RandomSelection,
    RankSelection,
    as_pool,
    compare_selections,
    select_baseline,
    select_consensus,
)
from .baselines import BASELINES, DEFAULT_CRITERION
from .consensus import CONSENSUS_RULE, ConsensusLevel, ConsensusResult
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
from .hq_bounded import BOUNDED_MAX_SIZE, DEFAULT_WIDTH, FAST_METRICS, bounded_rule
from .interchange import MANIFEST, load_predictions, save_predictions
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
    ALL_METHODS,
    HQ_VARIANTS,
    METHODS,
    diversity_of_teams,
    recommendation_rule,
    select_team,
    team_accuracy,
)
from .teams import DEFAULT_MAX_TEAMS, all_teams, next_level_candidates, team_keys
from .voting import VOTES, TeamAccuracy, predict

__all__ = [
    "ALL_METHODS",
    "BASELINES",
    "BOUNDED_MAX_SIZE",
    "COMPARE_BASELINES",
    "CONSENSUS_RULE",
    "DEFAULT_CRITERION",
    "DEFAULT_WIDTH",
    "FAST_METRICS",
    "HQ",
    "HQ_VARIANTS",
    "MANIFEST",
    "ClusterSelection",
    "Consensus",
    "ConsensusLevel",
    "ConsensusResult",
    "GreedySelection",
    "RandomSelection",
    "RankSelection",
    "as_pool",
    "bounded_rule",
    "compare_selections",
    "select_baseline",
    "select_consensus",
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
