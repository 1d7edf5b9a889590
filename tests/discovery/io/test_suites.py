"""Suites (loading and checking), random-normalised scores, `discovery drifts`, shipped drift lookup."""

import jax
import numpy as np
import pytest

import drift_functions
from discovery.cli import main
from discovery.io import drift_registry as drift_lookup
from discovery.io.artifacts import save_artifact
from discovery.io.suites import ROLES, load_suite, suite_names
from discovery.reporting.stats import normalized_score
from discovery.runtime.errors import UserError
from discovery.workflows.evaluate.suite_scores import normalized_scores, probability_of_improvement, role_statistics


def write(path, text):
    path.write_text(text)
    return str(path)


# ---- suites ----------------------------------------------------------------------------------


def test_shipped_cpu_suite_loads_with_both_roles():
    suite = load_suite("cpu")
    assert "cpu" in suite_names()
    labels = [task.label for task in suite.tasks]
    assert len(labels) == len(set(labels))
    train, held_out = suite.by_role("train"), suite.by_role("held_out")
    assert len(train) >= 3 and len(held_out) >= 6
    families = {task.spec().make_env().family for task in suite.tasks}
    assert {"classic_control", "bsuite", "minatar", "brax"} <= families
    cartpole = suite.task("CartPole-v1/16ep").spec().ppo
    assert (cartpole.update_epochs, cartpole.total_timesteps) == (
        16,
        8192,
    )  # the suite's overrides reach the PPO config


def test_suite_task_matches_the_meta_training_config():
    """The suite's training tasks are exactly what configs/meta/lpo_cpu_suite.yaml meta-trains on."""
    from discovery.workflows.meta_training import load_meta_config, task_specs

    meta_specs = task_specs(load_meta_config("configs/meta/lpo_cpu_suite.yaml", {}))
    suite_specs = [task.spec() for task in load_suite("cpu").by_role("train")]
    assert [s.env for s in meta_specs] == [s.env for s in suite_specs]
    assert [s.ppo for s in meta_specs] == [s.ppo for s in suite_specs]


@pytest.mark.parametrize(
    "body, message",
    [
        ("tasks: []", "non-empty 'tasks'"),
        ("tasks:\n  - {env: CartPole-v1, role: test}", "unknown role 'test'; valid roles: train, held_out"),
        ("tasks:\n  - {env: NoSuchEnv}", "unknown environment 'NoSuchEnv'"),
        ("tasks:\n  - {env: CartPole-v1}\n  - {env: CartPole-v1}", "repeats task label(s) CartPole-v1"),
        ("tasks:\n  - {env: CartPole-v1, budget: 5}", "unknown key(s) budget"),
        ("tasks:\n  - {env: CartPole-v1, overrides: {num_envz: 3}}", "unknown option --num-envz"),
        ("name: x\nflavour: y\ntasks:\n  - {env: CartPole-v1}", "unknown key(s) flavour"),
    ],
)
def test_bad_suites_are_one_line_errors(tmp_path, body, message):
    with pytest.raises(UserError) as error:
        load_suite(write(tmp_path / "suite.yaml", body))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_unknown_suite_name_lists_the_valid_ones():
    with pytest.raises(UserError, match="unknown suite 'nope'; valid suites: .*cpu"):
        load_suite("nope")


