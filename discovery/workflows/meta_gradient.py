"""Meta-training a drift by meta-gradients (``outer: meta_gradient``): the outer loop beside ES's.

Each generation is one outer step. On every task, ``agents`` inner learners
each run a window of ``K = unroll`` PPO updates with the drift and are scored
by the actor-critic objective of the updated learner on a fresh rollout
(:mod:`rl_algos.ppo.meta_gradient`); the gradient of the mean objective over
tasks and agents is clipped to ``max_grad_norm`` and Adam steps the drift.

The run uses the ES loop's machinery: the same config file (``outer:
meta_gradient`` and a ``meta_gradient:`` section), a checkpoint every
``checkpoint_every`` generations holding the whole state (drift, Adam, every
agent and its environments), so ``--resume`` is bit-identical; the same
``metrics.jsonl`` columns, validation against PPO on fresh seeds,
``drift.npz`` / ``best_validated_drift.npz`` and so ``ship``. A generation's
``fitness_*`` columns are the agents' mean episodic returns in that window,
random-normalised by the task's references (agents of every age, so it is an
online measure, not a final return).

The agents are split over the devices (``agents`` divisible by the devices
used); the drift and Adam's state are replicated.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import drift_functions
import meta
from discovery.io.artifacts import save_artifact
from discovery.io.configs import TrainSpec
from discovery.reporting.stats import finite_or_none
from discovery.runtime.errors import UserError
from discovery.workflows.fitness import Validation
from discovery.workflows.meta_checkpoints import (
    Checkpoint,
    add_costs,
    all_finite,
    keep_if_best_validated,
    load_tree_checkpoint,
    read_metrics,
    save_tree_checkpoint,
    write_metrics,
)
from discovery.workflows.meta_config import MetaConfig, make_drift, task_specs
from rl_algos.ppo import HParams
from rl_algos.ppo.meta_gradient import MetaGradient, make_meta_gradient

ALGORITHM = "meta_gradient"  # recorded in artifacts where ES runs record their ES algorithm


@struct.dataclass
class OuterState:
    drift_params: object
    opt_state: object
    agents: tuple  # per task: rl_algos.ppo.meta_gradient.Agent, leaves [agents, ...]
    best_fitness: jax.Array  # the best generation mean so far (the ES's best_fitness column)


@dataclasses.dataclass
class MetaGradientRun:
    """Everything the meta-gradient loop needs, built once."""

    config: MetaConfig
    drift: drift_functions.Drift
    specs: list[TrainSpec]
    references: np.ndarray | None  # [tasks, 2]: random, PPO
    run_key: jax.Array
    tasks: list[MetaGradient]
    optimizer: optax.GradientTransformation
    mesh: jax.sharding.Mesh
    step: Callable | None = None  # jitted (state) -> (state, stats)
    validation: Validation | None = None

    @property
    def env_steps_per_generation(self) -> int:
        return sum(task.env_steps_per_window for task in self.tasks) * self.config.meta_gradient.agents

    @property
    def devices(self) -> list:
        return list(self.mesh.devices.flat)


def _mesh(agents: int) -> jax.sharding.Mesh:
    """The devices the agents are split over: as many as divide ``agents`` evenly."""
    devices = jax.devices()
    count = max(d for d in range(1, len(devices) + 1) if agents % d == 0)
    return jax.sharding.Mesh(np.asarray(devices[:count]), (meta.sharding.BATCH_AXIS,))


def build_run(config: MetaConfig, references: np.ndarray | None) -> MetaGradientRun:
    """Check the config and build the per-task meta-gradients (nothing is compiled yet)."""
    drift = make_drift(config)
    specs = task_specs(config)
    settings = config.meta_gradient
    tasks = []
    for index, spec in enumerate(specs):
        try:
            tasks.append(
                make_meta_gradient(
                    spec.ppo,
                    spec.make_env(),
                    drift,
                    unroll=settings.unroll,
                    entropy_coef=settings.entropy_coef,
                    rematerialize=settings.rematerialize,
                )
            )
        except ValueError as error:
            raise UserError(f"task {index + 1} ({spec.env}): meta_gradient.{error}") from None
    optimizer = optax.chain(
        optax.clip_by_global_norm(settings.max_grad_norm),
        optax.adam(settings.learning_rate, b1=settings.adam_b1, b2=settings.adam_b2),
    )
    run = MetaGradientRun(
        config, drift, specs, references, jax.random.PRNGKey(config.seed), tasks, optimizer, _mesh(settings.agents)
    )
    if references is not None:
        run.step = _compile_step(run)
    return run


def initial_state(run: MetaGradientRun) -> OuterState:
    """The drift at its initialisation (PPO-init for the learned families), fresh staggered agents per task."""
    # The drift from the key the ES loop initialises its mean with, so both outer loops start from one drift.
    key_agents, key_drift = jax.random.split(run.run_key)
    params = run.drift.init(key_drift)
    agents = tuple(
        task.init_agents(jax.random.fold_in(key_agents, index), run.config.meta_gradient.agents)
        for index, task in enumerate(run.tasks)
    )
    return OuterState(params, run.optimizer.init(params), agents, jnp.float32(-jnp.inf))


def place(run: MetaGradientRun, state: OuterState) -> OuterState:
    """The state on the run's devices, agents split and the rest replicated, as the compiled step keeps it (a
    state placed otherwise would make the step compile a second time)."""
    return jax.tree.map(meta.sharding.place, state, _shardings(run, state))


def _shardings(run: MetaGradientRun, state: OuterState):
    replicated, split = NamedSharding(run.mesh, P()), NamedSharding(run.mesh, P(meta.sharding.BATCH_AXIS))
    return OuterState(
        jax.tree.map(lambda _: replicated, state.drift_params),
        jax.tree.map(lambda _: replicated, state.opt_state),
        jax.tree.map(lambda _: split, state.agents),
        replicated,
    )


def _compile_step(run: MetaGradientRun) -> Callable:
    hparams = [HParams.from_config(spec.ppo) for spec in run.specs]
    refs = jnp.asarray(run.references, jnp.float32)

    def loss(drift_params, agents):
        values, new_agents, metrics = [], [], []
        for task, task_agents, task_hparams in zip(run.tasks, agents, hparams):
            value, (task_agents, task_metrics) = task.objective(drift_params, task_agents, task_hparams)
            values.append(value)
            new_agents.append(task_agents)
            metrics.append(task_metrics)
        return jnp.mean(jnp.stack(values)), (tuple(new_agents), metrics)

    def step(state: OuterState):
        (meta_loss, (agents, metrics)), grads = jax.value_and_grad(loss, has_aux=True)(state.drift_params, state.agents)
        updates, opt_state = run.optimizer.update(grads, state.opt_state, state.drift_params)
        params = optax.apply_updates(state.drift_params, updates)
        # Each agent's window return as a random-normalised score ([tasks, agents]; NaN where no episode ended).
        returns = jnp.stack([m["episode_return"] for m in metrics])
        scores = (returns - refs[:, :1]) / (refs[:, 1:] - refs[:, :1])
        fitness_mean = jnp.nanmean(jnp.nanmean(scores, axis=1))
        best = jnp.where(jnp.isfinite(fitness_mean), jnp.maximum(state.best_fitness, fitness_mean), state.best_fitness)
        stats = {
            "meta_loss": meta_loss,
            "grad_norm": optax.global_norm(grads),
            "scores": scores,
            "fitness_mean": fitness_mean,
            "best_fitness": best,
            "drift_active": jnp.mean(jnp.stack([jnp.mean(m["drift_active"]) for m in metrics])),
            "approx_kl": jnp.mean(jnp.stack([jnp.mean(m["approx_kl"]) for m in metrics])),
        }
        return OuterState(params, opt_state, agents, best), stats

    template = initial_state(run)  # shapes only; compiled for the placed layout below
    shardings = _shardings(run, template)
    return jax.jit(step, in_shardings=(shardings,), out_shardings=(shardings, NamedSharding(run.mesh, P())))


def step_memory(run: MetaGradientRun) -> dict:
    """Bytes one outer step needs per device, from XLA's compiled program: ``{"temp", "arguments", "outputs",
    "total"}`` (``temp`` is what grows with K: the saved learner states of the window)."""
    compiled = run.step.lower(place(run, initial_state(run))).compile()
    analysis = compiled.memory_analysis()
    temp = int(getattr(analysis, "temp_size_in_bytes", 0))
    arguments = int(getattr(analysis, "argument_size_in_bytes", 0))
    outputs = int(getattr(analysis, "output_size_in_bytes", 0))
    return {"temp": temp, "arguments": arguments, "outputs": outputs, "total": temp + arguments + outputs}


def available_memory(device) -> int | None:
    """Bytes one device can give a program: an accelerator's memory limit, or the host's available memory
    shared by its CPU devices; None where neither is known."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None
    cpu_devices = sum(1 for d in jax.devices() if d.platform == "cpu") or 1
    return available // cpu_devices


