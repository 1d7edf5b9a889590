"""`discovery meta-train` at a budget where the drift decides the fitness: generation 0 is PPO, members
differ, a SIGKILLed run resumes bit-identically, 4 devices equal 1, and one-line errors.

CartPole-v1 with 16 epochs per batch at lr 3e-3 and 12,288 steps: PPO's trust region binds there, so
PPO-clip (ε = 0.2) and an unclipped drift (ε = 1e6) end hundreds of points apart, and the members of
a population around PPO score differently. Every test shares one compiled population evaluation
(the module's ``meta_run``) and one uninterrupted 3-generation run (``straight``); a CLI run in a
subprocess (killed, or on 4 forced devices) must reproduce that run exactly.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml

import drift_functions
import meta
from discovery.cli import main
from discovery.io import artifacts
from discovery.runtime.errors import UserError
from discovery.workflows import meta_training as mt
from drift_functions.closed_form import ppo_clip_drift
from drift_functions.learned import FLATNESS_MARGIN

REPO_ROOT = Path(__file__).resolve().parents[3]
GENERATIONS = 3
DRIFT_TASK = {
    "total_timesteps": 12_288,
    "num_envs": 4,
    "num_steps": 128,
    "num_minibatches": 4,
    "update_epochs": 16,
    "ppo.learning_rate": 3e-3,
}
CONFIG = {
    "drift": "lpo",
    "drift_options": {"ppo_init": True, "hidden_size": 16},
    "tasks": [{"env": "CartPole-v1", "overrides": DRIFT_TASK}],
    "es": {"algorithm": "Open_ES", "population_size": 4, "sigma": 0.1, "learning_rate": 0.05},
    "generations": GENERATIONS,
    "seeds": 2,
    "checkpoint_every": 1,
    "population_chunk": 2,  # two micro-batches of 2 members: forced devices then really share the population
}
TINY_TRAIN = [
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


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "drift_matters.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


@pytest.fixture(scope="module")
def meta_run():
    """The run as ``discovery meta-train`` builds it on one device; its population evaluation compiles once per
    module."""
    return mt.build_run(mt.meta_config_from_dict(CONFIG, {}), None)


@pytest.fixture(scope="module")
def straight(meta_run, tmp_path_factory):
    """``GENERATIONS`` uninterrupted generations (in process): the run every other one must reproduce."""
    out = tmp_path_factory.mktemp("straight")
    state, rows = mt.run_generations(meta_run, mt.initial_state(meta_run), 0, GENERATIONS, out)
    return out, state, rows


def _mean_params(out: Path):
    _, params, metadata = artifacts.load_artifact(out / "drift.npz")
    return params, metadata


def _assert_same_run(out: Path, straight):
    """``out`` holds exactly the straight run: ES mean, ES state and every member's fitness."""
    straight_out, _, straight_rows = straight
    for x, y in zip(jax.tree.leaves(_mean_params(straight_out)[0]), jax.tree.leaves(_mean_params(out)[0])):
        np.testing.assert_array_equal(x, y)
    with (
        np.load(mt.checkpoint_path(straight_out, GENERATIONS)) as a,
        np.load(mt.checkpoint_path(out, GENERATIONS)) as b,
    ):
        es_keys = sorted(k for k in a.files if k.startswith("es/"))
        assert es_keys and es_keys == sorted(k for k in b.files if k.startswith("es/"))
        for k in es_keys:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    rows = mt.read_metrics(out)
    assert [r["generation"] for r in rows] == list(range(GENERATIONS))
    assert [r["fitness"] for r in rows] == [r["fitness"] for r in straight_rows]


def _subprocess_env(**extra):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    return env


# ---- the fitness depends on the drift ----------------------------------------------------------


CARTPOLE_MAX_RETURN = 500.0


def test_members_fitnesses_differ(straight):
    """Members around PPO score differently; a later generation may tie only where every member reaches
    CartPole's cap of 500 (ES climbed to the ceiling: on CI's CPU generation 2 did), never below it."""
    _, _, rows = straight
    for row in rows:
        fitness = np.asarray(row["fitness"], float)
        assert np.all(np.isfinite(fitness)) and fitness.shape == (4,)
        tied_at_the_cap = np.all(fitness == CARTPOLE_MAX_RETURN)
        assert len(np.unique(fitness)) >= 2 or (row["generation"] > 0 and tied_at_the_cap), row["fitness"]
    spread = max(float(np.ptp(np.asarray(r["fitness"], float))) for r in rows)
    assert spread > 50.0, [r["fitness"] for r in rows]  # not rounding noise: the drift moved whole episodes


