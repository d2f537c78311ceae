"""The README's Python example runs as written (in a temporary folder)."""

import re
from pathlib import Path

import torch

from secateurs.pruning import load_exported

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README should show a Python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "remaining: test accuracy" in out and "smaller" in out
    loaded = load_exported(tmp_path / "runs" / "model-a-50.safetensors")  # digits: 1x8x8, 10 classes
    assert loaded(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
