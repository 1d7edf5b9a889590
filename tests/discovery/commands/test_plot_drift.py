"""Tests of discovery/commands/plot_drift."""

from discovery.cli import main
from discovery.io.drift_registry import resolve_drift
from discovery.reporting.drift_plots import panel_rows, panels_for, plot_drift_panels, reference_panels


def test_plot_drift_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "drift.png"
    out.write_bytes(b"keep me")
    assert main(["plot-drift", "--drift", "dpo", "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"


def test_regime_drifts_get_a_pair_of_rows_each_and_single_drifts_share_one(tmp_path):
    # Random weights: at PPO-init the drift does not yet depend on its regime, so it would get one panel.
    first = resolve_drift("ra_lpo:hidden_size=4,ppo_init=false,epoch_progress=true")
    second = resolve_drift("ra_lpo:hidden_size=8,ppo_init=false,epoch_progress=true")
    groups = [panels_for(first), panels_for(second), reference_panels()]
    rows = panel_rows(groups)
    assert [len(row) for row in rows] == [len(groups[0]), len(groups[1]), 2]
    assert rows[0][0].setting == "K=1, k/K=0, p=0.5"  # the column title; the drift's name labels the row
    assert [len(row) for row in panel_rows([panels_for(resolve_drift("dpo")), reference_panels()[:1]])] == [2]
    out = plot_drift_panels([groups[0][:2], groups[1][:1], groups[2]], tmp_path / "grid.png", num_ratio=8)
    assert out.stat().st_size > 0