def _ppo_clip_with_margin():
    """PPO-clip with the learned drifts' 1e-4 flatness margin, ε a parameter: what a PPO-initialised LPO
    with all-zero weights computes, ``relu(0 + drift_ppo − 1e-4)``."""
    return drift_functions.Drift(
        "ppo_clip_margin",
        {},
        lambda key: {"epsilon": jnp.float32(0.2)},
        lambda params, ratio, advantage, progress, log_ratio=None: jax.nn.relu(
            ppo_clip_drift(ratio, advantage, params["epsilon"]) - FLATNESS_MARGIN
        ),
    )


def test_generation_zero_mean_of_ppo_initialised_lpo_is_ppo(meta_run):
    zero_mean = mt.initial_state(meta_run)
    zero_mean = meta_run.strategy.mean(zero_mean)
    assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(zero_mean))
    reference = _ppo_clip_with_margin()
    reference_fitness = mt.make_fitness_fn(meta_run.specs, reference, meta_run.config.seeds, None)
    stack = lambda tree, n: jax.tree.map(lambda x: jnp.stack([x] * n), tree)  # noqa: E731
    for k in range(2):
        key = jax.random.PRNGKey(100 + k)
        lpo = np.asarray(meta.evaluate_population(meta_run.fitness_fn, stack(zero_mean, 4), key))
        ppo, unclipped = np.asarray(
            meta.evaluate_population(reference_fitness, {"epsilon": jnp.array([0.2, 1e6], jnp.float32)}, key)
        )
        assert np.all(lpo == lpo[0])
        # at this budget the trust region decides the return ...
        assert abs(ppo - unclipped) > 100.0, (ppo, unclipped)
        # ... and the ES's starting mean trains exactly as PPO-clip ε = 0.2 does, on the same seeds
        assert lpo[0] == ppo, (lpo[0], ppo, unclipped)


# ---- resume -----------------------------------------------------------------------------------


def test_resume_from_a_checkpoint_continues_the_straight_run(meta_run, straight, tmp_path):
    out = tmp_path / "resumed"
    mt.run_generations(meta_run, mt.initial_state(meta_run), 0, 1, out)
    checkpoint = mt.load_checkpoint(mt.latest_checkpoint_file(out), meta_run.strategy)
    assert checkpoint.generation == 1
    mt.run_generations(meta_run, checkpoint.es_state, checkpoint.generation, GENERATIONS, out)
    _assert_same_run(out, straight)


@pytest.fixture(scope="module")
def killed_and_resumed(config_file, tmp_path_factory):
    """``discovery meta-train`` in a subprocess, SIGKILLed during its second generation, then ``--resume``d."""
    out = tmp_path_factory.mktemp("killed") / "run"
    command = [sys.executable, "-m", "discovery.cli", "meta-train", "--config", str(config_file), "--out", str(out)]
    proc = subprocess.Popen(
        command,
        env=_subprocess_env(DISCOVERY_CPU_DEVICES="1"),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = mt.checkpoint_path(out, 1)
    deadline = time.monotonic() + 900
    try:
        while not first.exists():
            assert proc.poll() is None, f"meta-train exited early ({proc.returncode}): {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no first checkpoint after 900 s"
            time.sleep(0.05)
        time.sleep(0.3)  # inside generation 1 (index), which takes seconds
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    died_in = {
        "checkpoints": sorted(p.name for p in (out / "checkpoints").iterdir()),
        "generations": [r["generation"] for r in mt.read_metrics(out)],
    }
    assert main(["meta-train", "--resume", str(out), "--generations", str(GENERATIONS)]) == 0
    return out, died_in


def test_a_sigkilled_run_resumes_bit_identically(killed_and_resumed, straight):
    out, died_in = killed_and_resumed
    # it died mid-generation: one generation finished and checkpointed, the next one not
    assert died_in["checkpoints"] == ["gen_000001.npz"], died_in
    assert died_in["generations"] in ([0], [0, 1]), died_in
    _assert_same_run(out, straight)


def test_the_resumed_run_writes_everything_and_its_artifact_trains(killed_and_resumed, tmp_path):
    out, _ = killed_and_resumed
    assert (out / "config.yaml").is_file() and (out / "best_drift.npz").is_file() and (out / "fitness.png").is_file()
    assert (
        mt.load_meta_config(str(out / "config.yaml"), {}).identity() == mt.meta_config_from_dict(CONFIG, {}).identity()
    )
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        f"gen_{g:06d}.npz" for g in range(1, GENERATIONS + 1)
    ]
    rows = mt.read_metrics(out)
    assert all(np.isfinite(r["fitness_mean"]) and len(r["fitness"]) == 4 for r in rows)
    params, metadata = _mean_params(out)
    assert metadata["generation"] == GENERATIONS
    assert any(float(np.abs(p).max()) > 0 for p in jax.tree.leaves(params))  # the ES moved off PPO
    code = main(
        [
            "train",
            "--env",
            "CartPole-v1",
            "--drift",
            str(out / "drift.npz"),
            "--seeds",
            "2",
            "--out",
            str(tmp_path / "t"),
            *TINY_TRAIN,
        ]
    )
    assert code == 0
    assert json.loads((tmp_path / "t" / "results.json").read_text())["config"]["drift"]["family"] == "lpo"


