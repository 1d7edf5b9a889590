"""``discovery sweep``: one vmapped call equals separate runs; grids, W&B YAMLs and errors."""

import csv
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib.image as mpimg
import numpy as np
import pytest
import yaml

from discovery.cli import build_parser, main
from discovery.io import configs
from discovery.io.drift_registry import resolve_drift
from discovery.runtime.learners import seed_keys
from discovery.workflows.sweep import SweepDefinition, build_plan, load_sweep_yaml
from rl_algos.ppo import HParams, final_return, make_train

SWEEP_DIR = Path(__file__).resolve().parents[3] / "configs" / "sweeps"
TINY = {"total_timesteps": 4096, "num_envs": 4}
LEARNING_RATES = (1e-4, 1e-3)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "lr"
    code = main(
        [
            "sweep",
            "--env",
            "CartPole-v1",
            "--drift",
            "dpo",
            "--grid",
            "learning_rate=" + ",".join(map(str, LEARNING_RATES)),
            "--seeds",
            "2",
            "--total-timesteps",
            "4096",
            "--num-envs",
            "4",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    return out


def test_sweep_equals_separate_runs(swept):
    with np.load(swept / "metrics.npz") as data:
        sweep_returns, sweep_finals = data["episode_return"], data["final_returns"]
    assert sweep_returns.shape[:2] == (2, 2)  # [points, seeds, updates]

    spec, _ = configs.load_train_spec("CartPole-v1", TINY)
    drift = resolve_drift("dpo")
    train = jax.jit(jax.vmap(make_train(spec.ppo, spec.make_env(), drift.drift), in_axes=(0, None, None)))
    keys = seed_keys(0, 2)
    for point, learning_rate in enumerate(LEARNING_RATES):
        hparams = HParams.from_config(spec.ppo).replace(learning_rate=jnp.float32(learning_rate))
        _, metrics = train(keys, drift.params, hparams)
        np.testing.assert_allclose(
            sweep_returns[point], np.asarray(metrics["episode_return"]), rtol=1e-5, equal_nan=True
        )
        np.testing.assert_allclose(
            sweep_finals[point], np.asarray(final_return(metrics, spec.ppo.final_return_window)), rtol=1e-5
        )
    assert not np.allclose(sweep_returns[0], sweep_returns[1], equal_nan=True)  # the learning rate mattered


def test_sweep_writes_tables_and_plots(swept):
    with open(swept / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx(list(LEARNING_RATES))
    assert all(float(r["mean_ci_low"]) <= float(r["mean"]) <= float(r["mean_ci_high"]) for r in rows)
    results = json.loads((swept / "results.json").read_text())
    assert results["columns"] == ["learning_rate"] and len(results["rows"]) == 2
    assert "learning_rate" in (swept / "results.md").read_text()
    for name in ("sensitivity_learning_rate.png", "curves.png"):
        assert (swept / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert mpimg.imread(swept / name).ndim == 3


def test_drift_parameters_and_drift_axis_stack():
    definition = SweepDefinition(axes={"alpha": ["1.5", "2.0"], "learning_rate": ["1e-4", "3e-4"]})
    plan = build_plan("CartPole-v1", "dpo", definition, TINY, num_seeds=2, seed=0)
    assert len(plan.points) == 4 and plan.columns == ["alpha", "learning_rate"]
    assert [float(d.params["alpha"]) for d in plan.drifts] == [1.5, 1.5, 2.0, 2.0]
    assert [float(h.learning_rate) for h in plan.hparams] == pytest.approx([1e-4, 3e-4, 1e-4, 3e-4])
    assert all(float(d.params["beta"]) == pytest.approx(0.6) for d in plan.drifts)

    definition = SweepDefinition(
        axes={"drift": ["dpo:alpha=1.0,beta=0.3", "dpo:alpha=2.0,beta=0.3", "dpo:alpha=2.0,beta=0.6"]}
    )
    plan = build_plan("CartPole-v1", "ppo", definition, TINY, num_seeds=1, seed=0)
    assert plan.columns == ["drift", "alpha", "beta"]
    assert [p["alpha"] for p in plan.points] == pytest.approx([1.0, 2.0, 2.0])
    assert [p["beta"] for p in plan.points] == pytest.approx([0.3, 0.3, 0.6])


@pytest.mark.parametrize("path", sorted(SWEEP_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_sweep_yamls_are_wandb_definitions_the_cli_accepts(path):
    data = yaml.safe_load(path.read_text())
    assert data["program"] == "discovery" and data["method"] in ("grid", "random", "bayes")
    assert data["command"][-1] == "${args}" and data["command"][1:3] == ["discovery", "train"]
    assert data["metric"]["name"] == "final_return_mean"
    # the in-process reading of the same file
    definition = load_sweep_yaml(path)
    fixed = definition.fixed
    plan = build_plan(fixed["env"], fixed.get("drift", "ppo"), definition, {}, num_seeds=int(fixed["seeds"]), seed=0)
    assert len(plan.points) == int(np.prod([len(v["values"]) for v in data["parameters"].values() if "values" in v]))
    # what a W&B agent runs for every grid point: `discovery train --key=value ...` (${args})
    for point in _grid_points(data["parameters"]):
        argv = ["train"] + [f"--{key}={value}" for key, value in point.items()]
        args, extra = build_parser().parse_known_args(argv)
        assert args.command == "train"
        spec, _ = configs.load_train_spec(args.env, configs.parse_overrides(extra))
        resolve_drift(args.drift)
        assert args.seeds == int(fixed["seeds"]) and spec.ppo.total_timesteps == int(fixed["total_timesteps"])
        if "learning_rate" in point:
            assert spec.ppo.learning_rate == float(point["learning_rate"])


def _grid_points(parameters):
    import itertools

    names = list(parameters)
    choices = [parameters[n]["values"] if "values" in parameters[n] else [parameters[n]["value"]] for n in names]
    return [dict(zip(names, combo)) for combo in itertools.product(*choices)]


@pytest.mark.parametrize(
    "args, message",
    [
        ([], "empty grid"),
        (["--grid", "alpha="], "empty grid axis"),
        (["--grid", "learning_rate"], "malformed --grid"),
        (["--grid", "momentum=0.9,0.99"], "unknown sweep parameter"),
        (["--grid", "num_envs=4,8"], "cannot be swept"),
        (["--grid", "learning_rate=-1,1e-3"], "learning_rate must be > 0"),
        (["--grid", "gamma=0.9,1.5"], "gamma must be in [0, 1]"),
        (["--grid", "learning_rate=abc"], "not a number"),
        (["--drift", "dpo", "--grid", "alpha=abc"], "not a number"),
        (["--drift", "dpo", "--grid", "alpha=0,1"], "alpha and beta must be > 0"),
        (["--grid", "epsilon=0.1", "--grid", "epsilon=0.2"], "given twice"),
        (["--grid", "drift=dpo,ppo"], "mixes"),
        (["--drift", "nonsense", "--grid", "learning_rate=1e-3"], "unknown drift"),
        (["--env", "NoSuchEnv-v0", "--grid", "learning_rate=1e-3"], "NoSuchEnv-v0"),
        (["--config", "/no/such/sweep.yaml"], "not found"),
    ],
)
def test_errors_are_one_line_exit_2(tmp_path, capsys, args, message):
    code = main(["sweep", "--out", str(tmp_path / "out"), "--total-timesteps", "4096", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "body, message",
    [
        ("parameters: {learning_rate: {values: []}}", "empty grid"),
        (
            "parameters: {learning_rate: {distribution: log_uniform_values, min: 1e-4, max: 1e-2}}",
            "value:` or `values:",
        ),
        ("parameters: {env: {values: [CartPole-v1, Acrobot-v1]}}", "cannot be swept in-process"),
        ("method: grid", "no `parameters:`"),
    ],
)
def test_bad_sweep_yaml(tmp_path, capsys, body, message):
    path = tmp_path / "sweep.yaml"
    path.write_text(body)
    assert main(["sweep", "--config", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
