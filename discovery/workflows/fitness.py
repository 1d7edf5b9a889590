"""What a drift scores: per-task returns, random-normalised scores, reference returns, validation.

Meta-training's fitness of a drift is the mean over tasks of
``(R − R_random) / (R_ppo − R_random)`` (see :func:`discovery.reporting.stats.normalized_score`),
where ``R`` is the mean final return of ``seeds`` inner learners that use the
drift, and ``R_random`` / ``R_ppo`` are a uniform-random policy's and PPO-clip's
returns on that task, computed once when a run starts and stored in its checkpoints.

With sampled tasks or settings (:mod:`discovery.workflows.task_settings`),
:class:`SampledFitness` scores a generation instead: each drawn task at its
drawn setting, normalised by PPO-clip trained *in the same generation, at the
same setting, on the same seeds* (paired, so the seeds' luck cancels).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import drift_functions
import meta
from discovery.io.configs import TrainSpec
from discovery.io.drift_registry import resolve_drift
from discovery.reporting.stats import finite_or_none, normalized_score
from discovery.runtime.learners import compile_learners, run_seeds, seed_keys
from discovery.workflows.task_settings import Draw
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


# A generation's PPO gap (R_ppo − R_random at the drawn setting) is floored at this fraction of the task's gap at
# its base setting, so a draw where PPO happens to learn little cannot blow one task's scores up over the others'.
REFERENCE_GAP_FLOOR = 0.1


@dataclasses.dataclass
class DrawResult:
    """One drawn task of a generation: its members' mean final returns and PPO's on the same seeds."""

    draw: Draw
    returns: np.ndarray  # [P]
    ppo_return: float
    scores: np.ndarray  # [P], normalised
    env_steps: int  # by the members and PPO together


class SampledFitness:
    """A generation's fitness when tasks or settings are drawn: the mean over the drawn tasks of

        (R − R_random) / max(R_ppo − R_random, 0.1 · gap_base)

    where ``R`` is a member's mean final return over ``seeds`` learners at the
    drawn setting, ``R_ppo`` PPO-clip's on the same seeds and setting (run once
    per drawn task, so it costs ``1/P`` of the members' work), and ``gap_base``
    the task's PPO gap at its base setting (``references``, from the run's start).

    ``variant_specs[t][v]`` is task ``t``'s static variant ``v``; each (task,
    variant) compiles once, for the members and for PPO, and is reused.
    """

    def __init__(self, variant_specs, drift, num_seeds: int, references: np.ndarray, micro_batch: int):
        self.variant_specs = variant_specs
        self.drift = drift
        self.num_seeds = num_seeds
        self.references = np.asarray(references, np.float64)  # [tasks, 2]: random, PPO at the base setting
        self.micro_batch = micro_batch
        self._members: dict = {}
        self._ppo: dict = {}
        self._ppo_drift = drift_functions.make("ppo_clip")

    def _hparams(self, spec, draw: Draw) -> HParams:
        hparams = HParams.from_config(spec.ppo)
        if "learning_rate" in draw.values:
            hparams = hparams.replace(learning_rate=jnp.float32(draw.values["learning_rate"]))
        return hparams

    def _member_fn(self, task: int, variant: int):
        if (task, variant) not in self._members:
            spec = self.variant_specs[task][variant]
            batch = make_train_batch(spec.ppo, spec.make_env(), self.drift, SEEDS)
            seeds = self.num_seeds

            def member_return(key, member):
                params, hparams = member
                return jnp.mean(batch(jax.random.split(key, seeds), params, hparams).final_returns)

            self._members[task, variant] = member_return
        return self._members[task, variant]

    def _ppo_fn(self, task: int, variant: int):
        if (task, variant) not in self._ppo:
            spec = self.variant_specs[task][variant]
            batch = make_train_batch(spec.ppo, spec.make_env(), self._ppo_drift, SEEDS)
            params = self._ppo_drift.init(jax.random.PRNGKey(0))
            self._ppo[task, variant] = jax.jit(lambda keys, hparams: batch(keys, params, hparams).final_returns)
        return self._ppo[task, variant]

    def evaluate(self, draws: list[Draw], population, key: jax.Array) -> tuple[np.ndarray, list[DrawResult]]:
        """``([P] fitness, per-draw results)``; draw ``i`` trains on ``split(fold_in(key, task), seeds)``."""
        size = jax.tree.leaves(population)[0].shape[0]
        results = []
        for draw in draws:
            spec = self.variant_specs[draw.task][draw.variant]
            hparams = self._hparams(spec, draw)
            key_task = jax.random.fold_in(key, draw.task)
            shared = jax.tree.map(lambda x: jnp.broadcast_to(x, (size,) + jnp.shape(x)), hparams)
            returns = np.asarray(
                meta.evaluate_population(
                    self._member_fn(draw.task, draw.variant),
                    (population, shared),
                    key_task,
                    micro_batch=self.micro_batch,
                ),
                np.float64,
            )
            keys = jax.random.split(key_task, self.num_seeds)
            ppo_return = float(np.nanmean(np.asarray(self._ppo_fn(draw.task, draw.variant)(keys, hparams))))
            random_return, base_ppo = self.references[draw.task]
            gap = max(ppo_return - random_return, REFERENCE_GAP_FLOOR * abs(base_ppo - random_return))
            scores = (returns - random_return) / gap
            steps = (size + 1) * self.num_seeds * spec.ppo.env_steps
            results.append(DrawResult(draw, returns, ppo_return, scores, steps))
        fitness = np.mean(np.stack([r.scores for r in results]), axis=0)
        return fitness, results


def task_ranked_fitness(results: list[DrawResult]) -> np.ndarray:
    """``[P]``: the mean over drawn tasks of each task's centered ranks of its members' scores.

    For task ``t`` with scores ``s_t[i]``, ``rank_t[i] = (#{j: s_t[j] < s_t[i]} ordering) / (P − 1) − 0.5`` in
    ``[−0.5, 0.5]`` (a non-finite score ranks last); the fitness is ``mean_t rank_t``. Every task thus moves the ES
    step by the same amount whatever the spread of its scores. A task with no finite score has no vote, and when
    no task has one the fitness is all NaN, so ES skips the generation as it does any all-failed one.
    """
    ranks = []
    for result in results:
        finite = np.isfinite(result.scores)
        if not finite.any():
            continue
        scores = np.where(finite, result.scores, -np.inf)
        order = np.argsort(np.argsort(scores, kind="stable"), kind="stable")
        ranks.append(order / max(len(scores) - 1, 1) - 0.5)
    if not ranks:
        return np.full(len(results[0].scores), np.nan)
    return np.mean(np.stack(ranks), axis=0)


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
