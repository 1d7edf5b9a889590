"""Tests of discovery/runtime/progress."""

import re

import numpy as np


def test_eta_text():
    from discovery.runtime.progress import clock, eta_text

    assert clock(3725.4) == "1:02:05"
    assert eta_text(1, 4, 30.0) == "elapsed 0:00:30, eta 0:01:30"
    assert eta_text(0, 4, 3.0) == "elapsed 0:00:03, eta ?"


def test_training_progress_log_lines_carry_rate_elapsed_and_eta(capsys):
    from discovery.runtime.progress import TrainingProgress

    with TrainingProgress("CartPole-v1 · ppo", total_updates=10, steps_per_update=1000) as tracker:
        tracker.start()
        tracker.callback(np.array([10, 10]))
    err = capsys.readouterr().err
    # The line's shape, not its times: how long the test took is not what it checks.
    assert (
        "update 10/10" in err and "env-steps/s" in err and re.search(r"elapsed \d+:\d\d:\d\d, eta \d+:\d\d:\d\d", err)
    )
    columns = [type(c).__name__ for c in tracker.progress.columns]
    assert "TimeElapsedColumn" in columns and "TimeRemainingColumn" in columns


def test_progress_over_micro_batch_rounds_counts_every_round():
    """Two devices each running two micro-batches one after another: the bar covers both rounds."""
    from discovery.runtime.progress import TrainingProgress

    tracker = TrainingProgress("x", 16, 100, rounds=2, parallel=2)
    tracker.start()
    for _device in range(2):
        tracker.callback(16)  # both devices finish their first micro-batch
    tracker.callback(8)
    assert tracker._done == 24 and tracker.total_updates == 32
    assert tracker._where(24) == "update 8/16 of micro-batch round 2/2"
