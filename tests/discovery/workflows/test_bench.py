"""`discovery bench`: the smoke preset runs and writes a complete, finite bench.json and bench.md (no timing
asserts)."""

import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from discovery.cli import main
from discovery.workflows.bench import PRESETS, brax_kwargs


def _positive_finite(value, where):
    assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, f"{where} = {value!r}"


# Times real learners and the simulator: `make test-all` (over a minute on 2 cores).
@pytest.mark.slow
def test_bench_smoke_writes_valid_json_and_markdown(tmp_path):
    # As a user runs it: its own process, with the CLI's host devices (2, so that batches are sharded and padded).
    out = tmp_path / "bench"
    env = dict(os.environ, JAX_PLATFORMS="cpu", DISCOVERY_CPU_DEVICES="2")
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "discovery.cli", "bench", "--preset", "smoke", "--out", str(out)],
        env=env,
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "bench.json").read_text())
    assert doc["preset"] == "smoke" and doc["repeats"] >= 3
    assert {"versions", "devices", "command", "backend"} <= set(doc["environment"])
    assert doc["environment"]["versions"]["jax"]

    (case,) = doc["cases"]
    assert case["env_steps"] == 4 * 32  # the smoke preset's single update
    for name in ("limit", "learner", "ours", "ours_progress"):
        part = case[name]
        assert len(part["times_s"]) == doc["repeats"]
        for key in ("env_steps_per_s", "median_s", "compile_s", "peak_rss_mb"):
            _positive_finite(part[key], f"{name}.{key}")
        # every figure is what its own timings say: the median, and work / median
        assert part["median_s"] == statistics.median(part["times_s"]), name
        if name != "limit":  # the limit steps random actions for its own count of env steps
            assert part["env_steps_per_s"] == pytest.approx(case["env_steps"] / part["median_s"], rel=1e-9), name
    ratios = case["ratios"]
    assert ratios["ours_over_limit"] == pytest.approx(
        case["ours"]["env_steps_per_s"] / case["limit"]["env_steps_per_s"], rel=1e-9
    )
    assert ratios["ours_over_ceiling"] == pytest.approx(
        case["ours"]["env_steps_per_s"] / case["ceiling_env_steps_per_s"], rel=1e-9
    )
    assert ratios["progress_overhead"] == pytest.approx(
        1.0 - case["ours_progress"]["env_steps_per_s"] / case["ours"]["env_steps_per_s"], rel=1e-9, abs=1e-12
    )
    _positive_finite(ratios["ours_over_limit"], "ours_over_limit")

    (population,) = doc["populations"]
    assert [row["size"] for row in population["sizes"]] == list(PRESETS["smoke"].populations[0].sizes)
    for row in population["sizes"]:
        for side in ("vmapped", "sequential"):
            _positive_finite(row[side]["agent_steps_per_s"], f"P={row['size']} {side}")
            work = row["size"] * population["env_steps_per_member"]
            assert row[side]["agent_steps_per_s"] == pytest.approx(work / row[side]["median_s"], rel=1e-9), side
        assert row["vmapped_over_sequential"] == pytest.approx(
            row["vmapped"]["agent_steps_per_s"] / row["sequential"]["agent_steps_per_s"], rel=1e-9
        )
    meta = population["meta_generation"]
    for key in ("median_s", "compile_s", "agent_steps_per_s"):
        _positive_finite(meta[key], f"meta_generation.{key}")

    markdown = (out / "bench.md").read_text()
    assert (
        "ours/limit" in markdown
        and "ceiling" in markdown
        and "vmapped/sequential" in markdown
        and "meta-generation" in markdown
    )


def test_bench_rejects_bad_arguments(tmp_path, capsys):
    for argv, message in (
        (["--repeats", "2"], "--repeats must be >= 3"),
        (["--envs", "hopper"], "not in preset smoke"),
        (["--parts", "ours,nonsense"], "unknown --parts nonsense"),
    ):
        assert main(["bench", "--preset", "smoke", *argv, "--out", str(tmp_path / "a")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "a").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--preset", "nonsense"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "invalid choice: 'nonsense'" in err, err


def test_brax_settings_mirror_ours():
    """The Brax side gets the same layout: batch_size × num_minibatches sequences of unroll_length = our batch."""
    import envs
    from discovery.io import configs

    spec, _ = configs.load_train_spec("inverted_pendulum", dict(PRESETS["cpu"].cases[1].overrides))
    config = spec.ppo
    kwargs = brax_kwargs(config, envs.make("inverted_pendulum", **spec.env_options))
    assert kwargs["num_envs"] == config.num_envs and kwargs["unroll_length"] == config.num_steps
    assert kwargs["batch_size"] * kwargs["num_minibatches"] * kwargs["unroll_length"] == config.batch_size
    assert kwargs["num_updates_per_batch"] == config.update_epochs
    assert kwargs["normalize_observations"] == config.normalize_obs
