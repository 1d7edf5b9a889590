"""`discovery bench`: the smoke preset runs and writes a complete, finite bench.json and bench.md (no timing asserts)."""

import json
import math

import pytest

from discovery.bench import PRESETS, brax_kwargs
from discovery.cli import main


def _positive_finite(value, where):
    assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, f"{where} = {value!r}"


def test_bench_smoke_writes_valid_json_and_markdown(tmp_path):
    out = tmp_path / "bench"
    assert main(["bench", "--preset", "smoke", "--out", str(out)]) == 0
    doc = json.loads((out / "bench.json").read_text())
    assert doc["preset"] == "smoke" and doc["repeats"] >= 3
    assert {"versions", "devices", "command", "backend"} <= set(doc["environment"])
    assert doc["environment"]["versions"]["jax"]

    (case,) = doc["cases"]
    for name in ("limit", "learner", "ours", "ours_progress"):
        part = case[name]
        assert len(part["times_s"]) == doc["repeats"]
        for key in ("env_steps_per_s", "median_s", "compile_s", "peak_rss_mb"):
            _positive_finite(part[key], f"{name}.{key}")
    _positive_finite(case["ratios"]["ours_over_limit"], "ours_over_limit")
    _positive_finite(case["ratios"]["ours_over_ceiling"], "ours_over_ceiling")
    assert math.isfinite(case["ratios"]["progress_overhead"])

    (population,) = doc["populations"]
    assert [row["size"] for row in population["sizes"]] == list(PRESETS["smoke"].populations[0].sizes)
    for row in population["sizes"]:
        for side in ("vmapped", "sequential"):
            _positive_finite(row[side]["agent_steps_per_s"], f"P={row['size']} {side}")
        _positive_finite(row["vmapped_over_sequential"], f"P={row['size']} ratio")
    meta = population["meta_generation"]
    for key in ("median_s", "compile_s", "agent_steps_per_s"):
        _positive_finite(meta[key], f"meta_generation.{key}")

    markdown = (out / "bench.md").read_text()
    assert "ours/limit" in markdown and "ceiling" in markdown and "vmapped/sequential" in markdown and "meta-generation" in markdown


def test_bench_rejects_bad_arguments(tmp_path, capsys):
    assert main(["bench", "--preset", "smoke", "--repeats", "2", "--out", str(tmp_path / "a")]) == 2
    assert "--repeats must be >= 3" in capsys.readouterr().err
    assert main(["bench", "--preset", "smoke", "--envs", "hopper", "--out", str(tmp_path / "b")]) == 2
    assert "not in preset smoke" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--preset", "nonsense"])


def test_brax_settings_mirror_ours():
    """The Brax side gets the same layout: batch_size × num_minibatches sequences of unroll_length = our batch."""
    import envs
    from discovery import configs

    spec, _ = configs.load_train_spec("inverted_pendulum", dict(PRESETS["cpu"].cases[1].overrides))
    config = spec.ppo
    kwargs = brax_kwargs(config, envs.make("inverted_pendulum", **spec.env_options))
    assert kwargs["num_envs"] == config.num_envs and kwargs["unroll_length"] == config.num_steps
    assert kwargs["batch_size"] * kwargs["num_minibatches"] * kwargs["unroll_length"] == config.batch_size
    assert kwargs["num_updates_per_batch"] == config.update_epochs
    assert kwargs["normalize_observations"] == config.normalize_obs
