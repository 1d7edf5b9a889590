"""Defects found by trying the product as a new user would; each test reproduces one."""

import os
import stat
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drift_functions
import envs
from discovery import configs
from discovery.cli import main
from discovery.errors import UserError
from discovery.outputs import atomic_write_text
from envs.adapters import GymnaxEnvironment, default_backend
from envs.base import Box
from rl_algos.ppo import PPOConfig
from rl_algos.ppo.policy import Policy


def test_swimmer_gets_the_only_backend_it_supports():
    assert default_backend("swimmer") == "generalized" and default_backend("hopper") == "positional"
    assert envs.make("swimmer").backend == "generalized"
    with pytest.raises(ValueError, match="swimmer supports only the generalized backend, not 'positional'"):
        envs.make("swimmer", backend="positional")


def test_brax_family_default_config_leaves_the_backend_to_the_env():
    spec, fallback = configs.load_train_spec("swimmer", {"total_timesteps": 2_000_000_000})
    assert fallback and "backend" not in spec.env_options
    assert spec.make_env().backend == "generalized"


class _FakeSpace:
    def __init__(self, low, high):
        self.low, self.high, self.shape = np.asarray(low), np.asarray(high), np.asarray(low).shape


def test_gymnax_per_dimension_action_bounds_are_kept(monkeypatch):
    import gymnax

    class FakeEnv:
        is_truncated = gymnax.environments.environment.Environment.is_truncated

        def action_space(self, params):
            return _FakeSpace([-1.0, 0.0], [1.0, 5.0])

        def observation_space(self, params):
            return _FakeSpace(np.zeros(3), np.ones(3))

    monkeypatch.setattr(gymnax, "make", lambda name, **kw: (FakeEnv(), None))
    env = GymnaxEnvironment("Fake-misc")
    assert env.action_space == Box((-1.0, 0.0), (1.0, 5.0), (2,))
    # The policy's squashed actions respect each dimension's own range.
    policy = Policy(PPOConfig(continuous_distribution="tanh_gaussian"), env)
    params = policy.init(jax.random.PRNGKey(0))
    _, actions, _ = policy.sample(params, jnp.zeros((512, 3)), jax.random.PRNGKey(1))
    assert actions.shape == (512, 2)
    assert np.all(actions[:, 0] >= -1) and np.all(actions[:, 0] <= 1)
    assert np.all(actions[:, 1] >= 0) and np.all(actions[:, 1] <= 5) and actions[:, 1].max() > 1.5


def test_same_bounds_stay_scalar():
    assert envs.make("Pendulum-v1").action_space == Box(-2.0, 2.0, (1,))


@pytest.mark.parametrize("epsilon", [0.0, -1.0, float("inf"), float("nan"), "abc"])
@pytest.mark.parametrize("family", ["lpo", "ta_lpo"])
def test_learned_drifts_refuse_a_bad_epsilon(family, epsilon):
    with pytest.raises(ValueError, match="epsilon .*must be a finite number"):
        drift_functions.make(family, ppo_init=True, epsilon=epsilon)


def test_a_train_yaml_for_another_env_is_refused(tmp_path):
    path = tmp_path / "hopper.yaml"
    path.write_text("env: hopper\nppo: {total_timesteps: 1000}\n")
    with pytest.raises(UserError, match="is the config of 'hopper', not 'CartPole-v1'"):
        configs.load_train_spec("CartPole-v1", {}, config_path=str(path))


