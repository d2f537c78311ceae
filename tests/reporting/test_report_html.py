"""The report: paired intervals in the tables, a self-contained HTML page that a browser shows."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser

import pytest

from secateurs.errors import DataError
from secateurs.reporting.report import format_difference, render_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Page(HTMLParser):
    """Text outside <style>, every tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._skip += tag in ("style", "script")

    def handle_endtag(self, tag):
        self._skip -= tag in ("style", "script")

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)


def _parse(html_text: str) -> _Page:
    page = _Page()
    page.feed(html_text)
    return page


def test_report_rows_carry_a_paired_comparison(report_run):
    _, results, _ = report_run
    for row in results["table"]:
        n = row["test_samples"]
        assert n == 360
        # the per-sample correctness behind the interval agrees with the reported accuracies
        assert (row["team_only"] - row["pool_only"]) / n == pytest.approx(row["difference"])
        assert row["difference_low"] <= row["difference"] <= row["difference_high"]
        assert 0 < row["mcnemar_p"] <= 1
    for cmp_ in results["mixed"]["comparisons"].values():
        assert cmp_["difference_low"] <= cmp_["difference"] <= cmp_["difference_high"]


def test_markdown_report_shows_intervals_n_and_run_time(report_run):
    _, results, out = report_run
    text = (out / "report.md").read_text()
    row = results["table"][0]
    cell = format_difference(row["difference"], row["difference_low"], row["difference_high"])
    assert re.fullmatch(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\]", cell)
    assert cell in text
    assert "McNemar p" in text and "paired bootstrap" in text
    assert "n = 1-2 seeds per member" in text
    assert "Run time" in text


def _markdown_tables(out) -> int:
    """Tables in report.md: one delimiter row (| --- | --- |) each."""
    rows = (out / "report.md").read_text().splitlines()
    return sum(1 for r in rows if re.fullmatch(r"\|(\s*:?-{3,}:?\s*\|)+", r.strip()))


def test_html_report_is_self_contained_and_rendered(report_run):
    _, _, out = report_run
    page = _parse((out / "report.html").read_text())
    text = "".join(page.text)
    assert "`" not in text  # code spans rendered, not literal backticks
    assert not re.search(r"\*\S[^*]*\*", text)  # emphasis rendered, not literal *...*
    assert "![" not in text and "|---" not in text
    imgs = [attrs for tag, attrs in page.tags if tag == "img"]
    assert len(imgs) == 5
    for attrs in imgs:
        assert attrs["src"].startswith("data:image/png;base64,")
        png = base64.b64decode(attrs["src"].split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert attrs["alt"]
    tags = [tag for tag, _ in page.tags]
    # every Markdown table is an HTML table (global, layer-wise, mixed pool, Pareto front, and
    # the comparison with the baselines)
    assert tags.count("table") == _markdown_tables(out) >= 4
    assert {"code", "em", "strong", "th", "td", "h1", "h2"} <= set(tags)
    hrefs = [a.get("href") for tag, a in page.tags if tag in ("a", "link", "script")]
    assert hrefs == []  # nothing fetched from beside the file


def test_render_html_escapes_raw_html_and_refuses_missing_images(tmp_path):
    page = render_html("a <script>alert(1)</script> b\n", "t", base_dir=tmp_path)
    assert "<script>" not in page and "&lt;script&gt;" in page
    with pytest.raises(DataError, match="missing.png"):
        render_html("![x](missing.png)\n", "t", base_dir=tmp_path)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="expected one of"):
        render_html("![x](notes.txt)\n", "t", base_dir=tmp_path)


def _chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
def test_html_report_in_headless_chromium(report_run, tmp_path):
    from PIL import Image

    _, _, out = report_run
    # 1. every image decodes in the browser: a copy of the page that records what it loaded
    probe = (
        (out / "report.html")
        .read_text()
        .replace(
            "</body>",
            "<script>window.addEventListener('load', () => {document.body.dataset.probe = "
            "JSON.stringify({tables: document.querySelectorAll('table').length, images: "
            "[...document.images].map(i => [i.complete, i.naturalWidth])});});</script></body>",
        )
    )
    (tmp_path / "probe.html").write_text(probe)
    dom = _chromium("--virtual-time-budget=10000", "--dump-dom", (tmp_path / "probe.html").as_uri())
    found = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert found, dom.stderr[-2000:]
    probe = json.loads(found.group(1).replace("&quot;", '"'))
    assert probe["tables"] == _markdown_tables(out)
    assert len(probe["images"]) == 5
    assert all(complete and width > 300 for complete, width in probe["images"])
    # 2. the page itself draws: a screenshot with content, not a blank page
    shot = tmp_path / "shot.png"
    run = _chromium(
        f"--screenshot={shot}", "--window-size=1200,2000", (out / "report.html").as_uri()
    )
    assert shot.is_file(), run.stderr[-2000:]
    image = Image.open(shot).convert("L")
    assert image.size == (1200, 2000)
    dark = sum(image.histogram()[:128])
    assert dark > 0.005 * 1200 * 2000  # text and table borders drawn
