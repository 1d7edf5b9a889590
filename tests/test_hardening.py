"""Defects found by trying the product as a new user would; each test reproduces one."""

import os
import stat

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
from envs.adapters import BRAX_ONLY_BACKENDS, GymnaxEnvironment, default_backend
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
    with pytest.raises(ValueError, match="epsilon .* must be a finite number > 0"):
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
