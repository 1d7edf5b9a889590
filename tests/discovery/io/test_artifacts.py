"""Tests of discovery/io/artifacts."""

import jax
import numpy as np
import pytest

import drift_functions
from discovery.cli import main


def test_a_drift_artifact_with_non_finite_weights_is_refused(tmp_path, capsys):
    from discovery.io import artifacts

    drift = drift_functions.make("lpo", ppo_init=True, hidden_size=4)
    params = drift.init(jax.random.PRNGKey(0))
    params = {**params, "w_out": np.full(np.shape(params["w_out"]), np.inf, np.float32)}
    path = artifacts.save_artifact(tmp_path / "diverged.npz", drift, params)
    with pytest.raises(artifacts.ArtifactError, match=r"non-finite parameters \(w_out\)"):
        artifacts.load_artifact(path)
    assert main(["train", "--drift", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "non-finite parameters" in capsys.readouterr().err


def test_a_garbage_npz_is_named_as_not_a_drift_artifact(tmp_path, capsys):
    path = tmp_path / "garbage.npz"
    path.write_text("garbage\n")
    assert main(["train", "--drift", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "allow_pickle" not in err
    assert f"{path} is not a .npz archive" in err
    assert "discovery meta-train" in err and f"a drift is a name: {', '.join(drift_functions.registered())}" in err
