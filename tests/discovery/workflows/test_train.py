"""Tests of discovery/workflows/train."""

import numpy as np


def test_train_names_diverged_seeds():
    from discovery.workflows.train import diverged_seeds

    loss = np.zeros((3, 5))
    loss[1, 3:] = np.nan
    assert diverged_seeds({"policy_loss": loss, "value_loss": np.zeros((3, 5))}) == [1]
    assert diverged_seeds({"policy_loss": np.zeros((3, 5)), "value_loss": np.zeros((3, 5))}) == []
