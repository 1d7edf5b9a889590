"""Regression tests for the defects a new user hit (issue: same result at any core count, and the probe)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from discovery import distributed
from discovery import meta_training as mt
from discovery.cli import main
from discovery.configs import load_train_spec
from discovery.errors import UserError
from discovery.evaluate.grid import GRID_FILE, refuse_dropping
from discovery.fitness import random_return
from discovery.outputs import LOCK_NAME, prepare_run_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
MINATAR = ("Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar")


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ---- random baselines fit the task ---------------------------------------------------------------


@pytest.mark.parametrize("env", MINATAR)
def test_every_minatar_game_has_a_random_baseline(env):
    """Freeway's episodes last 2,500 steps: a fixed 1,000-step window saw none of them end."""
    spec, _ = load_train_spec(env, {})
    value = random_return(spec, 0)
    assert value == value and value >= 0.0  # finite (not NaN); MinAtar rewards are non-negative


def test_freeway_evaluates(tmp_path):
    assert main(["evaluate", "--drifts", "ppo", "--envs", "Freeway-MinAtar", "--seeds", "2", "--total-timesteps", "16384",
                 "--out", str(tmp_path / "freeway")]) == 0
    rows = json.loads((tmp_path / "freeway" / "results.json").read_text())["rows"]
    assert rows[0]["random_return"] > 0


# ---- results are never lost or dropped ----------------------------------------------------------


def test_a_second_run_into_a_directory_in_use_is_refused(tmp_path):
    out = tmp_path / "shared"
    prepare_run_dir(out)  # this process holds it, as a running `train` would
    assert (out / LOCK_NAME).is_file()
    code = ("import sys; from discovery.outputs import prepare_run_dir; from discovery.errors import UserError\n"
            "try:\n    prepare_run_dir(sys.argv[1], overwrite=True)\nexcept UserError as e:\n    print(e); sys.exit(2)")
    proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, cwd=REPO_ROOT)
    assert proc.returncode == 2 and "in use by another discovery run" in proc.stdout, proc.stdout + proc.stderr


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "stale"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    (out / LOCK_NAME).write_text(f"{proc.stdout.strip()} {socket.gethostname()}\n")
    assert prepare_run_dir(out) == out


def test_an_evaluation_rerun_that_would_drop_a_drift_is_refused(tmp_path):
    (tmp_path / GRID_FILE).write_text(json.dumps({"drifts": [{"label": "ppo"}, {"label": "dpo"}, {"label": "mine"}],
                                                    "tasks": {"CartPole-v1": {}}}))
    with pytest.raises(UserError, match="without mine"):
        refuse_dropping(tmp_path, ["ppo", "dpo"], ["CartPole-v1"])
    refuse_dropping(tmp_path, ["ppo", "dpo", "mine", "new"], ["CartPole-v1"])  # adding is fine


# ---- one line, exit 2 -------------------------------------------------------------------------------


def test_an_empty_task_list_is_refused():
    with pytest.raises(UserError, match="'tasks' in .* is empty"):
        mt.meta_config_from_dict({"tasks": []}, {})


@pytest.mark.parametrize("option", [["--episode-length", "0"], ["--action-repeat", "-1"]])
@pytest.mark.parametrize("env", ["hopper", "examples.point_mass:make"])
def test_bad_brax_env_options_are_one_line(option, env, tmp_path, capsys):
    assert main(["train", "--env", env, *option, "--out", str(tmp_path / "t")]) == 2
    assert option[0].lstrip("-").replace("-", "_") in _one_line(capsys)


def test_resuming_after_config_yaml_was_edited_says_so(tmp_path, capsys):
    config = mt.load_meta_config("configs/meta/cartpole_demo.yaml", {})
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    run = mt.build_run(config, None)
    mt.save_checkpoint(out, mt.Checkpoint(2, mt.initial_state(run), None, config.to_dict()))
    edited = config.to_dict()
    edited["drift_options"]["hidden_size"] = 64
    (out / "config.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    assert main(["meta-train", "--resume", str(out)]) == 2
    err = _one_line(capsys)
    assert "no longer matches" in err and "drift_options" in err and "corrupt" not in err


def test_a_waiting_distributed_join_names_the_missing_process():
    import socket

    with socket.socket() as server:  # a coordinator that is up
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert "start process 1" in distributed._missing_processes(f"127.0.0.1:{port}", 3, 2)
    assert "process 0 (the coordinator" in distributed._missing_processes(f"127.0.0.1:{port}", 2, 1)  # now closed
    assert "processes 1, 2 did not join" in distributed._missing_processes("127.0.0.1:1", 3, 0)
