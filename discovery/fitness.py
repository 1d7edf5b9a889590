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

from discovery.configs import TrainSpec
from discovery.drifts import resolve_drift
from discovery.errors import UserError
from discovery.stats import normalized_score
from discovery.training import compile_learners, run_seeds, seed_keys
from envs.random_policy import random_policy_return
from rl_algos.ppo import SEEDS, HParams, make_train_batch

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
    value, episodes = jax.jit(lambda key: random_policy_return(env, key, RANDOM_ENVS, horizon))(jax.random.PRNGKey(seed))
    if int(episodes) == 0:
        raise UserError(f"a random policy finished no episode of {spec.env} in {horizon:,} steps (its episode limit); "
                        "cannot normalise its scores")
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

    keys: jax.Array  # [validation_seeds] per-seed keys, the same for every task
    tasks: list  # per task: (a CompiledLearners batch of the seeds with the drift's parameters shared, its HParams)
    random_returns: np.ndarray  # [tasks]
    ppo_returns: np.ndarray  # [tasks], on the validation seeds

    def returns(self, drift_params) -> np.ndarray:
        """``[tasks]``: the mean final return of the validation seeds of each task with ``drift_params``."""
        values = []
        for compiled, hparams in self.tasks:
            output = compiled.fetch(jax.block_until_ready(compiled(self.keys, drift_params, hparams)))
            values.append(np.mean(np.asarray(output.final_returns, np.float64)))
        return np.asarray(values, np.float64)

    def score(self, drift_params) -> dict:
        """``score`` = mean over tasks of the random-normalised return (PPO on these seeds = 1)."""
        returns = self.returns(drift_params)
        per_task = normalized_score(returns, self.random_returns, self.ppo_returns)
        return {"score": _finite_or_none(np.mean(per_task)), "per_task": [_finite_or_none(v) for v in per_task],
                "returns": [_finite_or_none(v) for v in returns], "ppo_returns": self.ppo_returns.tolist()}


def build_validation(specs: list[TrainSpec], drift, num_seeds: int, seed: int, random_returns: np.ndarray) -> Validation:
    """Compile the validation batches (through :func:`discovery.training.compile_learners`) and train
    PPO-clip once on the validation seeds."""
    keys = seed_keys(seed + VALIDATION_SEED_OFFSET, num_seeds)
    template = drift.init(jax.random.PRNGKey(0))
    tasks = []
    for spec in specs:
        hparams = HParams.from_config(spec.ppo)
        tasks.append((compile_learners(spec.ppo, spec.make_env(), drift, keys, template, hparams, SEEDS), hparams))
    ppo_returns = [np.nanmean(run_seeds(spec, resolve_drift("ppo_clip"), num_seeds, keys=keys, show_progress=False).final_returns)
                   for spec in specs]
    return Validation(keys, tasks, np.asarray(random_returns, np.float64), np.asarray(ppo_returns, np.float64))


def _finite_or_none(value) -> float | None:
    value = float(np.asarray(value))
    return value if np.isfinite(value) else None
