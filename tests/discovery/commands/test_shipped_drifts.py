"""The shipped transfer drifts (tries 4 and 3) and their closed forms, by name, through the commands users run."""

import json

import numpy as np
import pytest

from discovery.cli import main
from discovery.io.drift_registry import discovered, resolve_drift

FAST = ["--total-timesteps", "2048", "--num-envs", "4", "--num-steps", "32", "--num-minibatches", "2"]
SHIPPED = ("lpo_general", "lpo_general_poly", "lpo_general_try3", "lpo_general_try3_poly")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_and_listed_with_provenance(name, capsys):
    assert name in discovered()
    resolved = resolve_drift(name)
    assert resolved.label == name
    assert main(["drifts"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(f"  {name} "))
    if name.endswith("_poly"):  # each closed form names the meta-trained drift it was fitted to
        assert f"distilled from {name.removesuffix('_poly')} (" in line
    else:
        assert "meta-trained on" in line


def test_lpo_general_plots_by_name(tmp_path):
    plot = tmp_path / "drift.png"
    assert main(["plot-drift", "--drift", "lpo_general", "--out", str(plot)]) == 0
    assert plot.stat().st_size > 10_000


@pytest.mark.slow  # three learner compiles (about a minute); `make test-all` runs it
def test_lpo_general_trains_sweeps_and_evaluates_by_name(tmp_path):
    out = tmp_path / "train"
    args = ["train", "--env", "CartPole-v1", "--drift", "lpo_general", "--seeds", "2"]
    assert main([*args, "--out", str(out), *FAST]) == 0
    returns = json.loads((out / "results.json").read_text())["summary"]["final_return_per_seed"]
    assert len(returns) == 2 and np.all(np.isfinite(returns))

    sweep = tmp_path / "sweep"
    grid = ["--grid", "learning_rate=5e-4,1e-3", "--seeds", "1"]
    assert main(["sweep", "--env", "CartPole-v1", "--drift", "lpo_general", *grid, "--out", str(sweep), *FAST]) == 0
    assert len(json.loads((sweep / "results.json").read_text())["rows"]) == 2

    evaluated = tmp_path / "evaluate"
    drifts = ",".join(SHIPPED)
    args = ["evaluate", "--drifts", drifts, "--envs", "CartPole-v1", "--seeds", "2", "--bootstrap-reps", "50"]
    assert main([*args, "--out", str(evaluated), *FAST]) == 0
    assert {row["drift"] for row in json.loads((evaluated / "results.json").read_text())["rows"]} == set(SHIPPED)
