"""``discovery evaluate``: files, statistics, resuming, and one-line errors (tiny CartPole budgets)."""

import csv
import json
import os

import matplotlib.image as mpimg
import numpy as np
import pytest

import discovery.workflows.evaluate.grid as evaluation
import drift_functions
from discovery.cli import main
from discovery.io import artifacts
from discovery.runtime.errors import UserError
from discovery.runtime.learners import TrainingResult
from discovery.workflows.evaluate.grid import GRID_FILE, refuse_dropping

TINY = ["--total-timesteps", "4096", "--num-envs", "4", "--bootstrap-reps", "200"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_png(path):
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "grid"
    code = main(["evaluate", "--drifts", "ppo,dpo", "--envs", "CartPole-v1", "--seeds", "2", "--out", str(out), *TINY])
    assert code == 0
    return out


def test_writes_every_file(evaluated):
    for name in (
        "results.csv",
        "results.json",
        "results.md",
        "evaluation.json",
        "curves_CartPole-v1.png",
        "normalized_scores.png",
    ):
        assert (evaluated / name).is_file(), name
    assert sorted(p.name for p in (evaluated / "cells").iterdir()) == [
        "CartPole-v1__dpo.json",
        "CartPole-v1__dpo.npz",
        "CartPole-v1__ppo.json",
        "CartPole-v1__ppo.npz",
        "CartPole-v1__random.json",
    ]
    assert_png(evaluated / "curves_CartPole-v1.png")
    assert_png(evaluated / "normalized_scores.png")
    markdown = (evaluated / "results.md").read_text()
    assert "| CartPole-v1 | – | ppo |" in markdown and "| CartPole-v1 | – | dpo |" in markdown


def test_csv_and_json_rows_are_consistent(evaluated):
    with open(evaluated / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["env"], r["drift"]) for r in rows] == [("CartPole-v1", "ppo"), ("CartPole-v1", "dpo")]
    results = json.loads((evaluated / "results.json").read_text())
    for row, saved in zip(rows, results["rows"]):
        finals = np.asarray(saved["final_returns"], float)
        assert int(row["seeds"]) == 2 and finals.shape == (2,)
        assert float(row["mean"]) == pytest.approx(finals.mean(), rel=1e-6)
        assert float(row["median"]) == pytest.approx(np.median(finals), rel=1e-6)
        assert float(row["mean_ci_low"]) <= float(row["mean"]) <= float(row["mean_ci_high"])
        assert float(row["iqm_ci_low"]) <= float(row["iqm"]) <= float(row["iqm_ci_high"])
        recorded_wall = float(row["wall_seconds"])  # the column is filled in (not a speed check)
        assert recorded_wall > 0
    assert results["reference"] == "ppo"
    # (R − R_random) / (R_ppo − R_random): PPO scores exactly 1, a random policy 0.
    random_return = float(rows[0]["random_return"])
    assert 15 < random_return < 30  # a uniform-random CartPole policy lasts about 22 steps
    assert float(rows[0]["normalized_mean"]) == pytest.approx(1.0, rel=1e-5)
    ppo_mean = float(rows[0]["mean"])
    expected = (float(rows[1]["mean"]) - random_return) / (ppo_mean - random_return)
    assert float(rows[1]["normalized_mean"]) == pytest.approx(expected, rel=1e-5)
    assert float(rows[1]["return_ratio"]) == pytest.approx(float(rows[1]["mean"]) / ppo_mean, rel=1e-5)
    aggregate = results["aggregates"]["all"]
    assert aggregate["tasks"] == ["CartPole-v1"] and set(aggregate["aggregate"]) == {"ppo", "dpo"}
    assert aggregate["aggregate"]["ppo"]["mean"] == pytest.approx(1.0, rel=1e-5)
    low, point, high = (
        aggregate["improvement"]["dpo"][1],
        aggregate["improvement"]["dpo"][0],
        aggregate["improvement"]["dpo"][2],
    )
    assert 0.0 <= low <= point <= high <= 1.0