# ---- devices ----------------------------------------------------------------------------------


@pytest.mark.slow  # the default run checks the same mechanism on 1 and 8 devices (tests/discovery/runtime)
def test_four_forced_cpu_devices_give_the_same_run(config_file, straight, tmp_path):
    """4 members on 4 forced devices in micro-batches of 2 (``population_chunk: 2``), so two devices train
    two members each. One member per device once trained differently (XLA dropped a vmapped axis of size 1 on some
    layouts only: fitness [385.8, 500, 500, 424] vs [500, 488.7, 500, 344.5]); with fixed micro-batches every
    device runs the same program whatever the device count, so the run is bit-identical."""
    four = tmp_path / "four"
    proc = subprocess.run(
        [sys.executable, "-m", "discovery.cli", "meta-train", "--config", str(config_file), "--out", str(four)],
        env=_subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=4"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    _assert_same_run(four, straight)
    assert "2 devices, micro-batches of 2 members" in proc.stderr, proc.stderr[-2000:]


# ---- errors -----------------------------------------------------------------------------------


def _error(capsys, argv):
    """Exit status 2 and one line on stderr, whether the command returns it or argparse exits with it."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_user_errors(tmp_path, capsys, config_file):
    assert "config file not found" in _error(
        capsys, ["meta-train", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "a")]
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("es: [unclosed")
    assert "malformed YAML" in _error(capsys, ["meta-train", "--config", str(bad), "--out", str(tmp_path / "a")])
    assert "Open_ES" in _error(
        capsys, ["meta-train", "--config", str(config_file), "--algorithm", "NoSuchES", "--out", str(tmp_path / "a")]
    )
    assert "even" in _error(
        capsys, ["meta-train", "--config", str(config_file), "--population-size", "5", "--out", str(tmp_path / "a")]
    )
    assert "does not exist" in _error(capsys, ["meta-train", "--resume", str(tmp_path / "missing")])
    assert "--config is required" in _error(capsys, ["meta-train", "--out", str(tmp_path / "a")])
    assert "invalid int value" in _error(capsys, ["meta-train", "--config", str(config_file), "--generations", "many"])
    assert not (tmp_path / "a").exists()


def test_a_key_with_two_meanings_is_refused_and_prefixes_route(tmp_path, capsys, config_file):
    """`learning_rate` is an ES and a PPO field: the bare key is refused, `es.` / `ppo.` route it."""
    err = _error(
        capsys, ["meta-train", "--config", str(config_file), "--learning-rate", "3e-3", "--out", str(tmp_path / "a")]
    )
    assert "es.learning_rate" in err and "ppo.learning_rate" in err
    assert not (tmp_path / "a").exists()
    config = mt.meta_config_from_dict(
        CONFIG,
        {
            "es.learning_rate": "3e-3",
            "ppo.learning_rate": "1e-4",
            "update_epochs": "2",
            "drift.ppo_init": "false",
            "seeds": "3",
        },
    )
    assert config.es.learning_rate == 3e-3 and config.seeds == 3 and config.drift_options["ppo_init"] is False
    assert all(spec.ppo.learning_rate == 1e-4 and spec.ppo.update_epochs == 2 for spec in mt.task_specs(config))
    assert all(spec.ppo.learning_rate == 3e-3 for spec in mt.task_specs(mt.meta_config_from_dict(CONFIG, {})))
    assert "unknown es field 'nope'" in _error(capsys, ["meta-train", "--config", str(config_file), "--es.nope", "1"])


def test_resume_refuses_other_config_and_corrupt_checkpoint(tmp_path, capsys, straight):
    out = tmp_path / "m"
    shutil.copytree(straight[0], out)
    (out / "config.yaml").write_text(yaml.safe_dump(mt.meta_config_from_dict(CONFIG, {}).to_dict(), sort_keys=False))
    assert "different config" in _error(capsys, ["meta-train", "--resume", str(out), "--sigma", "0.5"])
    checkpoint = mt.checkpoint_path(out, GENERATIONS)
    checkpoint.write_bytes(b"garbage")
    assert "corrupt checkpoint" in _error(
        capsys, ["meta-train", "--resume", str(out), "--generations", str(GENERATIONS + 1)]
    )
    assert checkpoint.read_bytes() == b"garbage"  # left exactly as found


def _demo_run_dir(tmp_path, generations_done=None):
    import yaml

    from discovery.workflows import meta_training as mt

    out = tmp_path / "run"
    out.mkdir()
    config = mt.load_meta_config("configs/meta/cartpole_demo.yaml", {"generations": 6})
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    if generations_done is not None:
        run = mt.build_run(config, None)
        mt.save_checkpoint(out, mt.Checkpoint(generations_done, mt.initial_state(run), None, config.to_dict()))
    return out


def test_meta_config_keeps_empty_drift_options():
    from discovery.workflows.meta_training import meta_config_from_dict

    config = meta_config_from_dict({"drift": "lpo", "drift_options": {}}, {})
    assert config.drift_options == {}
    assert meta_config_from_dict({"drift": "lpo"}, {}).drift_options == {"ppo_init": True}
    assert meta_config_from_dict({"drift": "dpo"}, {}).drift_options == {}


def test_resume_with_another_out_is_refused(tmp_path, capsys):
    out = _demo_run_dir(tmp_path)
    assert main(["meta-train", "--resume", str(out), "--out", str(tmp_path / "elsewhere")]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        len(err.splitlines()) == 1
        and "--out" in err
        and "would be ignored" in err
        and not (tmp_path / "elsewhere").exists()
    )


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

    from discovery.workflows import meta_training as mt

    config = mt.load_meta_config(
        "configs/meta/cartpole_demo.yaml", {"total_timesteps": "4096", "es.sigma": "0.1", "seeds": "3"}
    )
    stored = yaml.safe_load(yaml.safe_dump(config.to_dict(), sort_keys=False))
    assert (
        stored["tasks"][0]["overrides"]["total_timesteps"] == 4096
        and stored["es"]["sigma"] == 0.1
        and stored["seeds"] == 3
    )
    assert mt.meta_config_from_dict(stored, {}).identity() == config.identity()


def test_ctrl_c_during_meta_train_says_resume_continues(tmp_path, capsys, monkeypatch):
    from discovery.workflows import meta_run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(
        meta_run, "reference_returns", lambda specs, seeds, seed: np.array([[20.0, 200.0]] * len(specs))
    )
    monkeypatch.setattr(meta_run, "run_generations", interrupted)
    out = tmp_path / "m"
    assert main(["meta-train", "--config", "configs/meta/cartpole_demo.yaml", "--out", str(out)]) == 130
    err = capsys.readouterr().err.replace("\n", "")
    assert f"discovery meta-train --resume {out}` continues this run" in err


def test_a_diverging_es_mean_stops_the_run_before_anything_non_finite_is_written(tmp_path, monkeypatch):
    """The ES step itself blows up (a huge but finite learning rate): one line, and nothing non-finite is written."""
    import meta
    from discovery.workflows import meta_training as mt

    config = mt.meta_config_from_dict(
        {
            "drift": "dpo",
            "generations": 2,
            "seeds": 1,
            "checkpoint_every": 1,
            "tasks": [
                {
                    "env": "CartPole-v1",
                    "overrides": {
                        "total_timesteps": 256,
                        "num_envs": 4,
                        "num_steps": 32,
                        "num_minibatches": 2,
                        "update_epochs": 1,
                    },
                }
            ],
            "es": {"population_size": 4, "sigma": 0.1},
        },
        {},
    )
    run = mt.build_run(config, None)
    state = mt.initial_state(run)
    real = meta.run_generation

    def diverging(strategy, state, key, fitness_fn, **kw):
        new_state, stats = real(strategy, state, key, fitness_fn, **kw)
        return jax.tree.map(
            lambda x: x * np.nan if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x, new_state
        ), stats

    monkeypatch.setattr(meta, "run_generation", diverging)
    out = tmp_path / "m"
    out.mkdir()
    with pytest.raises(UserError, match="the ES mean became non-finite in generation 1"):
        mt.run_generations(run, state, 0, 2, out)
    assert not list(out.rglob("*.npz")) and not (out / "metrics.jsonl").exists()

    # A checkpoint that holds a non-finite mean (written by an older version) is refused on --resume.
    mt.save_checkpoint(
        out,
        mt.Checkpoint(
            1,
            jax.tree.map(lambda x: x * np.nan if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else x, state),
            None,
            config.to_dict(),
        ),
    )
    with pytest.raises(UserError, match="holds a non-finite ES mean"):
        mt.load_checkpoint(mt.latest_checkpoint_file(out), run.strategy)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_an_empty_task_list_is_refused():
    with pytest.raises(UserError, match="'tasks' in .* is empty"):
        mt.meta_config_from_dict({"tasks": []}, {})


def test_resuming_after_config_yaml_was_edited_says_so(tmp_path, capsys):
    config = mt.load_meta_config("configs/meta/cartpole_demo.yaml", {})
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    run = mt.build_run(config, None)
    mt.save_checkpoint(out, mt.Checkpoint(2, mt.initial_state(run), None, config.to_dict()))
    edited = config.to_dict()
    edited["drift_options"]["hidden_size"] = 64
    (out / "config.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    assert main(["meta-train", "--resume", str(out)]) == 2
    err = _one_line(capsys)
    assert "no longer matches" in err and "drift_options" in err and "corrupt" not in err


def test_a_checkpoint_records_its_machine_and_a_resume_elsewhere_says_so(tmp_path):
    from discovery.runtime.devices import host_cpu
    from discovery.workflows import meta_checkpoints

    config = mt.load_meta_config("configs/meta/cartpole_demo.yaml", {})
    run = mt.build_run(config, None)
    mt.save_checkpoint(tmp_path, mt.Checkpoint(1, mt.initial_state(run), None, config.to_dict()))
    checkpoint = mt.load_checkpoint(mt.latest_checkpoint_file(tmp_path), run.strategy)
    here = meta_checkpoints.current_host()
    assert checkpoint.host == here and here.startswith("cpu, ")
    assert meta_checkpoints.host_change_note(checkpoint, here) is None
    note = meta_checkpoints.host_change_note(checkpoint, "cpu, Other CPU (avx avx2 fma)")
    assert note is not None and "\n" not in note
    assert here in note and "Other CPU" in note and "not bit-identical" in note
    # checkpoints written before hosts were recorded resume without a note
    assert meta_checkpoints.host_change_note(mt.Checkpoint(1, None, None, {}), here) is None

    cpuinfo = "processor\t: 0\nmodel name\t: Example CPU 9000\nflags\t\t: fpu sse2 avx2 avx fma avx512f ht\n"
    assert host_cpu(cpuinfo) == "Example CPU 9000 (avx avx2 avx512f fma)"
    assert host_cpu("") != ""  # no /proc/cpuinfo: the processor name, never an empty string


SHIPPED_META_CONFIGS = sorted(str(p) for p in (Path(__file__).parents[3] / "configs" / "meta").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_META_CONFIGS)
def test_every_shipped_meta_config_loads(path):
    """A shipped config that no longer parses would fail only when a user runs it, hours into a session."""
    config = mt.load_meta_config(path, {})
    assert config.tasks and config.generations > 0
    assert {task.env for task in config.tasks} == {entry["env"] for entry in yaml.safe_load(open(path))["tasks"]}