def test_output_files_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "results.md", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_plot_drift_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "drift.png"
    out.write_bytes(b"keep me")
    assert main(["plot-drift", "--drift", "dpo", "--out", str(out)]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"


def test_meta_config_keeps_empty_drift_options():
    from discovery.meta_training import meta_config_from_dict

    config = meta_config_from_dict({"drift": "lpo", "drift_options": {}}, {})
    assert config.drift_options == {}
    assert meta_config_from_dict({"drift": "lpo"}, {}).drift_options == {"ppo_init": True}
    assert meta_config_from_dict({"drift": "dpo"}, {}).drift_options == {}


# ---- 1. non-finite inputs and artifacts --------------------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--learning-rate", "inf"], "bad value for learning_rate: 'inf' is not finite"),
        (["train", "--ent-coef", "nan"], "bad value for ent_coef: 'nan' is not finite"),
        (["train", "--total-timesteps", "inf"], "bad value for total_timesteps: 'inf' is not a valid int"),
        (["train", "--drift", "dpo:alpha=inf"], "alpha must be a finite number"),
        (["meta-train", "--config", "configs/meta/cartpole_demo.yaml", "--ppo.learning-rate", "inf"], "ppo.learning_rate: 'inf' is not finite"),
        (["meta-train", "--config", "configs/meta/cartpole_demo.yaml", "--es.sigma", "-inf"], "es.sigma: '-inf' is not finite"),
        (["sweep", "--grid", "learning_rate=inf,1e-3"], "grid value 'inf' for learning_rate is not finite"),
        (["sweep", "--drift", "dpo", "--grid", "alpha=1,nan"], "grid value 'nan' for alpha is not finite"),
    ],
)
def test_non_finite_numbers_are_refused(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()  # refused before anything was written


def test_non_finite_yaml_values_are_refused(tmp_path):
    path = tmp_path / "cp.yaml"
    path.write_text("ppo: {learning_rate: .inf}\n")
    with pytest.raises(UserError, match="learning_rate: inf is not finite"):
        configs.load_train_spec("CartPole-v1", {}, config_path=str(path))


def test_a_drift_artifact_with_non_finite_weights_is_refused(tmp_path, capsys):
    from discovery import artifacts

    drift = drift_functions.make("lpo", ppo_init=True, hidden_size=4)
    params = drift.init(jax.random.PRNGKey(0))
    params = {**params, "w_out": np.full(np.shape(params["w_out"]), np.inf, np.float32)}
    path = artifacts.save_artifact(tmp_path / "diverged.npz", drift, params)
    with pytest.raises(artifacts.ArtifactError, match=r"non-finite parameters \(w_out\)"):
        artifacts.load_artifact(path)
    assert main(["train", "--drift", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "non-finite parameters" in capsys.readouterr().err


def _toy_strategy():
    import meta

    template = {"w": jnp.zeros((3,), jnp.float32)}
    strategy = meta.make_strategy(meta.ESConfig(population_size=4, learning_rate=0.1, sigma=0.1), template)
    return strategy, strategy.init(jax.random.key(0), template)


def test_an_all_failed_generation_changes_nothing_through_run_generation():
    import meta

    strategy, state = _toy_strategy()
    good = lambda key, member: -jnp.sum((member["w"] - 1.0) ** 2)  # noqa: E731
    state, _ = meta.run_generation(strategy, state, jax.random.key(1), good)  # a finite best to keep
    before = meta.state_to_arrays(state)
    best_before = strategy.best(state)
    state, stats = meta.run_generation(strategy, state, jax.random.key(2), lambda key, member: jnp.nan)
    assert int(stats.num_nonfinite) == 4
    after = meta.state_to_arrays(state)
    assert set(after) == set(before)
    for name in before:  # the mean, σ, Adam's moments, the generation counter behind the schedules, the best
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    np.testing.assert_array_equal(strategy.best(state)[0]["w"], best_before[0]["w"])
    assert float(stats.best_fitness) == float(best_before[1]) and np.isfinite(float(stats.best_fitness))
    # and the run goes on from there: the next finite generation moves the mean again
    moved, _ = meta.run_generation(strategy, state, jax.random.key(3), good)
    assert not np.array_equal(np.asarray(strategy.mean(moved)["w"]), np.asarray(strategy.mean(state)["w"]))


def test_a_partly_failed_generation_still_learns_and_never_makes_a_failed_member_best():
    import meta

    strategy, state = _toy_strategy()
    flaky = lambda key, member: jnp.where(member["w"][0] > 0, jnp.inf, -jnp.sum((member["w"] - 1.0) ** 2))  # noqa: E731
    start = np.asarray(strategy.mean(state)["w"]).copy()
    state, stats = meta.run_generation(strategy, state, jax.random.key(1), flaky)
    assert 0 < int(stats.num_nonfinite) < 4
    assert not np.array_equal(np.asarray(strategy.mean(state)["w"]), start)
    best, value = strategy.best(state)
    assert np.asarray(best["w"])[0] <= 0 and np.isfinite(float(value))


# ---- 5. drift option errors name the option, its type and the valid options --------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("dpo:alpha=abc", "bad option for drift 'dpo': alpha must be a finite number (float), got 'abc'; valid options: alpha (float), beta (float)"),
        ("dpo:gamma=1", "bad option for drift 'dpo': unknown option gamma; valid options: alpha (float), beta (float)"),
        ("lpo:ppo_init=yes", "ppo_init must be true or false (bool), got 'yes'; valid options: hidden_size (int), ppo_init (bool), epsilon (float)"),
        ("lpo:hidden_size=2.5", "hidden_size must be an integer (int), got 2.5"),
    ],
)
def test_drift_option_errors_are_readable(tmp_path, capsys, text, message):
    assert main(["train", "--drift", text, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert "'>' not supported" not in err and "unexpected keyword" not in err


def test_a_garbage_npz_is_named_as_not_a_drift_artifact(tmp_path, capsys):
    path = tmp_path / "garbage.npz"
    path.write_text("garbage\n")
    assert main(["train", "--drift", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "allow_pickle" not in err
    assert f"{path} is not a .npz archive" in err
    assert "discovery meta-train" in err and "a drift is a name: dpo, dpo_poly, lpo, ppo_clip, ta_lpo" in err


# ---- 2. two learned drifts side by side ------------------------------------------------


def _two_runs(tmp_path):
    from discovery import artifacts

    drift = drift_functions.make("lpo", ppo_init=True, hidden_size=4)
    paths = []
    for run in ("runA", "runB"):  # both carry the metadata label "lpo-mean", as meta-train writes it
        paths.append(artifacts.save_artifact(tmp_path / run / "drift.npz", drift, drift.init(jax.random.PRNGKey(0)), {"label": "lpo-mean"}))
    return paths


def test_two_runs_drift_npz_get_path_labels(tmp_path):
    from discovery.drifts import resolve_drift
    from discovery.evaluate.grid import unique_labels

    a, b = _two_runs(tmp_path)
    labels = [r.label for r in unique_labels([resolve_drift(str(a)), resolve_drift(str(b))])]
    assert labels == ["runA/drift", "runB/drift"]  # not "lpo-mean" twice, the label inside both artifacts


def test_path_equals_label_names_an_artifact(tmp_path):
    from discovery.drifts import resolve_drift, split_drift_list
    from discovery.evaluate.grid import unique_labels

    a, b = _two_runs(tmp_path)
    texts = split_drift_list(f"ppo,dpo:alpha=1.5,beta=0.5,{a}=mine,{b}=theirs")
    assert texts == ["ppo", "dpo:alpha=1.5,beta=0.5", f"{a}=mine", f"{b}=theirs"]
    resolved = unique_labels([resolve_drift(t) for t in texts])
    assert [r.label for r in resolved] == ["ppo", "dpo:alpha=1.5,beta=0.5", "mine", "theirs"]
    assert resolved[2].drift.name == "lpo" and resolved[2].source == f"{a}=mine"
    with pytest.raises(UserError, match="appear twice"):
        unique_labels([resolve_drift(f"{a}=same"), resolve_drift(f"{b}=same")])
    with pytest.raises(UserError, match="bad label"):
        resolve_drift(f"{a}=")


# ---- 3. one line and exit 2 instead of tracebacks ----------------------------------------


@pytest.mark.parametrize("where", ["/proc/discovery-test/out", "FILE/sub"])
def test_an_unwritable_out_is_one_line(tmp_path, capsys, where):
    (tmp_path / "file").write_text("x")
    out = where.replace("FILE", str(tmp_path / "file"))
    assert main(["train", "--total-timesteps", "4096", "--out", out]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"cannot write to --out {out}" in err and "choose another --out" in err
    assert "is a file, not a directory" in err if "FILE" in where else "no directory can be created under /proc" in err


@pytest.fixture
def no_wandb_login(tmp_path, monkeypatch):
    from discovery import wandb_logging

    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setattr(wandb_logging, "_checked", set())
    return wandb_logging


def test_wandb_online_without_an_api_key_is_one_line(tmp_path, capsys, no_wandb_login):
    out = tmp_path / "out"
    assert main(["train", "--total-timesteps", "4096", "--wandb", "online", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs a W&B API key" in err and "--wandb offline" in err and "wandb sync" in err
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
    with pytest.raises(UserError, match=r"could not start a run: Run initialization has timed out after 30.0 sec.; or run with --wandb offline"):
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


def test_a_truncated_evaluate_cell_is_one_line(tmp_path):
    import types

    from discovery.evaluate.grid import CELL_DIR, _load_cell
    from discovery.outputs import DamagedFileError, read_npz, write_npz

    cells = tmp_path / CELL_DIR
    path = write_npz(cells / "CartPole-v1__ppo.npz", {"final_returns": np.ones(4), "env_steps": np.arange(3)}, compressed=True)
    (cells / "CartPole-v1__ppo.json").write_text("{}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DamagedFileError, match="is not a .npz archive"):
        read_npz(path)
    cell = types.SimpleNamespace(name="CartPole-v1__ppo")
    with pytest.raises(UserError, match=r"unreadable cell .*CartPole-v1__ppo.\{json,npz\} \(.*not a .npz archive.*\); delete both files"):
        _load_cell(cell, tmp_path, {}, overwrite=False)
    assert _load_cell(cell, tmp_path, {}, overwrite=True) is None  # --overwrite recomputes it


# ---- 6. small inconsistencies ------------------------------------------------------------


def _demo_run_dir(tmp_path, generations_done=None):
    import yaml

    from discovery import meta_training as mt

    out = tmp_path / "run"
    out.mkdir()
    config = mt.load_meta_config("configs/meta/cartpole_demo.yaml", {"generations": 6})
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    if generations_done is not None:
        run = mt.build_run(config, None)
        mt.save_checkpoint(out, mt.Checkpoint(generations_done, mt.initial_state(run), None, config.to_dict()))
    return out


def test_resume_with_another_out_is_refused(tmp_path, capsys):
    out = _demo_run_dir(tmp_path)
    assert main(["meta-train", "--resume", str(out), "--out", str(tmp_path / "elsewhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err and "would be ignored" in err and not (tmp_path / "elsewhere").exists()


def test_resume_with_fewer_generations_than_done_keeps_config_yaml(tmp_path, capsys):
    import yaml

    out = _demo_run_dir(tmp_path, generations_done=6)
    before = (out / "config.yaml").read_text()
    assert main(["meta-train", "--resume", str(out), "--generations", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "already has 6 generations" in err and "--generations 7 or more" in err
    assert (out / "config.yaml").read_text() == before and yaml.safe_load(before)["generations"] == 6


def test_meta_config_yaml_keeps_override_types():
    import yaml

    from discovery import meta_training as mt

    config = mt.load_meta_config("configs/meta/cartpole_demo.yaml", {"total_timesteps": "4096", "es.sigma": "0.1", "seeds": "3"})
    stored = yaml.safe_load(yaml.safe_dump(config.to_dict(), sort_keys=False))
    assert stored["tasks"][0]["overrides"]["total_timesteps"] == 4096 and stored["es"]["sigma"] == 0.1 and stored["seeds"] == 3
    assert mt.meta_config_from_dict(stored, {}).identity() == config.identity()


def _help(command, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_lists_every_registered_drift_and_no_internal_notes(capsys):
    for command in ("train", "meta-train"):
        text = _help(command, capsys)
        assert all(name in text for name in drift_functions.registered()), command
    bench = _help("bench", capsys)
    assert "lent" not in bench and "session" not in bench and "not yet measured" not in bench


def test_sigterm_during_evaluate_says_how_to_continue(tmp_path, capsys, monkeypatch):
    import signal

    from discovery.commands import evaluate

    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(evaluate, "run_evaluation", killed)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["evaluate", "--total-timesteps", "4096", "--out", str(tmp_path / "ev")]) == 130
    err = capsys.readouterr().err
    assert f"rerun the same command with --out {tmp_path / 'ev'} to continue" in err.replace("\n", "")
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the command's only


def test_ctrl_c_during_meta_train_says_resume_continues(tmp_path, capsys, monkeypatch):
    from discovery.commands import meta_train

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(meta_train, "reference_returns", lambda specs, seeds, seed: np.array([[20.0, 200.0]] * len(specs)))
    monkeypatch.setattr(meta_train.mt, "run_generations", interrupted)
    out = tmp_path / "m"
    assert main(["meta-train", "--config", "configs/meta/cartpole_demo.yaml", "--out", str(out)]) == 130
    err = capsys.readouterr().err.replace("\n", "")
    assert f"discovery meta-train --resume {out}` continues this run" in err


# ---- 7. bootstrap values are never silently dropped --------------------------------------


def _unroll(done, time_limit):
    from rl_algos.ppo.train import Transition, unroll_values

    env = envs.make("CartPole-v1")
    policy = Policy(PPOConfig(), env)
    params = policy.init(jax.random.PRNGKey(0))
    steps, num_envs = done.shape
    obs = jax.random.normal(jax.random.PRNGKey(1), (steps, num_envs, 4))
    # s'_t = s_{t+1} unless the episode ended at t; then the true last observation (random here)
    ended_obs = jax.random.normal(jax.random.PRNGKey(2), (steps, num_envs, 4))
    next_obs = jnp.concatenate([obs[1:], ended_obs[-1:]])
    final_obs = jnp.where(done[..., None], ended_obs, next_obs)
    traj = Transition(obs=obs, action=None, log_prob=None, reward=None, terminated=jnp.zeros_like(done), done=done,
                      final_obs=final_obs, episode_return=None, episode_length=None)
    rows = -(-(steps - 1) // time_limit)
    _, bounded = unroll_values(policy, params, obs, traj, lambda x: x, rows)
    _, exact = unroll_values(policy, params, obs, traj, lambda x: x, None)
    return np.asarray(bounded), np.asarray(exact)


def test_an_env_truncating_within_its_time_limit_gets_every_bootstrap():
    done = jnp.zeros((16, 3), bool).at[7].set(True).at[15].set(True)  # every 8 steps, as declared
    bounded, exact = _unroll(done, time_limit=8)
    np.testing.assert_allclose(bounded, exact, rtol=1e-5, atol=1e-6)  # nothing terminated: every next value is read


def test_an_env_truncating_more_often_than_declared_is_not_silently_wrong():
    done = jnp.ones((16, 3), bool)  # truncates every step, while it declares a time limit of 8
    bounded, exact = _unroll(done, time_limit=8)
    assert np.all(np.isfinite(exact))
    assert np.all(np.isnan(bounded))  # the run's losses turn NaN and it is reported, never a wrong bootstrap


def test_train_names_diverged_seeds():
    from discovery.commands.train import diverged_seeds

    loss = np.zeros((3, 5))
    loss[1, 3:] = np.nan
    assert diverged_seeds({"policy_loss": loss, "value_loss": np.zeros((3, 5))}) == [1]
    assert diverged_seeds({"policy_loss": np.zeros((3, 5)), "value_loss": np.zeros((3, 5))}) == []


# ---- 8. plots a person can read ----------------------------------------------------------


@pytest.fixture
def captured_figures(monkeypatch):
    from discovery import plots
    from discovery.evaluate import plots as evaluate_plots

    figures = []

    def keep(fig, path):
        figures.append(fig)
        return Path(path)

    monkeypatch.setattr(plots, "save_figure", keep)
    monkeypatch.setattr(evaluate_plots, "save_figure", keep)
    return figures


def test_learning_curve_bands_stay_within_the_seeds_and_say_what_they_are(tmp_path, captured_figures):
    from discovery.plots import BAND_CAPTION, bootstrap_band, plot_learning_curves

    rng = np.random.default_rng(0)
    curves = np.clip(rng.normal(250, 200, (2, 50)), 9, 500)  # 2 seeds, as far apart as CartPole's get
    curves[:, :2] = np.nan
    mean, low, high = bootstrap_band(curves)
    assert np.all(np.isnan(mean[:2])) and np.all(np.isfinite(mean[2:]))
    ok = np.isfinite(mean)
    seen_low, seen_high = np.full(50, np.nan), np.full(50, np.nan)
    seen_low[ok], seen_high[ok] = curves[:, ok].min(axis=0), curves[:, ok].max(axis=0)
    assert np.all(low[ok] >= seen_low[ok] - 1e-9) and np.all(high[ok] <= seen_high[ok] + 1e-9)
    assert np.all(low[ok] <= mean[ok] + 1e-9) and np.all(mean[ok] <= high[ok] + 1e-9)
    plot_learning_curves({"ppo": curves}, np.arange(1, 51) * 512, tmp_path / "c.png", title="t")
    (fig,) = captured_figures
    ax = fig.axes[0]
    assert ax.get_ylim()[0] > -100 and ax.get_ylim()[1] < 600  # the t-band ran from -1000 to 1500 here
    assert BAND_CAPTION in [t.get_text() for t in fig.texts] and "bootstrap" in BAND_CAPTION


def test_normalized_scores_iqm_is_drawn_thicker_than_the_mean(tmp_path, captured_figures):
    from discovery.evaluate.plots import plot_normalized_scores

    rows = [{"task": "CartPole-v1", "drift": d, "normalized_iqm": 1.0, "normalized_iqm_ci_low": 0.8, "normalized_iqm_ci_high": 1.2}
            for d in ("ppo", "dpo")]
    stats = {"iqm": 1.0, "iqm_ci_low": 0.9, "iqm_ci_high": 1.1, "mean": 1.05, "mean_ci_low": 0.8, "mean_ci_high": 1.3}
    plot_normalized_scores(rows, {"all": {"tasks": ["CartPole-v1"], "aggregate": {"ppo": stats, "dpo": stats}}}, "ppo", tmp_path / "n.png")
    right = captured_figures[0].axes[1]
    def spans(line, dx, dy):
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        return len(x) == 2 and np.isclose(x[1] - x[0], dx) and np.isclose(y[1] - y[0], dy)

    iqm = [line for line in right.lines if spans(line, 0.0, 0.7)]  # the IQM tick: vertical, at the point
    mean = [line for line in right.lines if spans(line, 0.5, 0.0)]  # the mean's CI: horizontal, 0.8 .. 1.3
    assert iqm and mean and min(line.get_linewidth() for line in iqm) >= 2.5 * max(line.get_linewidth() for line in mean)
    assert "IQM (thick)" in right.get_title() and right.get_legend() is not None


def _fitness_rows(validate):
    rows = []
    for g in range(6):
        row = {"generation": g, "fitness_mean": 1 + 0.02 * g, "fitness_min": 0.8, "fitness_max": 1.4, "best_fitness": 1.4 + 0.01 * g}
        if validate and g % 2 == 1:
            row["validation"] = {"score": 1.05 + 0.01 * g}
        rows.append(row)
    return rows


def test_fitness_plot_shows_what_the_es_mean_scores(tmp_path, captured_figures):
    from discovery.plots import plot_fitness_curve

    plot_fitness_curve(_fitness_rows(True), tmp_path / "f.png", title="t", normalized=True)
    (fig,) = captured_figures
    assert len(fig.axes) == 1  # one scale: fitness and validation are both random = 0, PPO = 1
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    es = lines["ES mean (drift.npz) on fresh seeds"]
    assert list(es.get_xdata()) == [2, 4, 6] and es.get_linewidth() > max(l.get_linewidth() for k, l in lines.items() if l is not es)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[0] == "ES mean (drift.npz) on fresh seeds" and "best single member so far (optimistic)" in legend
    plot_fitness_curve(_fitness_rows(False), tmp_path / "g.png", title="t")
    assert any("not scored in this run" in t.get_text() for t in captured_figures[1].texts)


# ---- 9. progress with elapsed time, ETA and steps/s ----------------------------------------


def test_eta_text():
    from discovery.progress import clock, eta_text

    assert clock(3725.4) == "1:02:05"
    assert eta_text(1, 4, 30.0) == "elapsed 0:00:30, eta 0:01:30"
    assert eta_text(0, 4, 3.0) == "elapsed 0:00:03, eta ?"


def test_training_progress_log_lines_carry_rate_elapsed_and_eta(capsys):
    from discovery.progress import TrainingProgress

    with TrainingProgress("CartPole-v1 · ppo", total_updates=10, steps_per_update=1000) as tracker:
        tracker.start()
        tracker.callback(np.array([10, 10]))
    err = capsys.readouterr().err
    assert "update 10/10" in err and "env-steps/s" in err and "elapsed 0:00:00, eta 0:00:00" in err
    columns = [type(c).__name__ for c in tracker.progress.columns]
    assert "TimeElapsedColumn" in columns and "TimeRemainingColumn" in columns


def test_a_diverging_es_mean_stops_the_run_before_anything_non_finite_is_written(tmp_path, monkeypatch):
    """The ES step itself blows up (a huge but finite learning rate): one line, and nothing non-finite is written."""
    import meta
    from discovery import meta_training as mt

    config = mt.meta_config_from_dict({
        "drift": "dpo", "generations": 2, "seeds": 1, "checkpoint_every": 1,
        "tasks": [{"env": "CartPole-v1", "overrides": {"total_timesteps": 256, "num_envs": 4, "num_steps": 32,
                                                       "num_minibatches": 2, "update_epochs": 1}}],
        "es": {"population_size": 4, "sigma": 0.1}}, {})
    run = mt.build_run(config, None)
    state = mt.initial_state(run)
    real = meta.run_generation

    def diverging(strategy, state, key, fitness_fn, **kw):
        new_state, stats = real(strategy, state, key, fitness_fn, **kw)
        return jax.tree.map(lambda x: x * np.nan if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x, new_state), stats

    monkeypatch.setattr(meta, "run_generation", diverging)
    out = tmp_path / "m"
    out.mkdir()
    with pytest.raises(UserError, match="the ES mean became non-finite in generation 1"):
        mt.run_generations(run, state, 0, 2, out)
    assert not list(out.rglob("*.npz")) and not (out / "metrics.jsonl").exists()

    # A checkpoint that holds a non-finite mean (written by an older version) is refused on --resume.
    mt.save_checkpoint(out, mt.Checkpoint(1, jax.tree.map(lambda x: x * np.nan if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x, state),
                                          None, config.to_dict()))
    with pytest.raises(UserError, match="holds a non-finite ES mean"):
        mt.load_checkpoint(mt.latest_checkpoint_file(out), run.strategy)
