"""CSV tables, written atomically."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..io import write_text


def write_csv(path: str | Path, rows: list[dict]) -> Path:
    """Rows of dicts to CSV (columns: union of keys in first-seen order; nested values as JSON)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()}
        )
    return write_text(path, buf.getvalue())
