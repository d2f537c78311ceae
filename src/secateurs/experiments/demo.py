"""The built-in demo: a small experiment on the embedded digits data, under 2 minutes on 2 cores."""

from __future__ import annotations

DEMO_CONFIG: dict = {
    "name": "demo",
    "seed": 0,
    "output": "runs/demo",
    "dataset": {"spec": "digits"},
    # Five MLPs of different shapes and seeds: a diverse pool that trains in seconds on a CPU
    # (convolutional members multiply the run time; see examples/ for larger pools).
    "pool": [
        {"model": "model-a:widths=40-40", "seeds": [0], "name": "fc40"},
        {"model": "model-a:widths=64-32", "seeds": [1], "name": "fc64"},
        {"model": "model-a:widths=24-24", "seeds": [2], "name": "fc24"},
        {"model": "model-a:widths=100", "seeds": [3], "name": "fc100"},
        {"model": "model-a:widths=32-32-32", "seeds": [4], "name": "fc32x3"},
    ],
    "dropnet": {"metrics": ["minimum", "random_layer"], "levels": [0.0, 0.2, 0.5]},
    "ensemble": {"metrics": ["gd", "kw"], "beta": 0.1},
}