def test_evaluate_suite_refuses_bad_combinations(capsys):
    for argv, message in [
        (["--suite", "cpu", "--envs", "CartPole-v1"], "give --envs or --suite, not both"),
        (["--roles", "train"], "--roles selects tasks of a --suite"),
        (["--suite", "cpu", "--roles", "validation"], "unknown role(s) validation; valid roles: " + ", ".join(ROLES)),
        (["--suite", "nope"], "unknown suite 'nope'"),
    ]:
        assert main(["evaluate", "--drifts", "ppo", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


# ---- normalised scores ---------------------------------------------------------------------


def test_random_normalised_score_ranks_negative_returns_correctly():
    """Acrobot: random ≈ −500, PPO −85; a better drift (−70) must score above 1, a worse (−100) below."""
    random, ppo = -500.0, -85.0
    better, worse = normalized_score(np.array([-70.0, -100.0]), random, ppo)
    assert better > 1.0 > worse
    assert normalized_score(ppo, random, ppo) == pytest.approx(1.0)
    assert normalized_score(random, random, ppo) == pytest.approx(0.0)
    assert better == pytest.approx(430 / 415)
    # Dividing by PPO's return alone would rank them the wrong way round:
    assert -70.0 / ppo < 1.0 < -100.0 / ppo


def test_normalised_scores_are_blank_when_the_reference_equals_random():
    assert np.all(np.isnan(normalized_scores([1.0, 2.0], 5.0, 5.0)))


def test_probability_of_improvement_and_role_statistics():
    rng = np.random.default_rng(0)
    better = rng.normal(1.5, 0.1, (16, 3))
    reference = rng.normal(1.0, 0.1, (16, 3))
    point, low, high = probability_of_improvement(better, reference, reps=300)
    assert point > 0.95 and low > 0.5 and high <= 1.0
    point, low, high = probability_of_improvement(reference, reference, reps=300)
    assert point == pytest.approx(0.5) and low < 0.5 < high
    scores = {
        "ppo": {"a": reference[:, 0], "b": reference[:, 1], "c": np.full(16, np.nan)},
        "lpo": {"a": better[:, 0], "b": better[:, 1], "c": better[:, 2]},
    }
    stats = role_statistics(scores, {"train": ["a"], "held_out": ["b", "c"]}, "ppo", reps=300)
    assert stats["train"]["tasks"] == ["a"] and stats["held_out"]["tasks"] == ["b"]
    assert stats["held_out"]["dropped"] == ["c"]  # a task with a non-finite seed leaves the aggregate, visibly
    assert stats["train"]["aggregate"]["lpo"]["iqm"] > stats["train"]["aggregate"]["ppo"]["iqm"]
    assert set(stats["train"]["improvement"]) == {"lpo"}


# ---- shipped drifts --------------------------------------------------------------------------


def test_drifts_command_lists_every_family_and_shipped_drift(capsys):
    assert main(["drifts"]) == 0
    out = capsys.readouterr().out
    for name in drift_functions.registered():
        assert f"\n  {name} " in out
    for stem in drift_lookup.discovered():
        assert f"\n  {stem} " in out


def test_a_shipped_drift_resolves_by_its_stem(tmp_path, monkeypatch):
    drift = drift_functions.make("dpo")
    params = {"alpha": np.float32(1.5), "beta": np.float32(0.4)}
    save_artifact(tmp_path / "my_discovery.npz", drift, params, {"envs": ["CartPole-v1"], "generation": 7})
    monkeypatch.setattr(drift_lookup, "DISCOVERED_DIR", tmp_path)
    resolved = drift_lookup.resolve_drift("my_discovery")
    assert resolved.label == "my_discovery" and resolved.drift.name == "dpo"
    assert float(resolved.params["alpha"]) == 1.5
    with pytest.raises(UserError, match="shipped discovered drifts: my_discovery"):
        drift_lookup.resolve_drift("my_discovry")


def test_artifacts_with_non_finite_weights_are_refused(tmp_path):
    drift = drift_functions.make("lpo")
    params = jax.tree.map(lambda x: np.full_like(np.asarray(x), np.nan), drift.init(jax.random.PRNGKey(0)))
    save_artifact(tmp_path / "diverged.npz", drift, params)
    with pytest.raises(UserError, match="non-finite parameters"):
        drift_lookup.resolve_drift(str(tmp_path / "diverged.npz"))


def test_two_runs_artifacts_get_distinct_labels(tmp_path):
    from discovery.workflows.evaluate.grid import unique_labels

    drift = drift_functions.make("dpo")
    for run in ("runA", "runB"):
        (tmp_path / run).mkdir()
        save_artifact(tmp_path / run / "drift.npz", drift, drift.init(jax.random.PRNGKey(0)))
    resolved = unique_labels(
        [drift_lookup.resolve_drift(str(tmp_path / run / "drift.npz")) for run in ("runA", "runB")]
    )
    assert [r.label for r in resolved] == ["runA/drift", "runB/drift"]


def test_transfer_suite_trains_on_lpo_general_mix_and_holds_out_other_envs_and_settings():
    """Its training tasks are lpo_general's validation settings (each epoch count at the middle learning rate, to
    the 2 digits the suite writes); every held-out task is another env, or a setting the mix never draws."""
    from discovery.workflows.meta_training import load_meta_config, validation_points

    config = load_meta_config("configs/meta/lpo_general.yaml", {})
    points = [spec for _, _, spec in validation_points(config)]
    suite = load_suite("transfer")
    train = [task.spec() for task in suite.by_role("train")]
    assert [(s.env, s.ppo.update_epochs, s.ppo.total_timesteps) for s in train] == [
        (s.env, s.ppo.update_epochs, s.ppo.total_timesteps) for s in points
    ]
    for ours, theirs in zip(train, points):
        assert ours.ppo.learning_rate == pytest.approx(theirs.ppo.learning_rate, rel=0.01)
    mix = {task.env: task for task in config.tasks}
    families = set()
    for task in suite.by_role("held_out"):
        spec = task.spec()
        families.add(spec.make_env().family)
        if spec.env in mix:  # a training env: only at a setting the mix never draws
            drawn = mix[spec.env].sampled["update_epochs"].values
            fixed = mix[spec.env].overrides
            assert spec.ppo.update_epochs not in drawn or spec.ppo.total_timesteps != fixed["total_timesteps"]
    assert {"classic_control", "bsuite", "minatar", "brax"} <= families