def check_memory(run: MetaGradientRun) -> dict:
    """Measure one step's memory and refuse, in one line, a K (``unroll``) that will not fit."""
    memory = step_memory(run)
    limit = available_memory(run.devices[0])
    memory["limit"] = limit
    if limit is not None and memory["total"] > limit:
        settings = run.config.meta_gradient
        raise UserError(
            f"meta_gradient.unroll {settings.unroll} with {settings.agents} agents needs {_gib(memory['total'])} per "
            f"device for one outer step and {_gib(limit)} is available: lower unroll (memory grows with it) or "
            "agents, or keep rematerialize: true"
        )
    return memory


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB"


def run_generations(
    run: MetaGradientRun,
    state: OuterState,
    start: int,
    stop: int,
    out: Path,
    on_generation: Callable[[dict], None] | None = None,
):
    """Outer steps ``start .. stop-1``; checkpoint every ``checkpoint_every`` and at ``stop``."""
    rows = [row for row in read_metrics(out) if row["generation"] < start]
    env_steps = run.env_steps_per_generation
    state = place(run, state)
    for generation in range(start, stop):
        started, cpu_started = time.perf_counter(), time.process_time()
        state, stats = run.step(state)
        stats = jax.tree.map(np.asarray, meta.sharding.fetch(stats))
        if not all_finite(state.drift_params):
            raise UserError(
                f"the drift became non-finite in generation {generation + 1} (meta-gradient norm "
                f"{float(stats['grad_norm']):.3g}); nothing of it was written: start again with a smaller "
                "meta_gradient.learning_rate or max_grad_norm"
            )
        seconds = time.perf_counter() - started
        scores = stats["scores"].reshape(-1)
        row = {
            "generation": generation,
            "fitness_mean": finite_or_none(stats["fitness_mean"]),
            "fitness_max": finite_or_none(np.nanmax(scores)) if np.isfinite(scores).any() else None,
            "fitness_min": finite_or_none(np.nanmin(scores)) if np.isfinite(scores).any() else None,
            "fitness_std": finite_or_none(np.nanstd(scores)) if np.isfinite(scores).any() else None,
            "best_fitness": finite_or_none(stats["best_fitness"]),
            "sigma": None,
            "num_nonfinite": int(np.sum(~np.isfinite(scores))),
            "meta_loss": finite_or_none(stats["meta_loss"]),
            "grad_norm": finite_or_none(stats["grad_norm"]),
            "drift_active": finite_or_none(stats["drift_active"]),
            "approx_kl": finite_or_none(stats["approx_kl"]),
            "seconds": seconds,
            "env_steps_per_second": env_steps / max(seconds, 1e-9),
            "fitness": [finite_or_none(v) for v in scores],
        }
        add_costs(row, rows, env_steps, cpu_started)
        completed = generation + 1
        if run.validation is not None and completed % run.config.validate_every == 0:
            row["validation"] = validate(run, state, rows, out, completed)
        rows.append(row)
        write_metrics(out, rows)
        if completed % run.config.checkpoint_every == 0 or completed == stop:
            host_state = meta.sharding.fetch(state)
            save_tree_checkpoint(out, Checkpoint(completed, host_state, run.references, run.config.to_dict()))
            save_drift(out, run, host_state.drift_params, completed)
        if on_generation is not None:
            on_generation(row)
    return state, rows


