"""scripts/cifar10_vgg11_recipe.py: its two arms differ in augmentation and schedule only, and
its report reads the arms' records into the results page's table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("recipe_script", ROOT / "scripts" /
                                                  "cifar10_vgg11_recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_arms_differ_only_in_augmentation_and_schedule():
    script = _script()
    recipe = script.config_for("recipe", 15).to_dict()
    plain = script.config_for("plain", 15).to_dict()
    differ = {k for k in recipe if recipe[k] != plain[k]}
    assert differ == {"augment", "schedule"}
    assert recipe["augment"] and recipe["schedule"] == "cosine" and recipe["patience"] is None


def test_the_report_tabulates_both_arms(tmp_path, monkeypatch):
    script = _script()
    for arm, acc in (("recipe", 0.8), ("plain", 0.7)):
        history = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.5, "val_loss": 1.0,
                    "val_acc": acc - 0.1 / e} for e in (1, 2)]
        record = {"arm": arm, "train_images": 100, "val_images": 10, "test_images": 20,
                  "config": script.config_for(arm, 2).to_dict(), "test_loss": 0.5,
                  "test_acc": acc, "train_seconds": 3.0, "cpu_seconds": 2.0, "threads": 1,
                  "torch": "x", "history": history}
        (tmp_path / f"{arm}.json").write_text(json.dumps(record))
    doc = tmp_path / "doc.md"
    monkeypatch.setattr(script, "DOC", doc)
    script.main(["report", "--out", str(tmp_path)])
    text = doc.read_text()
    assert "| recipe | **0.8000** |" in text and "| plain | **0.7000** |" in text
    assert "recipe - plain = **+0.1000**" in text
    assert "| 2 | 0.7500 | 0.5000 | 0.6500 | 0.5000 |" in text
