"""Compile, time and watch one batch of learners: the discovery side of ``rl_algos.ppo.make_train_batch``.

``train``, ``evaluate``, ``sweep``, ``meta-train --compare`` and ``bench`` all
come through :func:`compile_batch`, so spreading the batch axis over devices
is written once, there: the ``B`` learners are padded to a multiple of the
device count (copies of the last learner, whose results are dropped) and
sharded over a 1-D mesh of every device (every CPU core with
:mod:`discovery.devices`; every process's devices in a ``--distributed`` run).
Each learner's computation does not depend on which device runs it or on how
many others share that device, so results are bit-identical to one device.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import meta
from discovery import distributed
from discovery.configs import TrainSpec
from discovery.drifts import ResolvedDrift
from discovery.progress import TrainingProgress, status
from rl_algos.ppo import SEEDS, BatchAxes, HParams, make_train_batch

BATCH_AXIS = "batch"


@dataclasses.dataclass
class TrainingResult:
    metrics: dict[str, np.ndarray]  # name -> [*batch, num_updates]
    final_returns: np.ndarray  # [*batch]
    env_steps: np.ndarray  # [num_updates]: env steps per learner after each update
    compile_seconds: float
    run_seconds: float
    params: Any = None  # final actor/critic parameters, leaves [*batch, ...]
    devices: int = 1  # devices the batch was sharded over (all processes together)

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


def batch_mesh(devices=None) -> Mesh:
    """A 1-D mesh (axis ``"batch"``) over ``devices``; by default every device of every process."""
    return Mesh(np.asarray(jax.devices() if devices is None else list(devices)), (BATCH_AXIS,))


def default_mesh(learners: int) -> Mesh:
    """Every device; in one process, only as many as give each device at least two learners
    (:func:`meta.at_least_two_per_device`: a batch of one rounds differently) and never more than ``learners``."""
    return meta.at_least_two_per_device(batch_mesh(), learners)


@dataclasses.dataclass
class CompiledBatch:
    """A batch of ``size`` learners compiled for ``mesh``: call it like ``train_batch``.

    ``__call__(keys, drift_params, hparams)`` pads the batched arguments to
    ``padded`` learners, places them over the mesh (shared arguments are
    replicated) and returns the padded, sharded :class:`BatchOutput`;
    :meth:`fetch` turns that into host arrays of the ``size`` real learners.
    """

    executable: Any
    axes: BatchAxes
    mesh: Mesh
    size: int
    padded: int

    @property
    def devices(self) -> int:
        return self.mesh.size

    def place(self, keys, drift_params, hparams):
        batched = NamedSharding(self.mesh, PartitionSpec(BATCH_AXIS))
        shared = NamedSharding(self.mesh, PartitionSpec())
        placed = []
        for axis, arg in zip(self.axes, (keys, drift_params, hparams)):
            if arg is None:
                placed.append(None)
            elif axis is None:
                placed.append(meta.place(arg, shared))
            else:
                placed.append(meta.place(meta.pad_leading(arg, self.mesh.size)[0], batched))
        return tuple(placed)

    def __call__(self, keys, drift_params, hparams):
        return self.executable(*self.place(keys, drift_params, hparams))

    def fetch(self, output):
        """The output as host numpy arrays of the ``size`` real learners (gathered from every process)."""
        return jax.tree.map(lambda x: x[: self.size], meta.fetch(output))


def compile_batch(train_batch, keys: jax.Array, drift_params, hparams: HParams | None, axes: BatchAxes = SEEDS,
                  mesh: Mesh | None = None) -> CompiledBatch:
    """Ahead-of-time compile ``train_batch(keys, drift_params, hparams)`` for these arguments, sharded over ``mesh``.

    The one place where a batch of learners meets the devices. ``axes`` says
    which arguments carry the batch axis (the others are shared); ``mesh``
    defaults to :func:`batch_mesh` (every device, or only ``B`` of them when
    ``B`` is smaller and one process runs). The batch is padded to a multiple
    of the device count with copies of its last learner.
    """
    size = batch_size(axes, keys, drift_params, hparams)
    mesh = default_mesh(size) if mesh is None else mesh
    padded = size + (-size % mesh.size)
    shape = CompiledBatch(None, axes, mesh, size, padded)
    args = shape.place(keys, drift_params, hparams)
    executable = jax.jit(train_batch, out_shardings=NamedSharding(mesh, PartitionSpec(BATCH_AXIS))).lower(*args).compile()
    return dataclasses.replace(shape, executable=executable)


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
    mesh = default_mesh(learners)
    if show_progress:
        status(f"[dim]compiling {description} ({learners} learners, {config.num_updates} updates, "
               f"on {distributed.describe(mesh.devices.flat)})…[/dim]")
    compiled = compile_batch(train_batch, keys, drift_params, hparams, axes, mesh)
    compile_seconds = time.perf_counter() - start

    with tracker or contextlib.nullcontext():
        if tracker is not None:
            tracker.start()
        start = time.perf_counter()
        output = jax.block_until_ready(compiled(keys, drift_params, hparams))
        run_seconds = time.perf_counter() - start

    output = compiled.fetch(output)
    env_steps = np.arange(1, config.num_updates + 1, dtype=np.int64) * config.batch_size
    return TrainingResult(dict(output.metrics), output.final_returns, env_steps, compile_seconds, run_seconds, output.params,
                          devices=compiled.devices)


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
