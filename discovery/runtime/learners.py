"""Compile, time and watch one batch of learners: the one path from a workflow's learners to the devices.

``train``, ``evaluate``, ``sweep``, ``meta-train`` (references, validation,
``--compare``), ``distill`` and ``bench`` all come through :func:`compile_learners`.
A batch of ``B`` learners (keys × drift parameters × hyper-parameters,
batched along :class:`rl_algos.ppo.BatchAxes`) gets one of two layouts:

- ``learners`` (the default whenever there are at least as many learners as
  devices): :mod:`meta.sharding` cuts the batch into micro-batches of
  ``m = min(DISCOVERY_MICRO_BATCH, max(1, B // 4))`` learners and deals them
  out to the devices, each running its micro-batches one after another. Every
  device runs the same program on the same shapes, so a learner's result
  depends on its inputs and ``m`` (hence on ``B``), never on the device or process count.
- ``envs`` (``train`` with fewer learners than accelerators, one process): each
  learner's envs are split over ``S`` devices, as Brax does, with gradients
  and statistics averaged across them (``make_train(env_axis=...)``).
  Deterministic for a given ``S``; a different ``S`` is a different (equally
  valid) random stream, so this layout is used only where a workflow allows it.

``DISCOVERY_LAYOUT=learners|envs|auto`` forces one; the layout used is part of
every result (``TrainingResult.layout``, ``results.json``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from discovery.io.configs import TrainSpec
from discovery.io.drift_registry import ResolvedDrift
from discovery.runtime import devices as host_devices
from discovery.runtime import distributed
from discovery.runtime.progress import TrainingProgress, status
from meta import sharding
from rl_algos.ppo import SEEDS, BatchAxes, BatchOutput, HParams, PPOConfig
from rl_algos.ppo.batch import make_learner

ENV_AXIS = "envs"  # the mesh axis one learner's envs are split over (layout ``envs``)
MIN_MICRO_BATCHES = 4  # a batch of B learners has micro-batches of min(DISCOVERY_MICRO_BATCH, max(1, B // 4))


@dataclasses.dataclass
class TrainingResult:
    metrics: dict[str, np.ndarray]  # name -> [*batch, num_updates]
    final_returns: np.ndarray  # [*batch]
    env_steps: np.ndarray  # [num_updates]: env steps per learner after each update
    compile_seconds: float
    run_seconds: float
    params: Any = None  # final actor/critic parameters, leaves [*batch, ...]
    devices: int = 1  # devices the batch ran on (all processes together)
    layout: dict = dataclasses.field(default_factory=dict)  # LearnerLayout.describe()

    @property
    def steps_per_second(self) -> float:
        """Environment steps per second, all learners together."""
        return float(self.env_steps[-1] * self.final_returns.size / max(self.run_seconds, 1e-9))


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """The per-seed keys; identical for every drift, so comparisons are paired."""
    return jax.random.split(jax.random.PRNGKey(seed), num_seeds)


@dataclasses.dataclass(frozen=True)
class LearnerLayout:
    """Where a batch of learners runs: whole learners in micro-batches (``items``), or each learner split (``envs``)."""

    kind: str  # "learners" or "envs"
    learners: int
    items: sharding.Layout | None = None  # kind "learners"
    env_shards: int = 1  # kind "envs": devices per learner
    env_mesh: Mesh | None = None

    @property
    def devices(self) -> int:
        return self.items.devices if self.items is not None else self.env_shards

    @property
    def mesh(self) -> Mesh:
        return self.items.mesh if self.items is not None else self.env_mesh

    @property
    def rounds(self) -> int:
        """Micro-batches each device runs one after another."""
        return self.items.per_device if self.items is not None else 1

    @property
    def learners_per_round(self) -> int:
        return self.items.micro_batch * self.items.devices if self.items is not None else self.learners

    def describe(self) -> dict:
        """Plain values for ``results.json``: everything that decides the arithmetic, and where it ran."""
        if self.items is not None:
            return {**self.items.describe(), "kind": "learners"}
        return {
            "kind": "envs",
            "items": self.learners,
            "micro_batch": self.learners,
            "devices": self.env_shards,
            "processes": 1,
            "env_shards": self.env_shards,
        }


def env_shards_for(config: PPOConfig, devices: int) -> int:
    """The most devices (≤ ``devices``) one learner's envs and minibatches divide evenly over."""
    for shards in range(devices, 1, -1):
        if config.num_envs % shards == 0 and config.minibatch_size % shards == 0:
            return shards
    return 1


