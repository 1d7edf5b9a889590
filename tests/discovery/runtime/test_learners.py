"""Where a batch of learners runs: the same numbers at any device count, and one learner split over devices."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from discovery.io.configs import load_train_spec
from discovery.runtime.learners import MIN_MICRO_BATCHES, env_shards_for, plan_learners

REPO_ROOT = Path(__file__).resolve().parents[3]
PROBE = REPO_ROOT / "tests" / "scripts" / "layout_probe.py"


def _probe(devices: int, out: Path) -> subprocess.Popen:
    env = {**os.environ, "DISCOVERY_CPU_DEVICES": str(devices), "JAX_PLATFORMS": "cpu", "DISCOVERY_LAYOUT": "auto"}
    env.pop("XLA_FLAGS", None)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    return subprocess.Popen([sys.executable, str(PROBE), str(out)], env=env, cwd=REPO_ROOT)


def _same_on(counts, tmp_path):
    results = {}
    for start in range(0, len(counts), 2):  # two at a time: much of each run is single-threaded compilation
        running = {count: _probe(count, tmp_path / f"{count}.npz") for count in counts[start : start + 2]}
        for count, process in running.items():
            assert process.wait(timeout=240) == 0
            results[count] = np.load(tmp_path / f"{count}.npz")
    first = results[counts[0]]
    for count in counts[1:]:
        assert int(results[count]["devices"]) == count
        np.testing.assert_array_equal(results[count]["fitness"], first["fitness"])  # 16 ES members × 2 seeds
        np.testing.assert_array_equal(results[count]["returns"], first["returns"])  # 8 seeds of `train`-style learners
    assert len(np.unique(first["fitness"])) > 4  # members really differ, so a rounding change would show


def test_one_and_eight_devices_give_identical_learners_and_fitness(tmp_path):
    _same_on((1, 8), tmp_path)


@pytest.mark.slow
def test_one_two_four_and_eight_devices_give_identical_learners_and_fitness(tmp_path):
    _same_on((1, 2, 4, 8), tmp_path)


def _config(**overrides):
    spec, _ = load_train_spec(
        "CartPole-v1", {"total_timesteps": 1024, "num_envs": 4, "num_steps": 32, "num_minibatches": 2, **overrides}
    )
    return spec.ppo


def test_micro_batches_depend_on_the_batch_not_on_the_devices():
    config = _config()
    one = jax.devices()[:1]
    assert plan_learners(config, 256, one, "learners", 32).items.micro_batch == 32
    assert plan_learners(config, 8, one, "learners", 32).items.micro_batch == 8 // MIN_MICRO_BATCHES
    assert plan_learners(config, 1, one, "learners", 32).items.micro_batch == 1  # one learner: no vmap at all
    layout = plan_learners(config, 10, one, "learners", 4)
    assert layout.items.micro_batch == 2 and layout.items.padded == 10


def test_a_learner_splits_only_where_its_envs_and_minibatches_divide():
    assert env_shards_for(_config(), 8) == 4  # 4 envs
    assert env_shards_for(_config(num_envs=6, num_minibatches=3), 4) == 2  # 6 envs, minibatches of 64
    assert env_shards_for(_config(num_envs=1, num_minibatches=1), 4) == 1
