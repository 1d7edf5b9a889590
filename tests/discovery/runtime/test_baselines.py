"""Tests of discovery/runtime/baselines."""

import pytest

from discovery.io.configs import load_train_spec
from discovery.runtime.baselines import random_return

MINATAR = ("Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar", "SpaceInvaders-MinAtar")


@pytest.mark.parametrize("env", MINATAR)
def test_every_minatar_game_has_a_random_baseline(env):
    """Freeway's episodes last 2,500 steps: a fixed 1,000-step window saw none of them end."""
    spec, _ = load_train_spec(env, {})
    value = random_return(spec, 0)
    assert value == value and value >= 0.0  # finite (not NaN); MinAtar rewards are non-negative
