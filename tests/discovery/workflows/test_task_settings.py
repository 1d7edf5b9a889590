"""Sampled tasks and settings in meta-training: the draw is a pure function of the generation key, a resumed run
with sampling is bit-identical to an uninterrupted one, members are scored against PPO at the same draw, and bad
distributions are one line and exit 2."""

import jax
import numpy as np
import pytest
import yaml

from discovery.cli import main
from discovery.io import artifacts
from discovery.runtime.errors import UserError
from discovery.workflows import fitness
from discovery.workflows import meta_training as mt
from discovery.workflows import task_settings as ts

TINY = {"total_timesteps": 512, "num_envs": 2, "num_steps": 32, "num_minibatches": 2}
CONFIG = {
    "drift": "ra_lpo",
    "drift_options": {"hidden_size": 8},
    "tasks": [
        {
            "env": "CartPole-v1",
            "overrides": {**TINY, "update_epochs": [1, 3], "learning_rate": {"low": 1e-3, "high": 1e-2}},
        },
        {"env": "Catch-bsuite", "overrides": {**TINY, "update_epochs": 2, "learning_rate": [3e-3, 1e-2]}},
    ],
    "tasks_per_generation": 1,
    "es": {"algorithm": "Open_ES", "population_size": 4, "sigma": 0.1, "learning_rate": 0.05},
    "generations": 3,
    "seeds": 2,
    "checkpoint_every": 1,
    "population_chunk": 2,
}
# The run the resume test trains: CartPole with a learning-rate range and Catch with choices, one drawn per
# generation (two compiled programs for the members, two for PPO; static choices are covered by the draw tests).
RUN_CONFIG = {
    **CONFIG,
    "tasks": [
        {"env": "CartPole-v1", "overrides": {**TINY, "update_epochs": 2, "learning_rate": {"low": 1e-3, "high": 1e-2}}},
        CONFIG["tasks"][1],
    ],
}
REFERENCES = np.array([[22.0, 40.0], [-0.8, 0.2]])  # random and PPO at the base setting: fixed, so no PPO runs here


def test_the_draw_is_a_pure_function_of_the_generation_key():
    config = mt.meta_config_from_dict(CONFIG, {})
    sampled = [task.sampled for task in config.tasks]
    draws = [ts.draw_settings(jax.random.PRNGKey(g), sampled, 1) for g in range(40)]
    assert draws == [ts.draw_settings(jax.random.PRNGKey(g), sampled, 1) for g in range(40)]
    assert {d[0].task for d in draws} == {0, 1}  # both tasks get drawn
    cartpole = [d[0].values for d in draws if d[0].task == 0]
    assert {v["update_epochs"] for v in cartpole} == {1, 3}
    assert all(1e-3 <= v["learning_rate"] <= 1e-2 for v in cartpole)
    assert len({v["learning_rate"] for v in cartpole}) == len(cartpole)  # a range, not a grid
    catch = [d[0].values for d in draws if d[0].task == 1]
    assert {v["learning_rate"] for v in catch} == {3e-3, 1e-2} and all(set(v) == {"learning_rate"} for v in catch)
    every_task = ts.draw_settings(jax.random.PRNGKey(0), sampled, None)
    assert [d.task for d in every_task] == [0, 1]


def test_config_round_trips_and_keeps_fixed_lists():
    config = mt.meta_config_from_dict(CONFIG, {})
    again = mt.meta_config_from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict())), {})
    assert again.identity() == config.identity() and again.sampling
    hidden = mt.meta_config_from_dict({"tasks": [{"env": "CartPole-v1", "overrides": {"actor_hidden": [32, 32]}}]}, {})
    assert not hidden.sampling and mt.task_specs(hidden)[0].ppo.actor_hidden == (32, 32)
    assert [spec.ppo.update_epochs for spec in mt.variant_specs(config)[0]] == [1, 3]


@pytest.fixture(scope="module")
def run_():
    return mt.build_run(mt.meta_config_from_dict(RUN_CONFIG, {}), REFERENCES)


