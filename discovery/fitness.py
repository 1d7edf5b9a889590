"""What a drift scores: per-task returns, random-normalised scores, reference returns, validation.

Meta-training's fitness of a drift is the mean over tasks of
``(R − R_random) / (R_ppo − R_random)`` (see :func:`discovery.stats.normalized_score`),
where ``R`` is the mean final return of ``seeds`` inner learners that use the
drift, and ``R_random`` / ``R_ppo`` are a uniform-random policy's and PPO-clip's
returns on that task, computed once when a run starts and stored in its checkpoints.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

import drift_functions
from discovery.configs import TrainSpec
from discovery.drifts import resolve_drift
from discovery.errors import UserError
from discovery.stats import normalized_score
from discovery.training import run_seeds
from envs.random_policy import random_policy_return
from rl_algos.ppo import SEEDS, make_train_batch

# Validation seeds come from this key; the ES's own seeds are fold_in(PRNGKey(seed), generation)
# and ``--compare`` uses seed + 10_000, so the three never coincide.
VALIDATION_SEED_OFFSET = 20_000


def make_task_scores_fn(specs: list[TrainSpec], drift, num_seeds: int, references: np.ndarray | None) -> Callable:
    """``scores(key, drift_params) -> [tasks]``: each task's mean final return over ``num_seeds``
    learners (keys split from ``fold_in(key, task)``, one :func:`rl_algos.ppo.make_train_batch`
    batch per task), normalised by ``references`` (``[tasks, 2]``: random, PPO) when given.
    """
    batches = [make_train_batch(spec.ppo, spec.make_env(), drift, SEEDS) for spec in specs]
    refs = None if references is None else jnp.asarray(references, jnp.float32)

    def scores(key, drift_params):
        values = jnp.stack([
            jnp.mean(train_batch(jax.random.split(jax.random.fold_in(key, index), num_seeds), drift_params).final_returns)
            for index, train_batch in enumerate(batches)
        ])
        return values if refs is None else normalized_score(values, refs[:, 0], refs[:, 1])

    return scores


def make_fitness_fn(specs: list[TrainSpec], drift, num_seeds: int, references: np.ndarray | None) -> Callable:
    """``fitness(key, drift_params) -> ()``: the mean over tasks of :func:`make_task_scores_fn`."""
    scores = make_task_scores_fn(specs, drift, num_seeds, references)
    return lambda key, drift_params: jnp.mean(scores(key, drift_params))


def random_return(spec: TrainSpec, seed: int) -> float:
    """A uniform-random policy's mean episode return on ``spec``'s env (≥ 64 envs × 1,000 steps)."""
    env = spec.make_env()
    value, episodes = jax.jit(lambda key: random_policy_return(env, key, max(spec.ppo.num_envs, 64), 1000))(
        jax.random.PRNGKey(seed))
    if int(episodes) == 0:
        raise UserError(f"a random policy finished no episode of {spec.env} in 1,000 steps; cannot normalise its scores")
    return float(value)


def reference_returns(specs: list[TrainSpec], num_seeds: int, seed: int) -> np.ndarray:
    """``[tasks, 2]``: a uniform-random policy's and PPO-clip's mean final return on each task."""
    values = []
    for spec in specs:
        random_value = random_return(spec, seed)
        result = run_seeds(spec, resolve_drift("ppo_clip"), num_seeds, seed=seed, description=f"reference PPO on {spec.env}")
        ppo_value = float(np.nanmean(result.final_returns))
        if not np.isfinite(ppo_value) or abs(ppo_value - random_value) < 1e-6 * max(1.0, abs(random_value)):
            raise UserError(f"cannot normalise {spec.env}: PPO's return {ppo_value:.4g} is no different from a random "
                            f"policy's {random_value:.4g}; give the task a budget where PPO learns, or set normalize: none")
        values.append((random_value, ppo_value))
    return np.asarray(values, np.float64)


@dataclasses.dataclass
class Validation:
    """The ES mean on fixed fresh seeds, scored against PPO-clip on the same seeds (paired)."""

    key: jax.Array
    scores_fn: Callable  # jitted (key, drift_params) -> [tasks] raw mean final returns
    random_returns: np.ndarray  # [tasks]
    ppo_returns: np.ndarray  # [tasks], on the validation seeds

    def score(self, drift_params) -> dict:
        """``score`` = mean over tasks of the random-normalised return (PPO on these seeds = 1)."""
        returns = np.asarray(self.scores_fn(self.key, drift_params), np.float64)
        per_task = normalized_score(returns, self.random_returns, self.ppo_returns)
        return {"score": _finite_or_none(np.mean(per_task)), "per_task": [_finite_or_none(v) for v in per_task],
                "returns": [_finite_or_none(v) for v in returns], "ppo_returns": self.ppo_returns.tolist()}


def build_validation(specs: list[TrainSpec], drift, num_seeds: int, seed: int, random_returns: np.ndarray) -> Validation:
    """Compile the validation call and train PPO-clip once on the validation seeds."""
    key = jax.random.PRNGKey(seed + VALIDATION_SEED_OFFSET)
    scores_fn = jax.jit(make_task_scores_fn(specs, drift, num_seeds, None))
    ppo = drift_functions.make("ppo_clip")
    ppo_returns = jax.jit(make_task_scores_fn(specs, ppo, num_seeds, None))(key, ppo.init(jax.random.PRNGKey(0)))
    return Validation(key, scores_fn, np.asarray(random_returns, np.float64), np.asarray(ppo_returns, np.float64))


def _finite_or_none(value) -> float | None:
    value = float(np.asarray(value))
    return value if np.isfinite(value) else None
