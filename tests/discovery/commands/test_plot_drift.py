"""Tests of discovery/commands/plot_drift."""

from discovery.cli import main


def test_plot_drift_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "drift.png"
    out.write_bytes(b"keep me")
    assert main(["plot-drift", "--drift", "dpo", "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