def load_state(path: Path, run: MetaGradientRun, config: MetaConfig) -> Checkpoint:
    """A checkpoint's state (see :func:`load_tree_checkpoint` for what is refused)."""
    checkpoint = load_tree_checkpoint(path, jax.eval_shape(lambda: initial_state(run)), config)
    if not all_finite(checkpoint.es_state.drift_params):
        raise UserError(f"checkpoint {path} holds a non-finite drift; resume from an earlier checkpoint")
    return checkpoint


def save_drift(out: Path, run: MetaGradientRun, params, generation: int) -> None:
    """``drift.npz``: the drift the outer loop holds now (there is no population, so no ``best_drift.npz``)."""
    metadata = {
        "label": f"{run.drift.name}-meta-gradient",
        "generation": generation,
        "es_algorithm": ALGORITHM,
        "envs": [task.env for task in run.config.tasks],
    }
    save_artifact(out / "drift.npz", run.drift, jax.tree.map(np.asarray, params), metadata)


def validate(run: MetaGradientRun, state: OuterState, rows: list[dict], out: Path, generation: int) -> dict:
    params = meta.sharding.fetch(state.drift_params)
    result = run.validation.score(params)
    envs = [task.env for task in run.config.tasks]
    keep_if_best_validated(out, run.drift, params, result, rows, generation, ALGORITHM, envs)
    return result


def describe(run: MetaGradientRun) -> str:
    settings = run.config.meta_gradient
    per_device = math.ceil(settings.agents / len(run.devices))
    return (
        f"meta-gradients through K={settings.unroll} updates, {settings.agents} agents per task "
        f"({per_device} per device on {len(run.devices)} device(s)), Adam lr {settings.learning_rate:g}, "
        f"{run.env_steps_per_generation:,} env steps per outer step"
    )
