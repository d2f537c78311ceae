"""Figures: vector copies, readable log ticks, % axes, one y range per figure, member names."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from secateurs.reporting import plots
from secateurs.reporting.plots import curves_by_round, log_ticks, plot_accuracy_vs_remaining
from secateurs.reporting.report import write_figures


@pytest.fixture
def captured(monkeypatch):
    """The figures the plotting functions build, kept open instead of written."""
    figs: dict[str, object] = {}

    def keep(fig, path, formats=plots.FORMATS):
        figs[path.stem if hasattr(path, "stem") else str(path)] = fig
        return path

    monkeypatch.setattr(plots, "save_figure", keep)
    yield figs
    for fig in figs.values():
        plt.close(fig)


def _labels(axis) -> list[str]:
    return [t.get_text() for t in axis.get_ticklabels() if t.get_text()]


def _rows():
    """Two metrics, three seeds, three rounds; accuracies near 1 so the interval must clip."""
    rows = []
    for metric, accs in (("minimum", (0.97, 0.99, 1.0)), ("random", (0.80, 0.85, 0.90))):
        for seed, acc in enumerate(accs):
            for rnd, remaining in enumerate((1.0, 0.8, 0.64)):
                rows.append(
                    {
                        "metric": metric,
                        "seed": seed,
                        "round": rnd,
                        "remaining": remaining,
                        "test_acc": acc - 0.01 * rnd,
                    }
                )
    return rows


def test_log_ticks_are_round_and_enough():
    assert log_ticks(1, 100) == [1, 2, 5, 10, 20, 50, 100]
    narrow = log_ticks(50, 100)
    assert len(narrow) >= 4 and narrow[0] == 50 and narrow[-1] == 100
    assert all(50 <= t <= 100 for t in narrow)
    assert 4 <= len(log_ticks(13, 240)) <= 8
    assert log_ticks(52.3, 52.9) == [52.3, 52.9]  # too narrow for round values: its ends
    assert log_ticks(40, 40) == [40.0]


def test_curves_use_clipped_t_intervals_and_say_n():
    points = curves_by_round(_rows())["minimum"]
    p = points[0]
    assert p.n == 3 and p.high == 1.0  # clipped: the raw t interval goes past 100%
    assert p.mean + p.half_width > 1.0
    assert p.half_width > 2 * 1.96 * 0.01527 / 3**0.5  # a t interval, not the 1.96 band


def test_accuracy_figure_is_in_percent_with_plain_log_ticks(captured, tmp_path):
    plot_accuracy_vs_remaining(_rows(), tmp_path / "acc.png", title="model")
    fig = captured["acc"]
    ax = fig.axes[0]
    fig.canvas.draw()
    labels = _labels(ax.xaxis)
    assert len(labels) >= 4
    assert all(float(s) > 0 for s in labels)  # plain numbers, no 10^x mathtext
    assert ax.get_xlim()[0] > ax.get_xlim()[1]  # 100% on the left: pruning goes right
    assert "%" in ax.get_ylabel() and "%" in ax.get_xlabel()
    assert ax.get_ylim()[1] > 50  # accuracies drawn in %, not as fractions
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {
        "minimum (n = 3)",
        "random (n = 3)",
    }
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() == pytest.approx(100.0)  # the band is clipped at 100%


def test_png_and_pdf_are_written(tmp_path):
    path = plot_accuracy_vs_remaining(_rows(), tmp_path / "acc.png")
    assert path == tmp_path / "acc.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "acc.pdf").read_bytes()[:5] == b"%PDF-"
    again = tmp_path / "again"
    plot_accuracy_vs_remaining(_rows(), again / "acc.png")
    assert (again / "acc.pdf").read_bytes() == (tmp_path / "acc.pdf").read_bytes()  # no dates


def test_pipeline_figures(report_run, captured, tmp_path):
    config, results, _ = report_run
    figures = write_figures(config, results, tmp_path)
    names = [p.stem for _, p in figures]
    assert names == [
        "accuracy_vs_remaining",
        "team_vs_pool",
        "accuracy_vs_cost",
        "diversity_vs_accuracy",
        "pareto",
    ]
    # panels titled by member names (not model specs), one y range for all
    panels = [ax for ax in captured["accuracy_vs_remaining"].axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["fc8", "fc12"]
    assert len({ax.get_ylim() for ax in panels}) == 1
    # the seed's tables: pool, best single and teams per metric; differences with intervals
    seed = captured["team_vs_pool"]
    tops = [ax for ax in seed.axes if ax.get_title()]
    assert [ax.get_title() for ax in tops] == ["minimum", "random_layer"]
    assert len({ax.get_ylim() for ax in tops}) == 1
    legend = {t.get_text() for t in tops[0].get_legend().get_texts()}
    assert {"whole pool", "best single model", "team (GD)", "team (KW)"} <= legend
    pool_line = tops[0].get_lines()[0]
    pool_rows = [
        r for r in results["table"] if r["metric"] == "minimum" and r["focal_metric"] == "gd"
    ]
    assert list(pool_line.get_ydata()) == pytest.approx(
        [100 * r["pool_test_acc"] for r in pool_rows]
    )
    # accuracy against parameters and MACs, log x with plain labels
    cost = captured["accuracy_vs_cost"]
    cost.canvas.draw()
    assert [ax.get_xscale() for ax in cost.axes] == ["log", "log"]
    assert "parameters" in cost.axes[0].get_xlabel() and "MACs" in cost.axes[1].get_xlabel()
    assert all("$" not in s for ax in cost.axes for s in _labels(ax.xaxis))
    # Pareto marks the whole pool and the recommended team
    pareto = captured["pareto"].axes[0]
    texts = [t.get_text() for t in pareto.get_legend().get_texts()]
    assert any(t.startswith("whole pool") for t in texts)
    assert any(t.startswith("recommended team") for t in texts)
    assert "%" in pareto.get_xlabel() and "%" in pareto.get_ylabel()
