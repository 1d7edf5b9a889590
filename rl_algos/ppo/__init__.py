"""PPO-family learner with a pluggable drift (Mirror Learning)."""

from rl_algos.ppo.config import HParams, PPOConfig
from rl_algos.ppo.losses import compute_gae, drift_policy_loss, value_loss
from rl_algos.ppo.train import METRIC_NAMES, TrainState, final_return, make_train

__all__ = [
    "HParams",
    "METRIC_NAMES",
    "PPOConfig",
    "TrainState",
    "compute_gae",
    "drift_policy_loss",
    "final_return",
    "make_train",
    "value_loss",
]