def test_same_seeds_for_every_drift(evaluated):
    grid = json.loads((evaluated / "evaluation.json").read_text())
    assert grid["seeds"] == 2 and grid["seed"] == 0
    fingerprints = [
        json.loads((evaluated / "cells" / f"CartPole-v1__{d}.json").read_text())["fingerprint"] for d in ("ppo", "dpo")
    ]
    assert fingerprints[0]["seed"] == fingerprints[1]["seed"] and fingerprints[0]["train"] == fingerprints[1]["train"]


def _fake_run_seeds(calls):
    def fake(spec, resolved, num_seeds, seed=0, **kwargs):
        calls.append(resolved.label)
        updates = spec.ppo.num_updates
        curve = np.full((num_seeds, updates), 10.0, np.float32)
        metrics = {"episode_return": curve, "episodes": np.ones((num_seeds, updates), np.float32)}
        return TrainingResult(
            metrics, np.full(num_seeds, 10.0), np.arange(1, updates + 1) * spec.ppo.batch_size, 0.1, 0.1
        )

    return fake


def _copy(evaluated, tmp_path):
    """A private copy of the module's evaluation: a test that reruns into it cannot change what another test reads."""
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(evaluated, out)
    return out


def test_rerun_skips_finished_cells(evaluated, tmp_path, monkeypatch):
    out = _copy(evaluated, tmp_path)
    cells = sorted((out / "cells").iterdir())
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in cells}

    def table(path):  # every column but `resumed`, which says whether the cell was trained in this call
        with open(path) as handle:
            return [{k: v for k, v in row.items() if k != "resumed"} for row in csv.DictReader(handle)]

    results = table(out / "results.csv")
    calls = []
    monkeypatch.setattr(evaluation, "run_seeds", _fake_run_seeds(calls))
    code = main(["evaluate", "--drifts", "ppo,dpo", "--envs", "CartPole-v1", "--seeds", "2", "--out", str(out), *TINY])
    assert code == 0
    assert calls == []
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted((out / "cells").iterdir())} == before
    assert table(out / "results.csv") == results  # the table is rebuilt from the stored cells, identically
    with open(out / "results.csv") as handle:
        assert [row["resumed"] for row in csv.DictReader(handle)] == ["True", "True"]


def test_growing_the_grid_trains_only_new_cells(evaluated, tmp_path, monkeypatch):
    out = _copy(evaluated, tmp_path)
    calls = []
    monkeypatch.setattr(evaluation, "run_seeds", _fake_run_seeds(calls))
    code = main(
        [
            "evaluate",
            "--drifts",
            "ppo,dpo,dpo:alpha=1.5",
            "--envs",
            "CartPole-v1",
            "--seeds",
            "2",
            "--out",
            str(out),
            *TINY,
        ]
    )
    assert code == 0
    assert calls == ["dpo:alpha=1.5"]
    with open(out / "results.csv") as handle:
        assert [r["drift"] for r in csv.DictReader(handle)] == ["ppo", "dpo", "dpo:alpha=1.5"]


def test_rerun_with_other_settings_is_refused(evaluated, tmp_path, monkeypatch, capsys):
    out = _copy(evaluated, tmp_path)
    calls = []
    monkeypatch.setattr(evaluation, "run_seeds", _fake_run_seeds(calls))
    code = main(["evaluate", "--drifts", "ppo,dpo", "--envs", "CartPole-v1", "--seeds", "3", "--out", str(out), *TINY])
    assert code == 2 and calls == []
    err = capsys.readouterr().err
    assert "different result" in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--drifts", "ppo,nonsense"], "unknown drift"),
        (["--envs", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
        (["--drifts", "ppo,/no/such/drift.npz"], "not found"),
        (["--drifts", ","], "empty grid"),
        (["--envs", ","], "empty grid"),
        (["--drifts", "ppo,ppo"], "twice"),
        (["--seeds", "0"], "--seeds"),
        (["--reference", "dpo:alpha=3"], "--reference"),
    ],
)
def test_errors_are_one_line_exit_2(tmp_path, capsys, args, message):
    code = main(["evaluate", "--out", str(tmp_path / "out"), *args, *TINY])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1


