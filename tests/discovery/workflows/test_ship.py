"""`discovery ship`: a run's drift becomes `--drift STEM`, with its provenance; bad input is one line."""

import json

import jax
import numpy as np
import pytest
import yaml

import drift_functions
from discovery.cli import main
from discovery.io import drift_registry as drifts
from discovery.io.artifacts import load_artifact, save_artifact
from discovery.workflows import ship


@pytest.fixture()
def fake_run(tmp_path, monkeypatch):
    """A meta-training run's files, written as `meta-train` writes them (no training needed)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "drift": "lpo",
                "drift_options": {"ppo_init": True, "hidden_size": 8},
                "tasks": [{"env": "CartPole-v1", "overrides": {}}],
            }
        )
    )
    rows = [{"generation": g, "env_steps_total": 1000 * (g + 1), "cpu_seconds_total": 36.0 * (g + 1)} for g in range(6)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    drift = drift_functions.make("lpo", ppo_init=True, hidden_size=8)
    params = jax.tree.map(lambda x: x + 0.5, drift.init(jax.random.PRNGKey(0)))
    save_artifact(
        run / "best_validated_drift.npz",
        drift,
        params,
        {"generation": 4, "envs": ["CartPole-v1"], "validation": {"score": 1.25}},
    )
    shipped_dir = tmp_path / "discovered"
    monkeypatch.setattr(ship, "DISCOVERED_DIR", shipped_dir)
    monkeypatch.setattr(drifts, "DISCOVERED_DIR", shipped_dir)
    return run, params, shipped_dir


def test_ship_records_provenance_and_the_stem_resolves(fake_run, capsys):
    run, params, shipped_dir = fake_run
    assert main(["ship", str(run), "--name", "my_lpo"]) == 0
    drift, loaded, metadata = load_artifact(shipped_dir / "my_lpo.npz")
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)
    # Generation 4's drift: the cost is what the run had spent after 4 generations, not after all 6.
    assert (
        metadata["generation"] == 4 and metadata["env_steps_total"] == 4000 and metadata["cpu_seconds_total"] == 144.0
    )
    assert metadata["meta_config"]["drift"] == "lpo" and metadata["validation"]["score"] == 1.25 and metadata["commit"]
    resolved = drifts.resolve_drift("my_lpo")
    assert resolved.label == "my_lpo" and resolved.drift.spec == drift.spec
    capsys.readouterr()
    assert main(["drifts"]) == 0
    listing = capsys.readouterr().out
    assert "my_lpo" in listing and "4 generations" in listing and "validation 1.250 × PPO" in listing


@pytest.mark.parametrize(
    "args, message",
    [
        (["--name", "bad name"], "--name must be letters, digits"),
        (["--name", "ok", "--artifact", "drift.npz"], "drift artifact not found"),
    ],
)
def test_ship_refuses_bad_input_with_one_line(fake_run, capsys, args, message):
    run, _, shipped_dir = fake_run
    assert main(["ship", str(run), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not shipped_dir.exists() or not list(shipped_dir.iterdir())


def test_ship_never_replaces_a_shipped_drift_unasked(fake_run, capsys, tmp_path):
    run, _, shipped_dir = fake_run
    assert main(["ship", str(run), "--name", "x"]) == 0
    before = (shipped_dir / "x.npz").read_bytes()
    assert main(["ship", str(run), "--name", "x"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert (shipped_dir / "x.npz").read_bytes() == before
    assert main(["ship", str(tmp_path), "--name", "y"]) == 2  # not a run directory
    assert "is not a meta-training run" in capsys.readouterr().err


def test_ship_takes_a_single_artifact_with_its_own_metadata(fake_run):
    run, params, shipped_dir = fake_run
    fit = run / "fit_dpo.npz"
    save_artifact(
        fit,
        drift_functions.make("dpo"),
        {"alpha": np.float32(1.5), "beta": np.float32(0.4)},
        {"distilled_from": "my_lpo", "r2": 0.93},
    )
    assert main(["ship", str(fit), "--name", "my_lpo_dpo"]) == 0
    drift, loaded, metadata = load_artifact(shipped_dir / "my_lpo_dpo.npz")
    assert drift.name == "dpo" and float(loaded["alpha"]) == 1.5
    assert metadata["distilled_from"] == "my_lpo" and metadata["r2"] == 0.93 and metadata["label"] == "my_lpo_dpo"


def test_a_run_without_validation_ships_its_last_mean(fake_run, capsys):
    """The demo config does not validate, so its run has drift.npz but no best_validated_drift.npz."""
    run, params, shipped_dir = fake_run
    (run / "best_validated_drift.npz").rename(run / "drift.npz")
    assert main(["ship", str(run), "--name", "demo_lpo"]) == 0
    assert "ran without validation" in capsys.readouterr().err
    _, loaded, metadata = load_artifact(shipped_dir / "demo_lpo.npz")
    assert metadata["shipped_from"].endswith("drift.npz")
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)
