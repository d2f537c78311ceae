"""Deployment: a team of physically pruned networks in one file, run as one module.

    from secateurs.deploy import export_team_from_run, load_team
    export_team_from_run("runs/x", "team.safetensors", row="minimum/p50/gd")
    team = load_team("team.safetensors")      # an nn.Module
    probs = team(x)                           # the vote's class probabilities
    labels = team.predict(x)

See docs/deploy.md.
"""

from .from_run import export_team_from_run, read_run, snapshot_export, team_rows
from .predict import Deployed, evaluate_on, load_deployed, predict_labels
from .team import FORMAT_VERSION, TEAM_FORMAT, TeamEnsemble, load_team, read_team_record, save_team

__all__ = [
    "FORMAT_VERSION",
    "TEAM_FORMAT",
    "Deployed",
    "TeamEnsemble",
    "evaluate_on",
    "export_team_from_run",
    "load_deployed",
    "load_team",
    "predict_labels",
    "read_run",
    "read_team_record",
    "save_team",
    "snapshot_export",
    "team_rows",
]
