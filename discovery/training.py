"""Train every seed of one (env, drift) pair in a single jitted, vmapped call."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import numpy as np

from discovery.configs import TrainSpec
from discovery.drifts import ResolvedDrift
from discovery.progress import TrainingProgress, status
from rl_algos.ppo import HParams, final_return, make_train


@dataclasses.dataclass
class TrainingResult:
    metrics: dict[str, np.ndarray]  # name -> [seeds, num_updates]
    final_returns: np.ndarray  # [seeds]
    env_steps: np.ndarray  # [num_updates]: env steps per seed after each update
    compile_seconds: float
    run_seconds: float

    @property
    def steps_per_second(self) -> float:
        """Environment steps per second, all seeds together."""
        seeds = self.final_returns.shape[0]
        return float(self.env_steps[-1] * seeds / max(self.run_seconds, 1e-9))


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """The per-seed keys; identical for every drift, so comparisons are paired."""
    return jax.random.split(jax.random.PRNGKey(seed), num_seeds)


def run_seeds(
    spec: TrainSpec,
    resolved: ResolvedDrift,
    num_seeds: int,
    seed: int = 0,
    hparams: HParams | None = None,
    show_progress: bool = True,
    description: str | None = None,
    env: Any = None,
    progress: Any = None,
) -> TrainingResult:
    """Compile, then run ``num_seeds`` learners of ``spec`` with ``resolved`` as one vmapped call.

    ``progress``: an existing ``rich`` Progress (from :func:`discovery.progress.make_progress`)
    to add this run's bar to, e.g. under a grid-wide bar; by default the run owns its display.
    """
    env = spec.make_env() if env is None else env
    config = spec.ppo
    description = description or f"{spec.env} · {resolved.label}"
    tracker = (
        TrainingProgress(description, config.num_updates, config.batch_size * num_seeds, progress=progress)
        if show_progress
        else None
    )
    train = make_train(config, env, resolved.drift, progress_callback=tracker.callback if tracker else None)
    keys = seed_keys(seed, num_seeds)
    hparams = HParams.from_config(config) if hparams is None else hparams
    batched = jax.jit(jax.vmap(train, in_axes=(0, None, None)))

    start = time.perf_counter()
    if show_progress:
        status(f"[dim]compiling {description} ({num_seeds} seeds, {config.num_updates} updates)…[/dim]")
    compiled = batched.lower(keys, resolved.params, hparams).compile()
    compile_seconds = time.perf_counter() - start

    if tracker is not None:
        with tracker:
            tracker.start()
            start = time.perf_counter()
            _, metrics = compiled(keys, resolved.params, hparams)
            metrics = jax.block_until_ready(metrics)
            run_seconds = time.perf_counter() - start
    else:
        start = time.perf_counter()
        _, metrics = jax.block_until_ready(compiled(keys, resolved.params, hparams))
        run_seconds = time.perf_counter() - start

    finals = np.asarray(final_return(metrics, config.final_return_window))
    metrics = {name: np.asarray(value) for name, value in metrics.items()}
    env_steps = np.arange(1, config.num_updates + 1, dtype=np.int64) * config.batch_size
    return TrainingResult(metrics, finals, env_steps, compile_seconds, run_seconds)
