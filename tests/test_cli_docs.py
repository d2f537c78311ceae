"""docs/cli.md: its Python example runs, and the JSON shapes it documents are the commands' own
(the top-level keys of each documented object are those the command prints)."""

from __future__ import annotations

import json
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_the_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), {"__name__": "doc"})
    assert "model-a" in capsys.readouterr().out


def _documented() -> dict[str, dict]:
    """Command -> the JSON object shown under its heading."""
    text = DOC.read_text()
    shapes = {}
    for m in re.finditer(r"^`([a-z]+)`(?:[^\n]|\n(?!\n))*?:\n\n```json\n(.*?)```", text, flags=re.S | re.M):
        shapes[m.group(1)] = json.loads(m.group(2))
    return shapes


def test_documented_shapes_match_the_commands(tmp_path, capsys):
    from secateurs.cli.main import main
    from secateurs.cli.run_cmds import json_summary

    shapes = _documented()
    assert {"train", "prune", "export", "run"} <= set(shapes)
    assert set(json_summary({"table": [], "seconds": 1.0}, "out")) == set(shapes["run"])
    study = tmp_path / "study"
    runs = {
        "prune": ["prune", "--model", "model-a:widths=8-6", "--epochs", "1", "--fraction", "0.5",
                  "--until", "0.5", "--out", str(study), "--json"],
        "train": ["train", "--model", "model-a:widths=8", "--epochs", "1", "--out",
                  str(tmp_path / "t"), "--json"],
        "export": ["export", str(study), "--round", "1", "--out", str(tmp_path / "e"), "--json"],
    }
    for name, argv in runs.items():
        assert main(argv) == 0, name
        got = json.loads(capsys.readouterr().out)
        assert set(got) == set(shapes[name]), name
        if name == "prune":
            assert set(got["summary"][0]) == set(shapes[name]["summary"][0])
            assert set(got["summary"][0]["near_50"]) == {"remaining", "test_acc"}
