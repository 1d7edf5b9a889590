"""PPO-family learner with a pluggable drift (Mirror Learning)."""

from rl_algos.ppo.batch import MEMBERS, POINTS, SEEDS, BatchAxes, BatchOutput, make_train_batch
from rl_algos.ppo.config import HParams, PPOConfig
from rl_algos.ppo.losses import compute_gae, drift_policy_loss, value_loss
from rl_algos.ppo.train import METRIC_NAMES, TrainState, final_return, make_train

__all__ = [
    "MEMBERS",
    "METRIC_NAMES",
    "POINTS",
    "SEEDS",
    "BatchAxes",
    "BatchOutput",
    "HParams",
    "PPOConfig",
    "TrainState",
    "compute_gae",
    "drift_policy_loss",
    "final_return",
    "make_train",
    "make_train_batch",
    "value_loss",
]
