"""DropNet's metrics by name: a criterion (what scores units) and a scope (how selection ranks)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class Metric:
    name: str
    criterion: str  # see importance.CRITERIA
    scope: str  # "global" or "layer"
    description: str


METRICS: dict[str, Metric] = {
    m.name: m
    for m in [
        Metric(
            "minimum",
            "activation",
            "global",
            "drop the lowest mean |activation|, all layers ranked together",
        ),
        Metric(
            "maximum", "negative_activation", "global", "drop the highest mean |activation|, global"
        ),
        Metric("random", "random", "global", "drop units uniformly at random, global"),
        Metric(
            "minimum_layer", "activation", "layer", "drop each layer's lowest mean |activation|"
        ),
        Metric(
            "maximum_layer",
            "negative_activation",
            "layer",
            "drop each layer's highest mean |activation|",
        ),
        Metric("random_layer", "random", "layer", "drop units at random, p of each layer"),
        Metric(
            "apoz", "apoz", "global", "drop the highest average fraction of zeros (Hu et al. 2016)"
        ),
        Metric("apoz_layer", "apoz", "layer", "APoZ, per layer"),
        Metric(
            "magnitude",
            "magnitude",
            "global",
            "drop the lowest L1 norm of incoming weights (Li et al. 2017)",
        ),
        Metric("magnitude_layer", "magnitude", "layer", "weight magnitude, per layer"),
        Metric(
            "oracle",
            "oracle",
            "global",
            "drop the one unit whose removal gives the lowest training loss",
        ),
    ]
}

PAPER_METRICS = ("minimum", "maximum", "random", "minimum_layer", "maximum_layer", "random_layer")


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise ConfigError(
            f"unknown metric {name!r}; expected one of: {', '.join(METRICS)}"
        ) from None
