"""Small experiment configs shared by the pipeline tests."""

TINY = {
    "name": "tiny",
    "seed": 0,
    "dataset": {"spec": "digits"},
    "pool": [
        {"model": "model-a:widths=8-8", "seeds": [0, 1], "name": "fc8"},
        {"model": "model-a:widths=12-6", "seeds": [2], "name": "fc12"},
    ],
    "dropnet": {"metrics": ["minimum", "random_layer"], "levels": [0.0, 0.5]},
    "training": {"max_epochs": 3, "patience": 2},
    "ensemble": {"metrics": ["gd", "kw"], "beta": 0.1, "mixed_max_size": 3},
}


def strip_timing(obj):
    """Results without wall-clock fields, for comparing two runs."""
    if isinstance(obj, dict):
        return {k: strip_timing(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [strip_timing(v) for v in obj]
    return obj
