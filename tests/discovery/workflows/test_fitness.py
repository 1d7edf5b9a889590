"""Meta-training's validation: the ES mean on fresh seeds against PPO, logged and kept when best."""

import json

import numpy as np
import pytest

from discovery.cli import main
from discovery.io.artifacts import load_artifact

CONFIG = """
drift: lpo
drift_options: {ppo_init: true, hidden_size: 8}
tasks:
  - env: CartPole-v1
    overrides: {total_timesteps: 1024, num_envs: 8, num_steps: 32, num_minibatches: 2, update_epochs: 8,
                learning_rate: 3.0e-3}
  - env: Catch-bsuite
    overrides: {total_timesteps: 1024, num_envs: 8, num_steps: 32, num_minibatches: 2, update_epochs: 8,
                learning_rate: 3.0e-3}
es: {population_size: 4, sigma: 0.5, learning_rate: 0.5}
generations: 3
seeds: 2
validate_every: 1
validation_seeds: 3
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("validation")
    (root / "meta.yaml").write_text(CONFIG)
    out = root / "run"
    assert main(["meta-train", "--config", str(root / "meta.yaml"), "--out", str(out)]) == 0
    return out


def test_every_validated_generation_is_logged(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["generation"] for row in rows] == [0, 1, 2]
    for row in rows:
        validation = row["validation"]
        assert set(validation) == {"score", "per_task", "returns", "ppo_returns"}
        assert len(validation["per_task"]) == len(validation["returns"]) == len(validation["ppo_returns"]) == 2
        assert np.isfinite(validation["score"])
        assert validation["score"] == pytest.approx(np.mean(validation["per_task"]))
        # PPO's validation returns are computed once, on the same fresh seeds every time.
        assert validation["ppo_returns"] == rows[0]["validation"]["ppo_returns"]
        assert row["env_steps_total"] == (row["generation"] + 1) * 4 * 2 * 2 * 1024
        assert row["cpu_seconds_total"] > 0


def test_best_validated_drift_is_the_best_scoring_mean(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    scores = [row["validation"]["score"] for row in rows]
    best = int(np.argmax(scores))  # the first of equal scores is kept
    drift, params, metadata = load_artifact(run_dir / "best_validated_drift.npz")
    assert drift.name == "lpo"
    assert metadata["generation"] == best + 1
    assert metadata["validation"]["score"] == pytest.approx(scores[best])
    assert (run_dir / "fitness.png").read_bytes()[:4] == b"\x89PNG"


def test_references_are_random_and_ppo_per_task(run_dir):
    from discovery.workflows.meta_training import build_run, latest_checkpoint_file, load_checkpoint, load_meta_config

    config = load_meta_config(str(run_dir / "config.yaml"), {})
    checkpoint = load_checkpoint(latest_checkpoint_file(run_dir), build_run(config, None).strategy)
    references = np.asarray(checkpoint.references)
    assert references.shape == (2, 2)  # [tasks, (random, ppo)]
    random_cartpole, random_catch = references[:, 0]
    assert 15 < random_cartpole < 30 and -1.0 <= random_catch <= 0.0
