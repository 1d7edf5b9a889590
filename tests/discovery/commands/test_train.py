"""`discovery train`: outputs, and one-line user errors with exit status 2 before anything compiles."""

import csv
import json
import subprocess
import sys

import matplotlib.image
import pytest

from discovery.cli import main

FAST = [
    "--total-timesteps",
    "2048",
    "--num-envs",
    "4",
    "--num-steps",
    "32",
    "--num-minibatches",
    "2",
    "--update-epochs",
    "1",
]


def test_train_writes_results_metrics_and_plot(tmp_path):
    out = tmp_path / "run"
    assert (
        main(["train", "--env", "CartPole-v1", "--drift", "dpo:alpha=1.5", "--seeds", "2", "--out", str(out)] + FAST)
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["drift"]["options"] == {"alpha": 1.5, "beta": 0.6}
    assert results["config"]["train"]["ppo"]["num_envs"] == 4
    assert len(results["summary"]["final_return_per_seed"]) == 2
    assert "jax" in results["environment"]["versions"]
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    updates = 2048 // (4 * 32)
    assert len(rows) == updates * 2 and {"episode_return", "approx_kl", "drift_active"} <= set(rows[0])
    image = matplotlib.image.imread(out / "learning_curve.png")
    assert image.ndim == 3 and image.shape[0] > 100


def test_existing_out_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    code = main(["train", "--out", str(out)] + FAST)
    err = capsys.readouterr().err
    assert code == 2 and "already exists" in err and err.count("\n") == 1, err
    assert (out / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--env", "NoSuchEnv"], "unknown environment 'NoSuchEnv'; valid environments: CartPole-v1"),
        (["--drift", "nope"], "unknown drift 'nope'; valid drifts: dpo"),
        (["--drift", "dpo:alpha"], "malformed drift override"),
        (["--drift", "dpo:gamma=2"], "bad option for drift 'dpo'"),
        (["--learning-rate", "-1"], "learning_rate must be > 0"),
        (["--learning-rate", "fast"], "bad value for learning_rate"),
        (["--num-minibatches", "3"], "does not divide into num_minibatches=3"),
        (["--no-such-field", "1"], "unknown option --no-such-field; valid options (ppo: total_timesteps"),
        (["--drift", "/nonexistent/drift.npz"], "drift artifact not found"),
        (["--backend", "spring"], "only apply to Brax"),
        (["--env", "hopper", "--backend", "warp"], "unknown brax backend 'warp'"),
    ],
)
def test_user_errors_are_one_line_exit_2(tmp_path, capsys, argv, message):
    code = main(["train", "--out", str(tmp_path / "x")] + argv)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()  # failed before creating anything


def test_unknown_env_from_a_real_process_exits_2_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "discovery.cli", "train", "--env", "NoSuchEnv"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "valid environments" in lines[0] and "Traceback" not in proc.stderr


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("option", [["--episode-length", "0"], ["--action-repeat", "-1"]])
@pytest.mark.parametrize("env", ["hopper", "examples.point_mass:make"])
def test_bad_brax_env_options_are_one_line(option, env, tmp_path, capsys):
    assert main(["train", "--env", env, *option, "--out", str(tmp_path / "t")]) == 2
    assert option[0].lstrip("-").replace("-", "_") in _one_line(capsys)
