"""The two ends of every normalised score: a uniform-random policy's return and PPO-clip's, per task.

Scores are ``(R − R_random) / (R_ppo − R_random)`` (:func:`discovery.reporting.stats.normalized_score`);
meta-training, validation and ``evaluate`` take both baselines from here.
"""

from __future__ import annotations

import jax
import numpy as np

from discovery.io.configs import TrainSpec
from discovery.io.drift_registry import resolve_drift
from discovery.runtime.errors import UserError
from discovery.runtime.learners import run_seeds
from envs.random_policy import random_policy_return

RANDOM_ENVS = 64  # envs (first episodes) behind every random baseline
RANDOM_MAX_STEPS = 100_000  # the horizon of an env that declares no episode limit
RANDOM_METHOD = "first-episode-of-64-envs"  # in cached baselines' fingerprints: a new method recomputes them


def random_return(spec: TrainSpec, seed: int) -> float:
    """A uniform-random policy's mean return over the first episode of each of 64 envs.

    Each env runs until its episode ends, up to the env's episode limit (its
    time limit: Freeway's 2,500 steps, Brax's ``episode_length``), or
    :data:`RANDOM_MAX_STEPS` steps for an env that declares none.
    """
    env = spec.make_env()
    time_limit = getattr(env, "time_limit", None)
    horizon = int(time_limit) if time_limit else RANDOM_MAX_STEPS
    value, episodes = jax.jit(lambda key: random_policy_return(env, key, RANDOM_ENVS, horizon))(
        jax.random.PRNGKey(seed)
    )
    if int(episodes) == 0:
        raise UserError(
            f"a random policy finished no episode of {spec.env} in {horizon:,} steps (its episode limit); "
            "cannot normalise its scores"
        )
    return float(value)


def reference_returns(specs: list[TrainSpec], num_seeds: int, seed: int) -> np.ndarray:
    """``[tasks, 2]``: a uniform-random policy's and PPO-clip's mean final return on each task."""
    values = []
    for spec in specs:
        random_value = random_return(spec, seed)
        result = run_seeds(
            spec, resolve_drift("ppo_clip"), num_seeds, seed=seed, description=f"reference PPO on {spec.env}"
        )
        ppo_value = float(np.nanmean(result.final_returns))
        if not np.isfinite(ppo_value) or abs(ppo_value - random_value) < 1e-6 * max(1.0, abs(random_value)):
            raise UserError(
                f"cannot normalise {spec.env}: PPO's return {ppo_value:.4g} is no different from a random "
                f"policy's {random_value:.4g}; give the task a budget where PPO learns, or set normalize: none"
            )
        values.append((random_value, ppo_value))
    return np.asarray(values, np.float64)
