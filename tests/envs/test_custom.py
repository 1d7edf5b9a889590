"""Your own environment: --env module:factory / path/to/file.py:factory in train, evaluate, sweep and meta-train.

The Brax example (examples/point_mass.py) is compiled once, through `discovery train` as the README
runs it; the other commands run on a user's gymnax env (CartPole by a factory), which compiles fast.
"""

import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

import envs
from discovery.cli import main
from discovery.io import configs

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = "examples/point_mass.py"  # relative to the repository root, as the README writes it
GYMNAX_MODULE = '''
import gymnax

ENV, PARAMS = gymnax.make("CartPole-v1")


def make():
    """A user's gymnax task: (env, params), as gymnax.make returns them."""
    return gymnax.make("CartPole-v1")


class NotAnEnv:
    pass
'''
SIZING = {
    "total_timesteps",
    "num_envs",
    "num_steps",
    "rollouts_per_update",
    "num_minibatches",
}  # all a cpu profile changes
TINY = [
    "--total-timesteps",
    "1024",
    "--num-envs",
    "4",
    "--num-steps",
    "32",
    "--num-minibatches",
    "2",
    "--update-epochs",
    "1",
]


@pytest.fixture()
def in_repo(monkeypatch):
    monkeypatch.chdir(REPO)


@pytest.fixture()
def gymnax_file(tmp_path):
    path = tmp_path / "my_tasks.py"
    path.write_text(GYMNAX_MODULE)
    return path


def _one_line_error(capsys, code):
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "command", [["train"], ["evaluate", "--drifts", "ppo"], ["sweep", "--grid", "learning_rate=1e-3,2e-3"]]
)
@pytest.mark.parametrize(
    "spec, message",
    [
        ("no/such/file.py:make", r"no such file: no/such/file\.py"),
        (
            f"{EXAMPLE}:nope",
            r"has no attribute 'nope' and no Brax environment 'nope' is registered; it defines PointMass, make",
        ),
        (f"{EXAMPLE}:ARENA", r"examples/point_mass\.py:ARENA is a float, not a Brax Env"),
        ("no_such_module_xyz:make", r"no module named 'no_such_module_xyz'"),
        (f"{EXAMPLE}:", r"write module:attribute or path/to/file\.py:attribute"),
    ],
)
def test_a_wrong_path_attribute_or_type_is_one_line_and_exit_2(command, spec, message, capsys, tmp_path, in_repo):
    env_flag = "--envs" if command[0] == "evaluate" else "--env"
    code = main([*command, env_flag, spec, "--out", str(tmp_path / "out")])
    assert re.search(message, _one_line_error(capsys, code))
    assert not (tmp_path / "out").exists()


def test_wrong_types_from_a_factory_or_a_class(capsys, tmp_path, gymnax_file):
    assert re.search(
        r"my_tasks\.py:NotAnEnv is the class NotAnEnv, not a Brax Env",
        _one_line_error(capsys, main(["train", "--env", f"{gymnax_file}:NotAnEnv", "--out", str(tmp_path / "o")])),
    )
    bad = tmp_path / "bad.py"
    bad.write_text("def make():\n    return 42\n\ndef broken():\n    raise RuntimeError('no assets')\n\nsyntax = \n")
    assert re.search(
        r"importing .*bad\.py failed: SyntaxError",
        _one_line_error(capsys, main(["train", "--env", f"{bad}:make", "--out", str(tmp_path / "o")])),
    )
    bad.write_text("def make():\n    return 42\n\ndef broken():\n    raise RuntimeError('no assets')\n")
    assert re.search(
        r"bad\.py:make returned an int, not a Brax Env",
        _one_line_error(capsys, main(["train", "--env", f"{bad}:make", "--out", str(tmp_path / "o")])),
    )
    assert re.search(
        r"building .*bad\.py:broken failed: RuntimeError: no assets",
        _one_line_error(capsys, main(["train", "--env", f"{bad}:broken", "--out", str(tmp_path / "o")])),
    )
    assert re.search(
        r"only apply to Brax environments",  # a gymnax env takes no Brax options
        _one_line_error(
            capsys,
            main(["train", "--env", f"{gymnax_file}:make", "--episode-length", "9", "--out", str(tmp_path / "o")]),
        ),
    )


def test_the_example_is_a_brax_env_that_steps_and_truncates(in_repo):
    env = envs.make(f"{EXAMPLE}:make", episode_length=5)
    assert env.family == "brax" and env.backend == "positional" and envs.family_of(f"{EXAMPLE}:make") == "brax"
    assert env.observation_shape == (6,) and env.action_space.shape == (2,)
    obs, state = env.reset(jax.random.PRNGKey(0))
    step = jax.jit(env.step)
    flags = []
    for t in range(5):
        obs, state, reward, terminated, truncated, info = step(jax.random.PRNGKey(t), state, jnp.ones(2))
        flags.append((bool(terminated), bool(truncated)))
        # reward = −|goal − position|, and the last two observations are goal − position
        np.testing.assert_allclose(float(reward), -float(jnp.linalg.norm(info["final_observation"][4:])), rtol=1e-5)
    assert flags == [(False, False)] * 4 + [(False, True)]
    assert float(info["episode_length"]) == 5 and np.all(np.isfinite(np.asarray(obs)))


def test_a_name_registered_with_brax_resolves(in_repo):
    env = envs.make(f"{EXAMPLE}:point_mass", backend="generalized")  # importing the file registered `point_mass`
    assert env.backend == "generalized" and env.observation_shape == (6,)
    envs.check("point_mass")  # now registered in this process, by name as well
    assert envs.family_of("point_mass") == "brax"