@pytest.fixture(scope="module")
def straight(run_, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    state, rows = mt.run_generations(run_, mt.initial_state(run_), 0, 3, out)
    return out, rows


def test_sampled_generations_record_their_draw_and_score_against_ppo(straight):
    _, rows = straight
    for row in rows:
        (draw,) = row["draws"]
        assert draw["env"] in ("CartPole-v1", "Catch-bsuite") and "learning_rate" in draw
        random_return, base_ppo = REFERENCES[draw["task"]]
        gap = max(draw["ppo_return"] - random_return, 0.1 * (base_ppo - random_return))
        np.testing.assert_allclose(np.mean(row["fitness"]), (draw["return_mean"] - random_return) / gap, rtol=1e-5)
        assert row["env_steps"] == 5 * 2 * 512  # (4 members + PPO) × 2 seeds


def test_a_resumed_sampled_run_is_bit_identical(run_, straight, tmp_path):
    straight_out, straight_rows = straight
    out = tmp_path / "resumed"
    mt.run_generations(run_, mt.initial_state(run_), 0, 1, out)
    checkpoint = mt.load_checkpoint(mt.latest_checkpoint_file(out), run_.strategy)
    assert checkpoint.references.tolist() == REFERENCES.tolist()  # --resume rebuilds the run from these
    mt.run_generations(run_, checkpoint.es_state, checkpoint.generation, 3, out)
    rows = mt.read_metrics(out)
    assert [r["draws"] for r in rows] == [r["draws"] for r in straight_rows]
    assert [r["fitness"] for r in rows] == [r["fitness"] for r in straight_rows]
    for x, y in zip(
        jax.tree.leaves(artifacts.load_artifact(straight_out / "drift.npz")[1]),
        jax.tree.leaves(artifacts.load_artifact(out / "drift.npz")[1]),
    ):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"update_epochs": [0, 4]}, "every choice of update_epochs must be an integer >= 1, got 0"),
        ({"learning_rate": [-1e-3, 1e-3]}, "every value of learning_rate must be a finite number > 0"),
        ({"learning_rate": {"low": 1e-2, "high": 1e-3}}, "needs low < high"),
        ({"update_epochs": {"low": 1, "high": 8}}, "takes choices (a list"),
        ({"learning_rate": {"lo": 1e-3, "hi": 1e-2}}, "must be {low: ..., high: ...}"),
        ({"num_minibatches": [2, 3]}, "does not divide"),
        ({"update_epoch": [1, 2]}, "update_epoch"),
    ],
)
def test_bad_distributions_are_one_line_and_exit_2(tmp_path, capsys, overrides, message):
    config = {**CONFIG, "tasks": [{"env": "CartPole-v1", "overrides": {**TINY, **overrides}}]}
    config.pop("tasks_per_generation")
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["meta-train", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err, err


def test_tasks_per_generation_must_fit_the_task_list():
    with pytest.raises(UserError, match="tasks_per_generation must be between 1 and the number of tasks"):
        mt.meta_config_from_dict({**CONFIG, "tasks_per_generation": 3}, {})


def _draw_result(task: int, scores) -> "fitness.DrawResult":
    draw = ts.Draw(task=task, variant=0, values={})
    return fitness.DrawResult(draw, np.asarray(scores), 1.0, np.asarray(scores, np.float64), 0)


def test_task_ranked_fitness_gives_every_task_one_vote():
    wide = _draw_result(0, [0.0, 10.0, 20.0, 30.0])  # a task whose scores spread 30 units
    narrow = _draw_result(1, [0.03, 0.02, 0.01, 0.0])  # one that orders the members the other way, by 0.03
    mean_score = np.mean([wide.scores, narrow.scores], axis=0)
    assert np.argmax(mean_score) == 3  # by the mean score the wide task decides alone
    np.testing.assert_allclose(
        fitness.task_ranked_fitness([wide, narrow]), 0.0, atol=1e-12
    )  # by ranks the two votes cancel
    np.testing.assert_allclose(fitness.task_ranked_fitness([wide]), [-0.5, -1 / 6, 1 / 6, 0.5])
    with_nan = _draw_result(0, [np.nan, 1.0, 0.0, 2.0])
    np.testing.assert_allclose(fitness.task_ranked_fitness([with_nan]), [-0.5, 1 / 6, -1 / 6, 0.5])
    failed = _draw_result(1, [np.nan] * 4)
    np.testing.assert_allclose(fitness.task_ranked_fitness([with_nan, failed]), [-0.5, 1 / 6, -1 / 6, 0.5])  # no vote
    assert np.isnan(fitness.task_ranked_fitness([failed])).all()  # nothing finite: ES skips the generation


def test_a_rank_run_reports_mean_scores(tmp_path):
    config = mt.meta_config_from_dict({**RUN_CONFIG, "tasks_per_generation": 2, "task_fitness": "rank"}, {})
    assert config.to_dict()["task_fitness"] == "rank"
    assert "task_fitness" not in mt.meta_config_from_dict(RUN_CONFIG, {}).to_dict()  # older runs keep their identity
    run = mt.build_run(config, REFERENCES)
    _, (row,) = mt.run_generations(run, mt.initial_state(run), 0, 1, tmp_path / "rank")
    assert len(row["draws"]) == 2
    np.testing.assert_allclose(row["fitness_mean"], np.mean([d["score_mean"] for d in row["draws"]]), rtol=1e-5)
    assert row["best_fitness"] == pytest.approx(max(row["fitness"]), rel=1e-6)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"task_fitness": "median"}, "task_fitness must be one of score, rank, got 'median'"),
        ({"task_fitness": "rank", "tasks": [{"env": "CartPole-v1"}], "tasks_per_generation": None}, "needs sampled"),
    ],
)
def test_bad_task_fitness_is_one_line(values, message):
    with pytest.raises(UserError, match=message):
        mt.meta_config_from_dict({**CONFIG, **values}, {})
