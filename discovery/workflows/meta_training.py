"""Meta-training a learned drift with evolution strategies: the generation loop.

Fitness of a drift = mean episodic return at the end of an inner PPO run that
uses it (``final_return``), averaged over inner seeds; with several tasks (or
``normalize: ppo``) each task's return is first normalised as
``(R − R_random) / (R_ppo − R_random)`` and the scores are averaged (see
:mod:`discovery.workflows.fitness`). Every ``validate_every`` generations the ES mean is
trained on fresh seeds beside PPO-clip on the same seeds; the score is logged
as ``validation`` and the best validated mean is kept as ``best_validated_drift.npz``.

Every generation's key is ``fold_in(run_key, generation)``, so a resumed run
replays exactly the generations an uninterrupted one would have run.

The run's config is :mod:`discovery.workflows.meta_config`; what it writes
(checkpoints, artifacts, metrics) is :mod:`discovery.workflows.meta_checkpoints`.
Their names are re-exported here, so ``meta_training`` is the one import a
caller of the whole workflow needs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

import drift_functions
import meta
from discovery.io.configs import TrainSpec
from discovery.reporting.stats import finite_or_none
from discovery.runtime.errors import UserError
from discovery.workflows import task_settings
from discovery.workflows.fitness import SampledFitness, Validation, make_fitness_fn, task_ranked_fitness
from discovery.workflows.meta_checkpoints import (  # noqa: F401  (re-exported)
    CHECKPOINT_PREFIX,
    KEEP_CHECKPOINTS,
    Checkpoint,
    add_costs,
    all_finite,
    checkpoint_path,
    keep_if_best_validated,
    latest_checkpoint_file,
    load_checkpoint,
    read_metrics,
    save_checkpoint,
    save_drift_artifacts,
    write_metrics,
)
from discovery.workflows.meta_config import (  # noqa: F401  (re-exported)
    MetaConfig,
    TaskConfig,
    load_meta_config,
    make_drift,
    members_per_micro_batch,
    meta_config_from_dict,
    meta_targets,
    searchable_families,
    task_specs,
    validation_points,
    variant_specs,
)


@dataclasses.dataclass
class MetaRun:
    """Everything the generation loop needs, built once."""

    config: MetaConfig
    drift: drift_functions.Drift
    strategy: meta.Strategy
    fitness_fn: Callable
    specs: list[TrainSpec]
    references: np.ndarray | None
    run_key: jax.Array
    validation: Validation | None = None
    sampled: SampledFitness | None = None  # with sampled tasks / settings, in place of fitness_fn

    @property
    def env_steps_per_generation(self) -> int:
        """Env steps of one generation at the base settings (a sampled generation counts its own)."""
        per_member = sum(spec.ppo.env_steps for spec in self.specs) * self.config.seeds
        return per_member * self.config.es.population_size


def build_run(config: MetaConfig, references: np.ndarray | None) -> MetaRun:
    drift = make_drift(config)
    specs = task_specs(config)
    template = drift.init(jax.random.PRNGKey(0))
    try:
        strategy = meta.make_strategy(config.es, template)
    except ValueError as error:
        raise UserError(str(error)) from None
    run_key = jax.random.PRNGKey(config.seed)
    if config.sampling:
        variants = variant_specs(config)  # loading every variant checks it is a valid setting, before anything runs
        sampled = None
        if references is not None:
            sampled = SampledFitness(variants, drift, config.seeds, references, members_per_micro_batch(config))
        return MetaRun(config, drift, strategy, None, specs, references, run_key, sampled=sampled)
    fitness_fn = make_fitness_fn(specs, drift, config.seeds, references if config.uses_reference else None)
    return MetaRun(config, drift, strategy, fitness_fn, specs, references, run_key)


def initial_state(run: MetaRun):
    key_init, key_mean = jax.random.split(run.run_key)  # generation keys are fold_in(run_key, g)
    return run.strategy.init(key_init, run.drift.init(key_mean))


def run_generations(
    run: MetaRun, state, start: int, stop: int, out: Path, on_generation: Callable[[dict], None] | None = None
):
    """Run generations ``start .. stop-1``; checkpoint every ``checkpoint_every`` and at ``stop``."""
    rows = [row for row in read_metrics(out) if row["generation"] < start]
    for generation in range(start, stop):
        started, cpu_started = time.perf_counter(), time.process_time()
        key = jax.random.fold_in(run.run_key, generation)
        draws, env_steps = None, run.env_steps_per_generation
        if run.sampled is not None:
            state, stats, draws = sampled_generation(run, state, key)
            env_steps = sum(result.env_steps for result in draws)
            if run.config.task_fitness == "rank":
                stats = score_stats(stats, draws, rows)
        else:
            state, stats = meta.run_generation(
                run.strategy, state, key, run.fitness_fn, micro_batch=members_per_micro_batch(run.config)
            )
        if not all_finite(
            run.strategy.mean(state)
        ):  # nothing of this generation is written: the last checkpoint stays good
            raise UserError(
                f"the ES mean became non-finite in generation {generation + 1} (the ES step diverged; "
                f"es.learning_rate {run.config.es.learning_rate:g}); nothing of it was written: start again "
                "with a smaller es.learning_rate"
            )
        fitness = np.asarray(stats.fitness)
        seconds = time.perf_counter() - started
        row = {
            "generation": generation,
            "fitness_mean": finite_or_none(stats.fitness_mean),
            "fitness_max": finite_or_none(stats.fitness_max),
            "fitness_min": finite_or_none(stats.fitness_min),
            "fitness_std": finite_or_none(stats.fitness_std),
            "best_fitness": finite_or_none(stats.best_fitness),
            "sigma": finite_or_none(stats.sigma),
            "num_nonfinite": int(stats.num_nonfinite),
            "seconds": seconds,
            "env_steps_per_second": env_steps / max(seconds, 1e-9),
            "fitness": [finite_or_none(v) for v in fitness],
        }
        if draws is not None:
            row["draws"] = [draw_row(run, result) for result in draws]
        add_costs(row, rows, env_steps, cpu_started)
        completed = generation + 1
        if run.validation is not None and completed % run.config.validate_every == 0:
            row["validation"] = validate(run, state, rows, out, completed)
        rows.append(row)
        write_metrics(out, rows)
        if completed % run.config.checkpoint_every == 0 or completed == stop:
            save_checkpoint(out, Checkpoint(completed, state, run.references, run.config.to_dict()))
            save_drift_artifacts(
                out, run.drift, run.strategy, state, completed, [task.env for task in run.config.tasks]
            )
        if on_generation is not None:
            on_generation(row)
    return state, rows


def sampled_generation(run: MetaRun, state, key: jax.Array):
    """One generation at this generation's draw of tasks and settings; returns ``(state, stats, draw results)``."""
    draws = task_settings.draw_settings(
        key, [task.sampled for task in run.config.tasks], run.config.tasks_per_generation
    )
    results = []

    def evaluate(population, key_eval):
        fitness, per_draw = run.sampled.evaluate(draws, population, key_eval)
        results.extend(per_draw)
        return task_ranked_fitness(per_draw) if run.config.task_fitness == "rank" else fitness

    state, stats = meta.run_generation(run.strategy, state, key, None, evaluate=evaluate)
    return state, stats, results


