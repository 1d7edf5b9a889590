"""`discovery compare-runs`: validation curves of several runs in one figure; a run without them is one line."""

import json

import pytest

from discovery.cli import main


def _write_run(path, scores):
    path.mkdir()
    rows = []
    for generation, score in enumerate(scores):
        row = {
            "generation": generation,
            "env_steps_total": 1000 * (generation + 1),
            "cpu_seconds_total": 60.0 * (generation + 1),
        }
        if score is not None:
            row["validation"] = {"score": score}
        rows.append(row)
    (path / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_compare_runs_draws_every_run_and_says_where_each_ended(tmp_path, capsys):
    _write_run(tmp_path / "es", [None, 0.9, None, 1.1])
    _write_run(tmp_path / "mg", [1.0, 0.95])
    out = tmp_path / "figure.png"
    assert (
        main(["compare-runs", str(tmp_path / "es"), str(tmp_path / "mg"), "--labels", "ES", "MG", "--out", str(out)])
        == 0
    )
    assert out.read_bytes()[:4] == b"\x89PNG"
    err = capsys.readouterr().err
    assert "ES: 4 generations" in err and "validation last 1.100 (generation 4), best 1.100" in err
    assert "MG: 2 generations" in err and "best 1.000 (generation 1)" in err


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([None, None], None, "has no validation yet"),
        ([1.0], ["a", "b"], "--labels gives 2 names for 1 runs"),
    ],
)
def test_runs_that_cannot_be_compared_are_one_line(tmp_path, capsys, scores, labels, message):
    _write_run(tmp_path / "run", scores)
    argv = ["compare-runs", str(tmp_path / "run"), "--out", str(tmp_path / "f.png")] + (
        ["--labels", *labels] if labels else []
    )
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err


def test_a_directory_without_metrics_is_one_line(tmp_path, capsys):
    assert main(["compare-runs", str(tmp_path), "--out", str(tmp_path / "f.png")]) == 2
    assert "is not a meta-training run with metrics" in capsys.readouterr().err
