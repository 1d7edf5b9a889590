"""The meta-gradient outer loop of `meta-train`: bit-identical resume, the CLI end to end, one-line refusals."""

import jax
import numpy as np
import pytest
import yaml

from discovery.cli import main
from discovery.io import artifacts
from discovery.runtime.errors import UserError
from discovery.workflows import meta_gradient as mg
from discovery.workflows.meta_config import meta_config_from_dict

# PPO at 10× its usual learning rate leaves its trust region within a window: only there can the meta-gradient
# of a PPO-initialised drift be non-zero (tests/rl_algos/ppo/test_meta_gradient.py).
TINY = {
    "total_timesteps": 2048,
    "num_envs": 4,
    "num_steps": 32,
    "num_minibatches": 2,
    "update_epochs": 4,
    "learning_rate": 3e-3,
}
CONFIG = {
    "drift": "ra_lpo",
    "drift_options": {"ppo_init": True, "hidden_size": 8},
    "outer": "meta_gradient",
    "tasks": [{"env": "CartPole-v1", "overrides": TINY}],
    "meta_gradient": {"unroll": 2, "agents": 2, "learning_rate": 1e-2},
    "generations": 3,
    "checkpoint_every": 1,
}
REFERENCES = np.array([[21.6, 60.0]])


@pytest.fixture(scope="module")
def run_():
    return mg.build_run(meta_config_from_dict(CONFIG, {}), REFERENCES)


def test_a_resumed_meta_gradient_run_is_bit_identical(run_, tmp_path):
    straight = tmp_path / "straight"
    mg.run_generations(run_, mg.initial_state(run_), 0, 2, straight)
    resumed = tmp_path / "resumed"
    mg.run_generations(run_, mg.initial_state(run_), 0, 1, resumed)
    checkpoint = mg.load_state(resumed / "checkpoints" / "gen_000001.npz", run_, run_.config)
    assert checkpoint.generation == 1 and checkpoint.references.tolist() == REFERENCES.tolist()
    mg.run_generations(run_, checkpoint.es_state, 1, 2, resumed)
    rows = [mg.read_metrics(out) for out in (straight, resumed)]
    for key in ("fitness", "meta_loss", "grad_norm"):
        assert [r[key] for r in rows[0]] == [r[key] for r in rows[1]], key
    assert rows[0][-1]["grad_norm"] > 0  # the drift really moved
    for x, y in zip(
        jax.tree.leaves(artifacts.load_artifact(straight / "drift.npz")[1]),
        jax.tree.leaves(artifacts.load_artifact(resumed / "drift.npz")[1]),
    ):
        np.testing.assert_array_equal(x, y)


def test_a_checkpoint_of_another_shape_is_one_line(run_, tmp_path):
    other = mg.build_run(meta_config_from_dict({**CONFIG, "meta_gradient": {"unroll": 2, "agents": 4}}, {}), None)
    mg.run_generations(run_, mg.initial_state(run_), 0, 1, tmp_path)
    expected = r"corrupt checkpoint .*state leaf \d+ is float32\[2, 64\], expected float32\[4, 64\]"
    with pytest.raises(UserError, match=expected):
        mg.load_state(tmp_path / "checkpoints" / "gen_000001.npz", other, None)


# The CLI end to end (references, validation, two starts, train): `make test-all` (2-3 minutes on 2 cores).
@pytest.mark.slow
def test_meta_train_by_meta_gradients_writes_a_drift_train_accepts(tmp_path, capsys):
    config = tmp_path / "mg.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "validate_every": 2, "validation_seeds": 2}))
    out = tmp_path / "run"
    assert main(["meta-train", "--config", str(config), "--out", str(out), "--generations", "2"]) == 0
    err = capsys.readouterr().err
    assert "meta-gradients through K=2 updates" in err and "GiB per device" in err
    assert {"drift.npz", "best_validated_drift.npz", "fitness.png", "metrics.jsonl"} <= {p.name for p in out.iterdir()}
    rows = mg.read_metrics(out)
    assert rows[-1]["validation"]["score"] is not None
    assert main(["meta-train", "--resume", str(out), "--generations", "3"]) == 0
    assert len(mg.read_metrics(out)) == 3
    assert main(["train", "--drift", str(out / "drift.npz"), "--env", "CartPole-v1", "--seeds", "1",
                 "--total-timesteps", "1024", "--out", str(tmp_path / "train")]) == 0  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"outer": "backprop"}, "outer must be one of es, meta_gradient, got 'backprop'"),
        ({"meta_gradient": {"unroll": 0}}, "meta_gradient.unroll must be >= 1, got 0"),
        ({"meta_gradient": {"unroll": 64}}, "unroll (K) must be between 1 and the task's 16 updates"),
        ({"meta_gradient": {"learning_rate": -1.0}}, "meta_gradient.learning_rate must be > 0"),
        ({"meta_gradient": {"unrol": 2}}, "unknown meta_gradient field(s) unrol"),
        (
            {"tasks": [{"env": "CartPole-v1", "overrides": {**TINY, "update_epochs": [1, 4]}}]},
            "sampled settings and tasks_per_generation are for the ES outer loop",
        ),
    ],
)
def test_bad_meta_gradient_configs_are_one_line_and_exit_2(tmp_path, capsys, change, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, **change}))
    assert main(["meta-train", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err


def test_an_unroll_that_does_not_fit_in_memory_is_refused(run_, monkeypatch):
    monkeypatch.setattr(mg, "available_memory", lambda device: 1024)
    with pytest.raises(UserError, match=r"meta_gradient.unroll 2 with 2 agents needs .* GiB per device"):
        mg.check_memory(run_)


def test_both_outer_loops_start_from_the_same_drift(run_):
    from discovery.workflows import meta_training as mt

    es_run = mt.build_run(meta_config_from_dict({**CONFIG, "outer": "es"}, {}), None)
    es_mean = es_run.strategy.mean(mt.initial_state(es_run))
    for x, y in zip(jax.tree.leaves(es_mean), jax.tree.leaves(mg.initial_state(run_).drift_params)):
        np.testing.assert_array_equal(x, y)