def test_family_defaults_and_profiles(in_repo, gymnax_file):
    spec, fallback = configs.load_train_spec(f"{EXAMPLE}:make")
    assert fallback and spec.source == "configs/train/defaults/brax.yaml"
    assert spec.profile == "cpu" and spec.ppo.num_envs == 32  # the tests run on the CPU
    published, _ = configs.load_train_spec(f"{EXAMPLE}:make", {"profile": "accelerator"})
    assert published.profile == "accelerator" and published.ppo.num_envs == 2048
    assert {k: v for k, v in vars(published.ppo).items() if k not in SIZING} == {
        k: v for k, v in vars(spec.ppo).items() if k not in SIZING
    }
    gymnax_spec, fallback = configs.load_train_spec(f"{gymnax_file}:make")
    assert fallback and gymnax_spec.source == "configs/train/defaults/gymnax.yaml" and gymnax_spec.profile is None
    assert gymnax_spec.to_dict().keys() == {"env", "env_options", "ppo", "source"}
    instance, _ = configs.load_train_spec(f"{gymnax_file}:ENV")
    assert instance.make_env().family == "gymnax" and instance.make_env().time_limit is None


# Compiles a whole Brax learner: `make test-all` (a minute on 2 cores).
@pytest.mark.slow
def test_train_the_brax_example_from_the_readme(tmp_path, in_repo, capsys):
    out = tmp_path / "pm"
    code = main(
        [
            "train",
            "--env",
            f"{EXAMPLE}:make",
            "--episode-length",
            "32",
            "--total-timesteps",
            "1024",
            "--seeds",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert "profile cpu of configs/train/defaults/brax.yaml: 32 envs × 16 steps" in captured.out + captured.err
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["train"]["profile"] == "cpu" and results["config"]["train"]["env"] == f"{EXAMPLE}:make"
    assert results["config"]["train"]["ppo"]["num_envs"] == 32
    assert all(np.isfinite(results["summary"]["final_return_per_seed"]))
    assert all(r < 0 for r in results["summary"]["final_return_per_seed"])  # minus a distance, every step


@pytest.mark.slow  # ~35 s; the README's Brax example stays in the default run
def test_a_users_gymnax_env_in_train_evaluate_sweep_and_meta_train(tmp_path, gymnax_file):
    env = f"{gymnax_file}:make"
    assert main(["train", "--env", env, "--seeds", "2", "--out", str(tmp_path / "t"), *TINY]) == 0
    train = json.loads((tmp_path / "t" / "results.json").read_text())
    assert train["config"]["train"]["source"] == "configs/train/defaults/gymnax.yaml"
    assert (
        main(
            [
                "evaluate",
                "--drifts",
                "ppo,dpo",
                "--envs",
                env,
                "--seeds",
                "2",
                "--out",
                str(tmp_path / "e"),
                "--bootstrap-reps",
                "50",
                *TINY,
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "e" / "results.json").read_text())
    assert env in json.dumps(rows)
    assert (
        main(
            [
                "sweep",
                "--env",
                env,
                "--grid",
                "learning_rate=1e-3,2e-3",
                "--seeds",
                "2",
                "--out",
                str(tmp_path / "s"),
                *TINY,
            ]
        )
        == 0
    )
    meta = {
        "drift": "lpo",
        "drift_options": {"ppo_init": True, "hidden_size": 8},
        "tasks": [
            {
                "env": env,
                "overrides": {
                    "total_timesteps": 1024,
                    "num_envs": 4,
                    "num_steps": 32,
                    "num_minibatches": 2,
                    "update_epochs": 1,
                },
            }
        ],
        "es": {"algorithm": "Open_ES", "population_size": 4, "sigma": 0.1, "learning_rate": 0.05},
        "generations": 1,
        "seeds": 1,
        "checkpoint_every": 1,
    }
    (tmp_path / "meta.yaml").write_text(yaml.safe_dump(meta))
    assert main(["meta-train", "--config", str(tmp_path / "meta.yaml"), "--out", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "drift.npz").is_file()


def test_profile_choice_is_checked_and_reported(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:  # argparse's one line, exit 2
        main(["train", "--env", "reacher", "--profile", "gpu", "--out", str(tmp_path / "o")])
    assert exit_.value.code == 2 and "invalid choice: 'gpu'" in capsys.readouterr().err
    code = main(
        [
            "sweep",
            "--env",
            "reacher",
            "--profile",
            "tpu",
            "--grid",
            "learning_rate=1e-3,2e-3",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert re.search(r"unknown profile 'tpu'; valid profiles: cpu, accelerator, auto", _one_line_error(capsys, code))
    spec, _ = configs.load_train_spec("reacher", {"profile": "accelerator"})
    assert spec.profile == "accelerator" and spec.ppo.num_envs == 2048 and spec.ppo.num_steps == 50  # the published run
    spec, _ = configs.load_train_spec("reacher", {"total_timesteps": 50_000})
    assert spec.profile == "cpu" and spec.ppo.batch_size <= 2048 and spec.ppo.num_updates >= 20
    spec, _ = configs.load_train_spec("CartPole-v1", {"profile": "cpu"})  # one setting only: nothing to choose
    assert spec.profile is None


def test_the_example_meta_training_config_resolves(in_repo):
    from discovery.workflows import meta_training as mt

    config = mt.load_meta_config("examples/point_mass_meta.yaml", {"profile": "cpu"})
    (spec,) = mt.task_specs(config)
    assert spec.env == f"{EXAMPLE}:make" and spec.profile == "cpu" and spec.env_options == {"episode_length": 100}
    assert spec.ppo.num_envs == 32 and spec.ppo.num_updates == 32
