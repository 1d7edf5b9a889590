"""Tests of discovery/io/configs."""

import pytest

from discovery.io import configs
from discovery.runtime.errors import UserError


def test_brax_family_default_config_leaves_the_backend_to_the_env():
    spec, fallback = configs.load_train_spec("swimmer", {"total_timesteps": 2_000_000_000})
    assert fallback and "backend" not in spec.env_options
    assert spec.make_env().backend == "generalized"


def test_a_train_yaml_for_another_env_is_refused(tmp_path):
    path = tmp_path / "hopper.yaml"
    path.write_text("env: hopper\nppo: {total_timesteps: 1000}\n")
    with pytest.raises(UserError, match="is the config of 'hopper', not 'CartPole-v1'"):
        configs.load_train_spec("CartPole-v1", {}, config_path=str(path))


def test_non_finite_yaml_values_are_refused(tmp_path):
    path = tmp_path / "cp.yaml"
    path.write_text("ppo: {learning_rate: .inf}\n")
    with pytest.raises(UserError, match="learning_rate: inf is not finite"):
        configs.load_train_spec("CartPole-v1", {}, config_path=str(path))