def plan_learners(
    config: PPOConfig,
    learners: int,
    devices=None,
    choice: str | None = None,
    micro_batch: int | None = None,
    allow_split: bool = False,
) -> LearnerLayout:
    """The layout of ``learners`` learners of ``config`` over ``devices`` (default: every device).

    ``choice`` (default ``DISCOVERY_LAYOUT``): ``auto`` splits learners over
    devices only where the workflow allows it (``allow_split``: ``train``,
    whose users want one agent fast), the devices are accelerators, there are
    fewer learners than devices, in one process, and their envs divide; ``learners`` never splits;
    ``envs`` splits whenever it can. Every other workflow (evaluate, sweep,
    meta-training) therefore gives the same numbers at any device count by default.
    """
    devices = list(jax.devices() if devices is None else devices)
    choice = host_devices.layout_choice() if choice is None else choice
    micro_batch = host_devices.micro_batch() if micro_batch is None else micro_batch
    local = all(device.process_index == jax.process_index() for device in devices)
    # On a CPU the host devices share one machine's cores, and one unsplit learner already keeps ~1.6 of 2 cores
    # busy through XLA's intra-op threads; split, it measured 9 % slower (hopper, docs/PERFORMANCE.md). So `auto`
    # splits only over accelerators, each of which brings compute of its own.
    accelerators = devices[0].platform != "cpu"
    if local and (choice == "envs" or (choice == "auto" and allow_split and accelerators and learners < len(devices))):
        shards = env_shards_for(config, len(devices))
        if shards > 1:
            return LearnerLayout(
                "envs", learners, env_shards=shards, env_mesh=Mesh(np.asarray(devices[:shards]), (ENV_AXIS,))
            )
    # Small batches get smaller micro-batches, so that up to MIN_MICRO_BATCHES devices get work (8 seeds: 4 × 2).
    micro_batch = min(micro_batch, max(1, learners // MIN_MICRO_BATCHES))
    return LearnerLayout("learners", learners, items=sharding.plan(learners, micro_batch, devices))


@dataclasses.dataclass
class CompiledLearners:
    """A batch of learners compiled for its layout: ``__call__(keys, drift_params, hparams)`` runs it on the
    devices (device-resident output), :meth:`fetch` gives host arrays of the real learners."""

    executable: Any
    layout: LearnerLayout
    axes: BatchAxes
    mapped: sharding.CompiledMap | None = None

    @property
    def devices(self) -> int:
        return self.layout.devices

    def __call__(self, keys, drift_params, hparams):
        if self.mapped is not None:
            return self.mapped(keys, drift_params, hparams)
        replicated = NamedSharding(self.layout.env_mesh, PartitionSpec())
        return self.executable(
            *(None if a is None else sharding.place(a, replicated) for a in (keys, drift_params, hparams))
        )

    def fetch(self, output) -> BatchOutput:
        if self.mapped is not None:
            return self.mapped.fetch(output)
        return sharding.fetch(output)


def _split_learners_program(learner, axes: BatchAxes, learners: int):
    """The per-device program of layout ``envs``: the batch's learners (each on its share of envs), vmapped
    unless there is only one."""
    if learners > 1:
        return jax.vmap(learner, in_axes=tuple(axes))

    def one(keys, drift_params, hparams):
        first = [
            None if a is None else (jax.tree.map(lambda x: x[0], a) if axis is not None else a)
            for axis, a in zip(axes, (keys, drift_params, hparams))
        ]
        return jax.tree.map(lambda x: x[None], learner(*first))

    return one


def compile_learners(
    config: PPOConfig,
    env,
    drift,
    keys: jax.Array,
    drift_params,
    hparams: HParams | None,
    axes: BatchAxes = SEEDS,
    layout: LearnerLayout | None = None,
    progress_callback=None,
) -> CompiledLearners:
    """Ahead-of-time compile the batch ``(keys, drift_params, hparams)`` of ``config``'s learners on ``env``.

    The one place where learners meet the devices (see the module docstring).
    ``axes`` says which arguments carry the batch axis (the others are shared).
    """
    learners = sharding.batch_size(axes, (keys, drift_params, hparams))
    layout = plan_learners(config, learners) if layout is None else layout
    if layout.items is not None:
        learner = make_learner(config, env, drift, progress_callback)
        mapped = sharding.compile_map(learner, tuple(axes), (keys, drift_params, hparams), layout.items)
        return CompiledLearners(mapped.executable, layout, axes, mapped)
    learner = make_learner(config, env, drift, progress_callback, env_axis=(ENV_AXIS, layout.env_shards))
    program = jax.shard_map(
        _split_learners_program(learner, axes, learners),
        mesh=layout.env_mesh,
        in_specs=PartitionSpec(),
        out_specs=PartitionSpec(),
        check_vma=False,
    )
    shape = CompiledLearners(None, layout, axes)
    replicated = NamedSharding(layout.env_mesh, PartitionSpec())
    args = [None if a is None else sharding.place(a, replicated) for a in (keys, drift_params, hparams)]
    executable = jax.jit(program).lower(*args).compile()
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
    allow_split: bool = False,
) -> TrainingResult:
    """Compile, then train the batch ``(keys, drift_params, hparams)`` batched along ``axes`` as one call.

    ``allow_split``: a batch smaller than the device count may split each learner over devices (see
    :func:`plan_learners`).

    ``progress``: an existing ``rich`` Progress (:func:`discovery.runtime.progress.make_progress`)
    to add this run's bar to, e.g. under a grid-wide bar; by default the run owns its display.
    """
    env = spec.make_env() if env is None else env
    config = spec.ppo
    learners = sharding.batch_size(axes, (keys, drift_params, hparams))
    layout = plan_learners(config, learners, allow_split=allow_split)
    tracker = None
    if show_progress:
        tracker = TrainingProgress(
            description,
            config.num_updates,
            config.batch_size * layout.learners_per_round,
            progress=progress,
            rounds=layout.rounds,
            parallel=layout.devices if layout.kind == "learners" else layout.env_shards,
        )

    start = time.perf_counter()
    if show_progress:
        split = f", each split over {layout.env_shards} devices" if layout.kind == "envs" else ""
        status(
            f"[dim]compiling {description} ({learners} learner{'s' if learners != 1 else ''}{split}, "
            f"{config.num_updates} updates, "
            f"on {distributed.describe(layout.mesh.devices.flat)})…[/dim]"
        )
    compiled = compile_learners(
        config,
        env,
        drift,
        keys,
        drift_params,
        hparams,
        axes,
        layout,
        progress_callback=tracker.callback if tracker else None,
    )
    compile_seconds = time.perf_counter() - start

    with tracker or contextlib.nullcontext():
        if tracker is not None:
            tracker.start()
        start = time.perf_counter()
        output = jax.block_until_ready(compiled(keys, drift_params, hparams))
        run_seconds = time.perf_counter() - start

    output = compiled.fetch(output)
    env_steps = np.arange(1, config.num_updates + 1, dtype=np.int64) * config.batch_size
    return TrainingResult(
        dict(output.metrics),
        output.final_returns,
        env_steps,
        compile_seconds,
        run_seconds,
        output.params,
        devices=compiled.devices,
        layout=layout.describe(),
    )


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
    keys: jax.Array | None = None,
    allow_split: bool = False,
) -> TrainingResult:
    """``num_seeds`` learners of ``spec`` with one drift (paired keys from ``seed``, or ``keys``), as one call."""
    hparams = HParams.from_config(spec.ppo) if hparams is None else hparams
    keys = seed_keys(seed, num_seeds) if keys is None else keys
    return run_batch(
        spec,
        resolved.drift,
        keys,
        resolved.params,
        hparams,
        SEEDS,
        description=description or f"{spec.env} · {resolved.label}",
        show_progress=show_progress,
        progress=progress,
        env=env,
        allow_split=allow_split,
    )
