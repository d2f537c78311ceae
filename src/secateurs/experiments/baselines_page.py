"""``python -m secateurs.experiments.baselines_page RUN``: the HQ-against-baselines tables of a
finished pipeline run as Markdown, on stdout (docs/results/fashion-mnist-baselines.md)."""

from __future__ import annotations

import sys
from pathlib import Path

from .comparison import comparison_markdown


def main(argv: list[str] | None = None) -> int:
    from ..deploy.from_run import read_run

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m secateurs.experiments.baselines_page RUN_FOLDER", file=sys.stderr)
        return 2
    results = read_run(Path(argv[0]))
    text = comparison_markdown(results)
    if not text:
        print(f"{argv[0]} has no comparison (run it again with this version)", file=sys.stderr)
        return 1
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
