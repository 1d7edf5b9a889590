"""`discovery meta-train`: smoke run, PPO equivalence at generation 0, resume, sharding, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

import drift_functions
from discovery import artifacts
from discovery import meta_training as mt
from discovery.cli import main

TINY_TASK = {"total_timesteps": 1024, "num_envs": 4, "num_steps": 32, "num_minibatches": 2, "update_epochs": 1}
TINY_CONFIG = {
    "drift": "lpo",
    "drift_options": {"ppo_init": True, "hidden_size": 16},
    "tasks": [{"env": "CartPole-v1", "overrides": TINY_TASK}],
    "es": {"algorithm": "Open_ES", "population_size": 4, "sigma": 0.1, "learning_rate": 0.05},
    "generations": 2,
    "seeds": 1,
    "checkpoint_every": 1,
}


@pytest.fixture()
def config_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_CONFIG))
    return path


def _mean_params(out: Path):
    _, params, metadata = artifacts.load_artifact(out / "drift.npz")
    return params, metadata


def test_smoke_meta_train_writes_everything_and_artifact_trains(tmp_path, config_file):
    out = tmp_path / "m"
    assert main(["meta-train", "--config", str(config_file), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in rows] == [0, 1]
    assert all(np.isfinite(r["fitness_mean"]) and len(r["fitness"]) == 4 for r in rows)
    assert (out / "config.yaml").is_file() and (out / "best_drift.npz").is_file() and (out / "fitness.png").is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["gen_000001.npz", "gen_000002.npz"]
    params, metadata = _mean_params(out)
    assert metadata["generation"] == 2
    assert any(float(np.abs(p).max()) > 0 for p in jax.tree.leaves(params))  # the ES moved off PPO
    code = main(["train", "--env", "CartPole-v1", "--drift", str(out / "drift.npz"), "--seeds", "2", "--out", str(tmp_path / "t"),
                 "--total-timesteps", "1024", "--num-envs", "4", "--num-steps", "32", "--num-minibatches", "2", "--update-epochs", "1"])
    assert code == 0
    assert json.loads((tmp_path / "t" / "results.json").read_text())["config"]["drift"]["family"] == "lpo"


def test_generation_zero_mean_of_ppo_initialised_lpo_is_ppo():
    config = mt.meta_config_from_dict(TINY_CONFIG, {})
    run = mt.build_run(config, None, None)
    zero_mean = run.drift.init(jax.random.PRNGKey(0))
    assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(zero_mean))
    ppo = drift_functions.make("ppo_clip")
    ppo_fitness = mt.make_fitness_fn(run.specs, ppo, config.seeds, None)
    key = jax.random.PRNGKey(7)
    lpo_value = float(jax.jit(run.fitness_fn)(key, zero_mean))
    ppo_value = float(jax.jit(ppo_fitness)(key, ppo.init(None)))
    # identical but for PPO-clip's 1e-4 flatness margin inside the relu
    assert lpo_value == pytest.approx(ppo_value, rel=1e-3)


def test_resume_equals_uninterrupted_run(tmp_path, config_file):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert main(["meta-train", "--config", str(config_file), "--generations", "3", "--out", str(straight)]) == 0
    assert main(["meta-train", "--config", str(config_file), "--generations", "1", "--out", str(interrupted)]) == 0
    # a generation that was running when the process died leaves no trace; resume continues from the checkpoint
    assert main(["meta-train", "--resume", str(interrupted), "--generations", "3"]) == 0
    a, _ = _mean_params(straight)
    b, _ = _mean_params(interrupted)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    rows = [json.loads(line)["generation"] for line in (interrupted / "metrics.jsonl").read_text().splitlines()]
    assert rows == [0, 1, 2]


def test_four_forced_cpu_devices_give_the_same_es_mean(tmp_path, config_file):
    one = tmp_path / "one"
    assert main(["meta-train", "--config", str(config_file), "--out", str(one)]) == 0
    four = tmp_path / "four"
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "discovery.cli", "meta-train", "--config", str(config_file), "--out", str(four)],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "4 device(s)" in proc.stderr
    a, _ = _mean_params(one)
    b, _ = _mean_params(four)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


def _error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_user_errors(tmp_path, capsys, config_file):
    assert "config file not found" in _error(capsys, ["meta-train", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "a")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("es: [unclosed")
    assert "malformed YAML" in _error(capsys, ["meta-train", "--config", str(bad), "--out", str(tmp_path / "a")])
    assert "Open_ES" in _error(capsys, ["meta-train", "--config", str(config_file), "--algorithm", "NoSuchES", "--out", str(tmp_path / "a")])
    assert "even" in _error(capsys, ["meta-train", "--config", str(config_file), "--population-size", "5", "--out", str(tmp_path / "a")])
    assert "does not exist" in _error(capsys, ["meta-train", "--resume", str(tmp_path / "missing")])
    assert not (tmp_path / "a").exists()


def test_a_key_with_two_meanings_is_refused_and_prefixes_route(tmp_path, capsys, config_file):
    """`learning_rate` is an ES and a PPO field: the bare key is refused, `es.` / `ppo.` route it."""
    err = _error(capsys, ["meta-train", "--config", str(config_file), "--learning-rate", "3e-3", "--out", str(tmp_path / "a")])
    assert "es.learning_rate" in err and "ppo.learning_rate" in err
    assert not (tmp_path / "a").exists()
    config = mt.meta_config_from_dict(TINY_CONFIG, {"es.learning_rate": "3e-3", "ppo.learning_rate": "1e-4", "update_epochs": "2",
                                                    "drift.ppo_init": "false", "seeds": "3"})
    assert config.es.learning_rate == 3e-3 and config.seeds == 3 and config.drift_options["ppo_init"] is False
    assert all(t.overrides["learning_rate"] == 1e-4 and t.overrides["update_epochs"] == 2 for t in config.tasks)
    assert "unknown es field 'nope'" in _error(capsys, ["meta-train", "--config", str(config_file), "--es.nope", "1"])


def test_resume_refuses_other_config_and_corrupt_checkpoint(tmp_path, capsys, config_file):
    out = tmp_path / "m"
    assert main(["meta-train", "--config", str(config_file), "--generations", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    assert "different config" in _error(capsys, ["meta-train", "--resume", str(out), "--sigma", "0.5"])
    checkpoint = out / "checkpoints" / "gen_000001.npz"
    checkpoint.write_bytes(b"garbage")
    assert "corrupt checkpoint" in _error(capsys, ["meta-train", "--resume", str(out), "--generations", "2"])
    assert checkpoint.read_bytes() == b"garbage"  # left exactly as found