def score_stats(stats: meta.GenerationStats, results, rows: list[dict]) -> meta.GenerationStats:
    """With ``task_fitness: rank`` ES ranks members by mean task rank; what a run reports stays the mean score
    (the best is the best member's mean score so far), so its metrics read like any other run's."""
    scores = np.mean(np.stack([result.scores for result in results]), axis=0)
    finite = scores[np.isfinite(scores)]
    if finite.size == 0:
        summary = [np.nan] * 4
    else:
        summary = [finite.mean(), finite.max(), finite.min(), finite.std()]
    earlier = [row["best_fitness"] for row in rows if row.get("best_fitness") is not None]
    best = max(earlier + ([summary[1]] if finite.size else []), default=np.nan)
    mean, fmax, fmin, std = (np.float32(value) for value in summary)
    return stats._replace(
        fitness_mean=mean,
        fitness_max=fmax,
        fitness_min=fmin,
        fitness_std=std,
        best_fitness=np.float32(best),
        fitness=scores.astype(np.float32),
    )


def draw_row(run: MetaRun, result) -> dict:
    """What ``metrics.jsonl`` records of one drawn task: the draw, PPO's return beside it, the members' mean."""
    return {
        **result.draw.to_json(run.config.tasks[result.draw.task].env),
        "ppo_return": finite_or_none(result.ppo_return),
        "return_mean": finite_or_none(np.nanmean(result.returns)),
        "score_mean": finite_or_none(np.nanmean(result.scores)),
    }


def validate(run: MetaRun, state, rows: list[dict], out: Path, generation: int) -> dict:
    """Score the ES mean on the validation seeds; keep it as ``best_validated_drift.npz`` if it is the best so far."""
    mean = run.strategy.mean(state)
    result = run.validation.score(mean)
    envs = [task.env for task in run.config.tasks]
    keep_if_best_validated(out, run.drift, mean, result, rows, generation, run.strategy.config.algorithm, envs)
    return result
