"""Compile, time and watch one batch of learners: the discovery side of ``rl_algos.ppo.make_train_batch``.

``train``, ``evaluate``, ``sweep``, ``meta-train --compare`` and ``bench`` all
come through :func:`compile_batch`, so spreading the batch axis over devices
is written once, there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any

import jax
import numpy as np

from discovery.configs import TrainSpec
from discovery.drifts import ResolvedDrift
from discovery.progress import TrainingProgress, status
from rl_algos.ppo import SEEDS, BatchAxes, HParams, make_train_batch


@dataclasses.dataclass
class TrainingResult:
    metrics: dict[str, np.ndarray]  # name -> [*batch, num_updates]
    final_returns: np.ndarray  # [*batch]
    env_steps: np.ndarray  # [num_updates]: env steps per learner after each update
    compile_seconds: float
    run_seconds: float
    params: Any = None  # final actor/critic parameters, leaves [*batch, ...]

    @property
    def steps_per_second(self) -> float:
        """Environment steps per second, all learners together."""
        return float(self.env_steps[-1] * self.final_returns.size / max(self.run_seconds, 1e-9))


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """The per-seed keys; identical for every drift, so comparisons are paired."""
    return jax.random.split(jax.random.PRNGKey(seed), num_seeds)


def batch_size(axes: BatchAxes, *args) -> int:
    """``B``: the leading axis of the arguments that ``axes`` batches."""
    sizes = {leaf.shape[0] for axis, arg in zip(axes, args) if axis is not None for leaf in jax.tree.leaves(arg)}
    if len(sizes) != 1:
        raise ValueError(f"batched arguments need one common leading axis, got sizes {sorted(sizes)}")
    return sizes.pop()


def compile_batch(train_batch, keys: jax.Array, drift_params, hparams: HParams | None):
    """Ahead-of-time compile ``train_batch(keys, drift_params, hparams)`` for these arguments.

    The one place where a batch of learners meets the devices: today one
    ``jit``; placing the batch axis over a device mesh belongs here.
    """
    return jax.jit(train_batch).lower(keys, drift_params, hparams).compile()


def run_batch(
    spec: TrainSpec,
    drift,
    keys: jax.Array,
    drift_params,
    hparams: HParams | None = None,
    axes: BatchAxes = SEEDS,
    *,
    description: str,
    show_progress: bool = True,
    progress: Any = None,
    env: Any = None,
) -> TrainingResult:
    """Compile, then train the batch ``(keys, drift_params, hparams)`` batched along ``axes`` as one call.

    ``progress``: an existing ``rich`` Progress (:func:`discovery.progress.make_progress`)
    to add this run's bar to, e.g. under a grid-wide bar; by default the run owns its display.
    """
    env = spec.make_env() if env is None else env
    config = spec.ppo
    learners = batch_size(axes, keys, drift_params, hparams)
    tracker = TrainingProgress(description, config.num_updates, config.batch_size * learners, progress=progress) if show_progress else None
    train_batch = make_train_batch(config, env, drift, axes, progress_callback=tracker.callback if tracker else None)

    start = time.perf_counter()
    if show_progress:
        status(f"[dim]compiling {description} ({learners} learners, {config.num_updates} updates)…[/dim]")
    compiled = compile_batch(train_batch, keys, drift_params, hparams)
    compile_seconds = time.perf_counter() - start

    with tracker or contextlib.nullcontext():
        if tracker is not None:
            tracker.start()
        start = time.perf_counter()
        output = jax.block_until_ready(compiled(keys, drift_params, hparams))
        run_seconds = time.perf_counter() - start

    metrics = {name: np.asarray(value) for name, value in output.metrics.items()}
    env_steps = np.arange(1, config.num_updates + 1, dtype=np.int64) * config.batch_size
    params = jax.tree.map(np.asarray, output.params)
    return TrainingResult(metrics, np.asarray(output.final_returns), env_steps, compile_seconds, run_seconds, params)


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
    """``num_seeds`` learners of ``spec`` with one drift (paired keys from ``seed``), as one call."""
    hparams = HParams.from_config(spec.ppo) if hparams is None else hparams
    return run_batch(spec, resolved.drift, seed_keys(seed, num_seeds), resolved.params, hparams, SEEDS,
                     description=description or f"{spec.env} · {resolved.label}", show_progress=show_progress,
                     progress=progress, env=env)
