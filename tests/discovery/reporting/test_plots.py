"""Tests of discovery/reporting/plots."""

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def captured_figures(monkeypatch):
    from discovery.reporting import plots
    from discovery.workflows.evaluate import plots as evaluate_plots

    figures = []

    def keep(fig, path):
        figures.append(fig)
        return Path(path)

    monkeypatch.setattr(plots, "save_figure", keep)
    monkeypatch.setattr(evaluate_plots, "save_figure", keep)
    return figures


def _fitness_rows(validate):
    rows = []
    for g in range(6):
        row = {
            "generation": g,
            "fitness_mean": 1 + 0.02 * g,
            "fitness_min": 0.8,
            "fitness_max": 1.4,
            "best_fitness": 1.4 + 0.01 * g,
        }
        if validate and g % 2 == 1:
            row["validation"] = {"score": 1.05 + 0.01 * g}
        rows.append(row)
    return rows


def test_learning_curve_bands_stay_within_the_seeds_and_say_what_they_are(tmp_path, captured_figures):
    from discovery.reporting.plots import BAND_CAPTION, bootstrap_band, plot_learning_curves

    rng = np.random.default_rng(0)
    curves = np.clip(rng.normal(250, 200, (2, 50)), 9, 500)  # 2 seeds, as far apart as CartPole's get
    curves[:, :2] = np.nan
    mean, low, high = bootstrap_band(curves)
    assert np.all(np.isnan(mean[:2])) and np.all(np.isfinite(mean[2:]))
    ok = np.isfinite(mean)
    seen_low, seen_high = np.full(50, np.nan), np.full(50, np.nan)
    seen_low[ok], seen_high[ok] = curves[:, ok].min(axis=0), curves[:, ok].max(axis=0)
    assert np.all(low[ok] >= seen_low[ok] - 1e-9) and np.all(high[ok] <= seen_high[ok] + 1e-9)
    assert np.all(low[ok] <= mean[ok] + 1e-9) and np.all(mean[ok] <= high[ok] + 1e-9)
    plot_learning_curves({"ppo": curves}, np.arange(1, 51) * 512, tmp_path / "c.png", title="t")
    (fig,) = captured_figures
    ax = fig.axes[0]
    assert ax.get_ylim()[0] > -100 and ax.get_ylim()[1] < 600  # the t-band ran from -1000 to 1500 here
    assert BAND_CAPTION in [t.get_text() for t in fig.texts] and "bootstrap" in BAND_CAPTION


def test_normalized_scores_iqm_is_drawn_thicker_than_the_mean(tmp_path, captured_figures):
    from discovery.workflows.evaluate.plots import plot_normalized_scores

    rows = [
        {
            "task": "CartPole-v1",
            "drift": d,
            "normalized_iqm": 1.0,
            "normalized_iqm_ci_low": 0.8,
            "normalized_iqm_ci_high": 1.2,
        }
        for d in ("ppo", "dpo")
    ]
    stats = {"iqm": 1.0, "iqm_ci_low": 0.9, "iqm_ci_high": 1.1, "mean": 1.05, "mean_ci_low": 0.8, "mean_ci_high": 1.3}
    plot_normalized_scores(
        rows, {"all": {"tasks": ["CartPole-v1"], "aggregate": {"ppo": stats, "dpo": stats}}}, "ppo", tmp_path / "n.png"
    )
    right = captured_figures[0].axes[1]

    def spans(line, dx, dy):
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        return len(x) == 2 and np.isclose(x[1] - x[0], dx) and np.isclose(y[1] - y[0], dy)

    iqm = [line for line in right.lines if spans(line, 0.0, 0.7)]  # the IQM tick: vertical, at the point
    mean = [line for line in right.lines if spans(line, 0.5, 0.0)]  # the mean's CI: horizontal, 0.8 .. 1.3
    assert (
        iqm and mean and min(line.get_linewidth() for line in iqm) >= 2.5 * max(line.get_linewidth() for line in mean)
    )
    assert "IQM (thick)" in right.get_title() and right.get_legend() is not None


def test_fitness_plot_shows_what_the_es_mean_scores(tmp_path, captured_figures):
    from discovery.reporting.plots import plot_fitness_curve

    plot_fitness_curve(_fitness_rows(True), tmp_path / "f.png", title="t", normalized=True)
    (fig,) = captured_figures
    assert len(fig.axes) == 1  # one scale: fitness and validation are both random = 0, PPO = 1
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    es = lines["ES mean (drift.npz) on fresh seeds"]
    assert list(es.get_xdata()) == [2, 4, 6] and es.get_linewidth() > max(
        line.get_linewidth() for k, line in lines.items() if line is not es
    )
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[0] == "ES mean (drift.npz) on fresh seeds" and "best single member so far (optimistic)" in legend
    plot_fitness_curve(_fitness_rows(False), tmp_path / "g.png", title="t")
    assert any("not scored in this run" in t.get_text() for t in captured_figures[1].texts)
