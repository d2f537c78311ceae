"""The Python examples in docs/ run as written (in a temporary folder, offline).

docs/ensembles.md has its own test (tests/ensembles/test_ens_docs.py); docs/data.md's example
reads the user's own MNIST files, so it is not run here."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize(
    "page",
    [
        "agents.md",
        "deploy.md",
        "dropnet.md",
        "export.md",
        "lockstep.md",
        "pipeline.md",
        "recurrent.md",
        "training.md",
    ],
)
def test_the_pages_python_examples_run(page, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)
    assert blocks, f"{page} should show a Python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(DOCS / page), "exec"), {"__name__": "doc"})