def test_corrupt_artifact_and_unknown_family(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file")
    assert main(["evaluate", "--drifts", str(corrupt), "--out", str(tmp_path / "a"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "corrupt drift artifact" in err and err.count("\n") == 1, err
    drift = drift_functions.make("dpo")
    path = artifacts.save_artifact(tmp_path / "alien.npz", drift, drift.init(None))
    data = dict(np.load(path))
    data["__drift__"] = np.asarray(json.dumps({"format": 1, "name": "alien_family", "options": {}, "metadata": {}}))
    np.savez(path, **data)
    assert main(["evaluate", "--drifts", str(path), "--out", str(tmp_path / "b"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "unknown drift 'alien_family'" in err and err.count("\n") == 1, err


def test_refuses_a_non_evaluation_directory(tmp_path, capsys):
    (tmp_path / "something.txt").write_text("not an evaluation")
    assert main(["evaluate", "--out", str(tmp_path), *TINY]) == 2
    err = capsys.readouterr().err
    assert "holds no evaluation" in err and err.count("\n") == 1, err


def test_a_truncated_evaluate_cell_is_one_line(tmp_path):
    import types

    from discovery.io.outputs import DamagedFileError, read_npz, write_npz
    from discovery.workflows.evaluate.grid import CELL_DIR, _load_cell

    cells = tmp_path / CELL_DIR
    path = write_npz(
        cells / "CartPole-v1__ppo.npz", {"final_returns": np.ones(4), "env_steps": np.arange(3)}, compressed=True
    )
    (cells / "CartPole-v1__ppo.json").write_text("{}")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DamagedFileError, match="is not a .npz archive"):
        read_npz(path)
    cell = types.SimpleNamespace(name="CartPole-v1__ppo")
    with pytest.raises(
        UserError,
        match=r"unreadable cell .*CartPole-v1__ppo.\{json,npz\} \(.*not a .npz archive.*\); delete both files",
    ):
        _load_cell(cell, tmp_path, {}, overwrite=False)
    assert _load_cell(cell, tmp_path, {}, overwrite=True) is None  # --overwrite recomputes it


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


@pytest.mark.slow  # ~40 s of a slow env; Freeway's random baseline stays in the default run (test_baselines)
def test_freeway_evaluates(tmp_path):
    assert (
        main(
            [
                "evaluate",
                "--drifts",
                "ppo",
                "--envs",
                "Freeway-MinAtar",
                "--seeds",
                "2",
                "--total-timesteps",
                "16384",
                "--out",
                str(tmp_path / "freeway"),
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "freeway" / "results.json").read_text())["rows"]
    assert rows[0]["random_return"] > 0


def test_an_evaluation_rerun_that_would_drop_a_drift_is_refused(tmp_path):
    (tmp_path / GRID_FILE).write_text(
        json.dumps({"drifts": [{"label": "ppo"}, {"label": "dpo"}, {"label": "mine"}], "tasks": {"CartPole-v1": {}}})
    )
    with pytest.raises(UserError, match="without mine"):
        refuse_dropping(tmp_path, ["ppo", "dpo"], ["CartPole-v1"])
    refuse_dropping(tmp_path, ["ppo", "dpo", "mine", "new"], ["CartPole-v1"])  # adding is fine


def test_report_is_a_self_contained_document_naming_its_machine(evaluated, tmp_path, monkeypatch):
    from discovery.runtime.devices import host_cpu

    out = _copy(evaluated, tmp_path)
    calls = []
    monkeypatch.setattr(evaluation, "run_seeds", _fake_run_seeds(calls))
    report = tmp_path / "docs" / "RESULTS.md"
    args = ["evaluate", "--drifts", "ppo,dpo", "--envs", "CartPole-v1", "--seeds", "2", "--out", str(out)]
    assert main([*args, *TINY, "--report", str(report)]) == 0
    assert calls == []  # the document is written from the stored cells
    text = report.read_text()
    assert text.startswith("# Results\n")
    assert host_cpu() in text and "CartPole-v1" in text and "dpo" in text
    figures = [line for line in text.splitlines() if line.startswith("![")]
    assert figures, "the report shows its figures"
    for line in figures:
        target = report.parent / line.split("](", 1)[1].rstrip(")")
        assert_png(target)
