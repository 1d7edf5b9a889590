"""Tests of discovery/runtime/wandb_logging."""

from pathlib import Path

import pytest

from discovery.cli import main
from discovery.runtime.errors import UserError


@pytest.fixture
def no_wandb_login(tmp_path, monkeypatch):
    from discovery.runtime import wandb_logging

    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setattr(wandb_logging, "_checked", set())
    return wandb_logging


def test_wandb_online_without_an_api_key_is_one_line(tmp_path, capsys, no_wandb_login):
    out = tmp_path / "out"
    assert main(["train", "--total-timesteps", "4096", "--wandb", "online", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1 and "needs a W&B API key" in err and "--wandb offline" in err and "wandb sync" in err
    )
    assert not out.exists()


def test_wandb_online_without_network_fails_fast_and_leaves_out_reusable(tmp_path, capsys, monkeypatch, no_wandb_login):
    import time

    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there: as without network
    out = tmp_path / "out"
    started = time.perf_counter()
    assert main(["train", "--total-timesteps", "4096", "--wandb", "online", "--out", str(out)]) == 2
    assert time.perf_counter() - started < 60  # it was a 90 s hang; the probe itself waits at most 5 s
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot reach http://127.0.0.1:9" in err and "--wandb offline" in err
    assert not out.exists()


def test_a_failing_wandb_init_leaves_no_wandb_dir(tmp_path, monkeypatch, no_wandb_login):
    import wandb

    def failing_init(dir, **kwargs):
        (Path(dir) / "wandb" / "run-x").mkdir(parents=True)
        raise wandb.errors.CommError("Run initialization has timed out after 30.0 sec.\nmore lines")

    monkeypatch.setattr(no_wandb_login, "preflight", lambda mode: None)
    monkeypatch.setattr(wandb, "init", failing_init)
    with pytest.raises(
        UserError,
        match=r"could not start a run: Run initialization has timed out after 30.0 sec.; or run with --wandb offline",
    ):
        no_wandb_login.WandbRun("online", tmp_path, project="p", name="n", config={})
    assert list(tmp_path.iterdir()) == []  # --out stays empty: no --overwrite needed to rerun


def test_an_offline_run_prints_the_wandb_sync_command(tmp_path, monkeypatch, capsys, no_wandb_login):
    import wandb

    class FakeRun:
        dir = str(tmp_path / "wandb" / "offline-run-20250101_000000-abc" / "files")

        def finish(self):
            pass

    monkeypatch.setattr(no_wandb_login, "_sync_hinted", set())
    monkeypatch.setattr(wandb, "init", lambda **kwargs: FakeRun())
    run = no_wandb_login.WandbRun("offline", tmp_path, project="p", name="n", config={})
    run.finish()
    err = capsys.readouterr().err
    assert f"wandb sync {tmp_path}/wandb/offline-run-20250101_000000-abc" in err.replace("\n", "")
