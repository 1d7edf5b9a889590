"""Shared I/O: the one npz-with-header format (artifacts, checkpoints, cells), atomic writes, run directories."""

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import drift_functions as df
from discovery.cli import main
from discovery.io import artifacts
from discovery.io.outputs import HEADER_KEY, LOCK_NAME, atomic_write_text, prepare_run_dir, read_npz, write_npz
from discovery.runtime.errors import UserError


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
    np.savez(
        buffer, **{"p/alpha": np.float32(2.0), "p/beta": np.float32(0.6), "__drift__": np.asarray(json.dumps(legacy))}
    )
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


def test_output_files_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "results.md", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize("where", ["/proc/discovery-test/out", "FILE/sub"])
def test_an_unwritable_out_is_one_line(tmp_path, capsys, where):
    (tmp_path / "file").write_text("x")
    out = where.replace("FILE", str(tmp_path / "file"))
    assert main(["train", "--total-timesteps", "4096", "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"cannot write to --out {out}" in err and "choose another --out" in err
    assert "is a file, not a directory" in err if "FILE" in where else "no directory can be created under /proc" in err


REPO_ROOT = Path(__file__).resolve().parents[3]


def test_a_second_run_into_a_directory_in_use_is_refused(tmp_path):
    out = tmp_path / "shared"
    prepare_run_dir(out)  # this process holds it, as a running `train` would
    assert (out / LOCK_NAME).is_file()
    code = (
        "import sys; from discovery.io.outputs import prepare_run_dir; from discovery.runtime.errors import UserError\n"
        "try:\n    prepare_run_dir(sys.argv[1], overwrite=True)\nexcept UserError as e:\n    print(e); sys.exit(2)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 2 and "in use by another discovery run" in proc.stdout, proc.stdout + proc.stderr


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "stale"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    (out / LOCK_NAME).write_text(f"{proc.stdout.strip()} {socket.gethostname()}\n")
    assert prepare_run_dir(out) == out
