"""What a drift scores: per-task returns, random-normalised scores, reference returns, validation.

Meta-training's fitness of a drift is the mean over tasks of
``(R − R_random) / (R_ppo − R_random)`` (see :func:`discovery.reporting.stats.normalized_score`),
where ``R`` is the mean final return of ``seeds`` inner learners that use the
drift, and ``R_random`` / ``R_ppo`` are a uniform-random policy's and PPO-clip's
returns on that task, computed once when a run starts and stored in its checkpoints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from discovery.io.configs import TrainSpec
from discovery.io.drift_registry import resolve_drift
from discovery.reporting.stats import finite_or_none, normalized_score
from discovery.runtime.learners import compile_learners, run_seeds, seed_keys
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
        values = jnp.stack(
            [
                jnp.mean(
                    train_batch(jax.random.split(jax.random.fold_in(key, index), num_seeds), drift_params).final_returns
                )
                for index, train_batch in enumerate(batches)
            ]
        )
        return values if refs is None else normalized_score(values, refs[:, 0], refs[:, 1])

    return scores


def make_fitness_fn(specs: list[TrainSpec], drift, num_seeds: int, references: np.ndarray | None) -> Callable:
    """``fitness(key, drift_params) -> ()``: the mean over tasks of :func:`make_task_scores_fn`."""
    scores = make_task_scores_fn(specs, drift, num_seeds, references)
    return lambda key, drift_params: jnp.mean(scores(key, drift_params))


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
        return {
            "score": finite_or_none(np.mean(per_task)),
            "per_task": [finite_or_none(v) for v in per_task],
            "returns": [finite_or_none(v) for v in returns],
            "ppo_returns": self.ppo_returns.tolist(),
        }


def build_validation(
    specs: list[TrainSpec], drift, num_seeds: int, seed: int, random_returns: np.ndarray
) -> Validation:
    """Compile the validation batches (through :func:`discovery.runtime.learners.compile_learners`) and train
    PPO-clip once on the validation seeds."""
    keys = seed_keys(seed + VALIDATION_SEED_OFFSET, num_seeds)
    template = drift.init(jax.random.PRNGKey(0))
    tasks = []
    for spec in specs:
        hparams = HParams.from_config(spec.ppo)
        tasks.append((compile_learners(spec.ppo, spec.make_env(), drift, keys, template, hparams, SEEDS), hparams))
    ppo_returns = [
        np.nanmean(run_seeds(spec, resolve_drift("ppo_clip"), num_seeds, keys=keys, show_progress=False).final_returns)
        for spec in specs
    ]
    return Validation(keys, tasks, np.asarray(random_returns, np.float64), np.asarray(ppo_returns, np.float64))
