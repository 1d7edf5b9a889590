"""Shared I/O: the one npz-with-header format (artifacts, checkpoints, cells), atomic writes, run directories."""

import io
import json

import jax
import numpy as np
import pytest

import drift_functions as df
from discovery import artifacts
from discovery.errors import UserError
from discovery.outputs import HEADER_KEY, prepare_run_dir, read_npz, write_npz


def test_npz_with_header_round_trip(tmp_path):
    arrays = {"es/mean": np.arange(3, dtype=np.float32), "x": np.ones((2, 2))}
    for compressed in (False, True):
        path = write_npz(tmp_path / f"f{compressed}.npz", arrays, {"generation": 3}, compressed=compressed)
        header, loaded = read_npz(path)
        assert header == {"generation": 3} and sorted(loaded) == sorted(arrays)
        for name in arrays:
            np.testing.assert_array_equal(loaded[name], arrays[name])
    assert read_npz(write_npz(tmp_path / "plain.npz", arrays))[0] is None
    assert not list(tmp_path.glob(".*.tmp"))  # atomic: no temp file left behind


def test_reads_files_written_before_the_shared_helper(tmp_path):
    """Checkpoints and artifacts on disk were written by hand with np.savez; they must still load."""
    buffer = io.BytesIO()
    np.savez(buffer, **{"es/mean": np.zeros(4, np.float32), HEADER_KEY: np.asarray(json.dumps({"generation": 5}))})
    (tmp_path / "gen_000005.npz").write_bytes(buffer.getvalue())
    header, arrays = read_npz(tmp_path / "gen_000005.npz")
    assert header["generation"] == 5 and list(arrays) == ["es/mean"]
    drift = df.make("dpo")
    buffer = io.BytesIO()
    legacy = {"format": 1, "name": "dpo", "options": drift.options, "metadata": {"label": "old"}}
    np.savez(buffer, **{"p/alpha": np.float32(2.0), "p/beta": np.float32(0.6), "__drift__": np.asarray(json.dumps(legacy))})
    (tmp_path / "old.npz").write_bytes(buffer.getvalue())
    loaded, params, metadata = artifacts.load_artifact(tmp_path / "old.npz")
    assert loaded.name == "dpo" and metadata == {"label": "old"} and float(params["alpha"]) == 2.0


def test_prepare_run_dir(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "x").write_text("")
    with pytest.raises(UserError, match="already exists"):
        prepare_run_dir(tmp_path / "run")
    assert prepare_run_dir(tmp_path / "run", overwrite=True).is_dir()
    with pytest.raises(UserError, match="holds no grid"):
        prepare_run_dir(tmp_path / "run", resume_marker="grid.json")
    (tmp_path / "run" / "grid.json").write_text("{}")
    assert prepare_run_dir(tmp_path / "run", resume_marker="grid.json").is_dir()


def test_artifact_round_trip_and_errors(tmp_path):
    drift = df.make("ta_lpo", hidden_size=16)
    params = drift.init(jax.random.PRNGKey(0))
    path = artifacts.save_artifact(tmp_path / "d.npz", drift, params, {"label": "x"})
    assert path.stat().st_size < 10_000
    loaded, loaded_params, metadata = artifacts.load_artifact(path)
    assert loaded.spec == drift.spec and metadata == {"label": "x"}
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(loaded_params)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(artifacts.ArtifactError, match="not found"):
        artifacts.load_artifact(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(artifacts.ArtifactError, match="corrupt"):
        artifacts.load_artifact(tmp_path / "bad.npz")
