"""The example in docs/ensembles.md runs as written: the numpy script, the Python API and the CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from secateurs.cli.main import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "ensembles.md"


def _example_blocks():
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## A complete example", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(python|sh)\n(.*?)```", section, flags=re.S)


def test_docs_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    blocks = _example_blocks()
    assert [kind for kind, _ in blocks] == ["python", "python", "python", "sh"]
    for kind, code in blocks:
        if kind == "python":
            exec(compile(code, str(DOC), "exec"), {"__name__": "__docs__"})
            continue
        for line in code.strip().splitlines():
            args = shlex.split(line)
            assert args[0] == "secateurs"
            assert main(args[1:]) == 0, line
    out = capsys.readouterr().out
    assert "recommended" in out and "Rule:" in out and "params_fraction" in out
    assert (tmp_path / "demo_pool" / "costs.json").is_file()
