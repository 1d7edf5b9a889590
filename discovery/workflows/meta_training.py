"""Meta-training a learned drift with evolution strategies: config, fitness, checkpoints, the loop.

Fitness of a drift = mean episodic return at the end of an inner PPO run that
uses it (``final_return``), averaged over inner seeds; with several tasks (or
``normalize: ppo``) each task's return is first normalised as
``(R − R_random) / (R_ppo − R_random)`` and the scores are averaged (see
:mod:`discovery.workflows.fitness`). Every ``validate_every`` generations the ES mean is
trained on fresh seeds beside PPO-clip on the same seeds; the score is logged
as ``validation`` and the best validated mean is kept as ``best_validated_drift.npz``.

Every generation's key is ``fold_in(run_key, generation)``, so a resumed run
replays exactly the generations an uninterrupted one would have run.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

import drift_functions
import meta
from discovery.io import configs
from discovery.io.artifacts import save_artifact
from discovery.io.configs import TrainSpec
from discovery.io.outputs import (
    atomic_write_text,
    read_npz,
    write_npz,
)
from discovery.reporting.stats import finite_or_none
from discovery.runtime import devices
from discovery.runtime.errors import UserError
from discovery.workflows import task_settings
from discovery.workflows.fitness import SampledFitness, Validation, make_fitness_fn

CHECKPOINT_PREFIX = "gen_"
KEEP_CHECKPOINTS = 3


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    env: str
    overrides: dict  # PPOConfig fields / Brax env options for this task (fixed values)
    sampled: dict = dataclasses.field(default_factory=dict)  # {key: task_settings.Choices | LogUniform}

    def to_dict(self) -> dict:
        return {"env": self.env, "overrides": {**self.overrides, **{k: d.to_yaml() for k, d in self.sampled.items()}}}

    def base_overrides(self) -> dict:
        """The fixed overrides with every distribution at its middle (see :func:`task_settings.base_setting`)."""
        return {**self.overrides, **task_settings.base_setting(self.sampled)}

    def variant_overrides(self) -> list[dict]:
        """One overrides mapping per static variant, the learning rate at its middle."""
        base = self.base_overrides()
        return [{**base, **variant} for variant in task_settings.static_variants(self.sampled)]


@dataclasses.dataclass(frozen=True)
class MetaConfig:
    """One meta-training run (``configs/meta/*.yaml``)."""

    drift: str = "lpo"
    drift_options: dict = dataclasses.field(default_factory=dict)
    tasks: tuple = (TaskConfig("CartPole-v1", {}),)
    es: meta.ESConfig = meta.ESConfig()
    generations: int = 100
    seeds: int = 2
    seed: int = 0
    normalize: str = "auto"  # "auto" (multi-task only), "ppo" (always), "none"
    checkpoint_every: int = 5
    population_chunk: int | None = None
    validate_every: int = 0  # generations between validations; 0: off
    validation_seeds: int = 16
    tasks_per_generation: int | None = None  # draw this many tasks per generation (None: all)

    def to_dict(self) -> dict:
        return {
            "drift": self.drift,
            "drift_options": dict(self.drift_options),
            "tasks": [t.to_dict() for t in self.tasks],
            "es": dataclasses.asdict(self.es),
            "generations": self.generations,
            "seeds": self.seeds,
            "seed": self.seed,
            "normalize": self.normalize,
            "checkpoint_every": self.checkpoint_every,
            "population_chunk": self.population_chunk,
            "validate_every": self.validate_every,
            "validation_seeds": self.validation_seeds,
            "tasks_per_generation": self.tasks_per_generation,
        }

    def identity(self) -> dict:
        """What must match for ``--resume``: everything that changes a generation's result
        (not the number of generations, chunking, checkpoint or validation cadence)."""
        data = self.to_dict()
        for name in ("generations", "population_chunk", "checkpoint_every", "validate_every", "validation_seeds"):
            data.pop(name)
        return data

    @property
    def uses_reference(self) -> bool:
        return self.sampling or self.normalize == "ppo" or (self.normalize == "auto" and len(self.tasks) > 1)

    @property
    def sampling(self) -> bool:
        """Whether generations draw their tasks or settings (then PPO is re-run beside every generation)."""
        return self.tasks_per_generation is not None or any(task.sampled for task in self.tasks)


_SECTIONS = ("tasks", "es", "drift_options")  # meta YAML keys that are not plain MetaConfig values


def meta_targets(drift: str) -> dict[str, dict]:
    """Override targets of ``meta-train``: meta fields, ES fields, ``drift.<option>``, and per-task PPO / Brax env
    options."""
    meta_fields = {k: v for k, v in configs.field_types(MetaConfig).items() if k not in _SECTIONS}
    return {
        "meta": meta_fields,
        "es": configs.field_types(meta.ESConfig),
        "drift": configs.drift_option_types(drift),
        **configs.train_targets(),
    }


def load_meta_config(path: str | None, overrides: dict[str, Any]) -> MetaConfig:
    """Read a meta YAML (see :func:`meta_config_from_dict`) and apply ``--key value`` overrides."""
    return meta_config_from_dict(configs.load_yaml(path) if path else {}, overrides, str(path))


def meta_config_from_dict(data: dict, overrides: dict[str, Any], path: str = "config") -> MetaConfig:
    """Build a :class:`MetaConfig` from a YAML mapping and overrides.

    Overrides are routed by :func:`discovery.io.configs.route_overrides` over
    :func:`meta_targets`: top-level fields (``generations``, ``seeds``, ...),
    ES fields (``population_size``, ``sigma``, ...), ``drift.<option>``, and
    PPO fields / Brax env options applied to every task. ``learning_rate``
    names both an ES and a PPO field: write ``es.learning_rate`` or ``ppo.learning_rate``.
    """
    top_level = {f.name for f in dataclasses.fields(MetaConfig)} - set(_SECTIONS)
    unknown = sorted(set(data) - top_level - set(_SECTIONS))
    if unknown:
        raise UserError(
            f"unknown key(s) {', '.join(unknown)} in {path}; valid keys: "
            f"{', '.join(sorted(top_level | set(_SECTIONS)))}"
        )
    drift_name = str(overrides.get("drift", overrides.get("meta.drift", data.get("drift", MetaConfig.drift))))
    searchable = searchable_families()
    if drift_name not in searchable:
        raise UserError(
            f"meta-training searches a drift's parameters; --drift must be one of {', '.join(searchable)}, got "
            f"{drift_name!r}"
        )
    targets = meta_targets(drift_name)
    routed = configs.route_overrides(overrides, targets)
    top = {k: v for k, v in data.items() if k in top_level} | routed["meta"]
    es_values = dict(data.get("es") or {}) | routed["es"]
    # A config without drift_options gets PPO-initialised networks (the ES then starts at PPO);
    # an explicit mapping, even an empty one, is taken as written.
    if "drift_options" in data:
        yaml_options = data["drift_options"] or {}
    else:
        yaml_options = {"ppo_init": True} if drift_name in ("lpo", "ta_lpo", "ra_lpo") else {}
    drift_options = (
        configs.route_overrides({f"drift.{k}": v for k, v in yaml_options.items()}, targets)["drift"] | routed["drift"]
    )
    task_overrides = routed["ppo"] | routed["env"]
    if "tasks" in data and not data["tasks"]:
        raise UserError(
            f"'tasks' in {path} is empty: list at least one task (e.g. tasks: [{{env: CartPole-v1}}]), "
            "or leave the key out for the CartPole default"
        )
    raw_tasks = data.get("tasks") or [{"env": "CartPole-v1"}]
    if not isinstance(raw_tasks, list) or not all(isinstance(t, dict) and "env" in t for t in raw_tasks):
        raise UserError(f"'tasks' in {path} must be a list of mappings with an 'env' key")
    tasks = tuple(_task_config(index, t, task_overrides, path) for index, t in enumerate(raw_tasks))
    base = MetaConfig(drift_options=drift_options, tasks=tasks)
    config = configs.replace_fields(base, top, "meta config")
    try:
        config = dataclasses.replace(config, es=configs.replace_fields(meta.ESConfig(), es_values, "es"))
    except ValueError as error:
        raise UserError(str(error)) from None
    if config.normalize not in ("auto", "ppo", "none"):
        raise UserError(f"normalize must be auto, ppo or none, got {config.normalize!r}")
    if config.validate_every < 0:
        raise UserError(f"validate_every must be >= 0 (0 turns validation off), got {config.validate_every}")
    for name in ("generations", "seeds", "checkpoint_every", "validation_seeds"):
        if getattr(config, name) < 1:
            raise UserError(f"{name} must be >= 1, got {getattr(config, name)}")
    if config.population_chunk is not None and config.population_chunk < 1:
        raise UserError(f"population_chunk must be >= 1, got {config.population_chunk}")
    if config.tasks_per_generation is not None and not 1 <= config.tasks_per_generation <= len(config.tasks):
        raise UserError(
            f"tasks_per_generation must be between 1 and the number of tasks ({len(config.tasks)}), got "
            f"{config.tasks_per_generation}"
        )
    if config.sampling and config.normalize == "none":
        raise UserError(
            "normalize: none cannot be used with sampled tasks or settings: returns at different settings are only "
            "comparable as scores against PPO at the same setting (use normalize: ppo or auto)"
        )
    return config


def _task_config(index: int, raw: dict, cli_overrides: dict, path: str) -> TaskConfig:
    """One task: fixed overrides (the CLI's win) and the distributions of its sampled settings."""
    where = f"task {index + 1} ({raw['env']}) in {path}"
    overrides = dict(raw.get("overrides") or {})
    unknown = sorted(set(raw) - {"env", "overrides"})
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; a task has keys env, overrides")
    known = {name for target in configs.train_targets().values() for name in target}
    listed = {k: v for k, v in overrides.items() if k in known and k not in cli_overrides}
    fixed, sampled = task_settings.split_sampled(listed, where)
    rest = {k: v for k, v in overrides.items() if k not in listed}  # unknown keys: load_train_spec names them
    return TaskConfig(str(raw["env"]), {**rest, **fixed, **cli_overrides}, sampled)


def searchable_families() -> list[str]:
    """Registered drift families with parameters for the ES to search: the networks (LPO, TA-LPO)
    and the closed forms (PPO-clip's ε, DPO's α and β, ``dpo_poly``'s coefficients)."""
    return [
        name
        for name in drift_functions.registered()
        if jax.tree.leaves(drift_functions.make(name).init(jax.random.PRNGKey(0)))
    ]


def make_drift(config: MetaConfig) -> drift_functions.Drift:
    try:
        return drift_functions.make(config.drift, **config.drift_options)
    except ValueError as error:
        raise UserError(str(error)) from None


def task_specs(config: MetaConfig) -> list[TrainSpec]:
    """Each task at its base setting (its fixed overrides, every distribution at its middle)."""
    return [configs.load_train_spec(task.env, task.base_overrides())[0] for task in config.tasks]


def variant_specs(config: MetaConfig) -> list[list[TrainSpec]]:
    """``[task][variant]``: every static variant of every task (loading each checks it is a valid setting)."""
    specs = []
    for index, task in enumerate(config.tasks):
        per_task = []
        for overrides in task.variant_overrides():
            try:
                per_task.append(configs.load_train_spec(task.env, overrides)[0])
            except UserError as error:
                variant = {k: overrides[k] for k in task.sampled if k in task_settings.STATIC_SAMPLED}
                raise UserError(f"task {index + 1} ({task.env}) at {variant}: {error}") from None
        specs.append(per_task)
    return specs


# ---- checkpoints ----------------------------------------------------------------


@dataclasses.dataclass
class Checkpoint:
    generation: int  # generations completed
    es_state: Any
    references: np.ndarray | None
    config: dict


def checkpoint_path(out: Path, generation: int) -> Path:
    return out / "checkpoints" / f"{CHECKPOINT_PREFIX}{generation:06d}.npz"


def save_checkpoint(out: Path, checkpoint: Checkpoint) -> Path:
    """Atomically write one checkpoint and prune all but the newest few."""
    arrays = {f"es/{k}": v for k, v in meta.state_to_arrays(checkpoint.es_state).items()}
    header = {
        "generation": checkpoint.generation,
        "config": checkpoint.config,
        "references": None if checkpoint.references is None else np.asarray(checkpoint.references).tolist(),
    }
    path = write_npz(checkpoint_path(out, checkpoint.generation), arrays, header)
    for old in sorted((out / "checkpoints").glob(f"{CHECKPOINT_PREFIX}*.npz"))[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return path


def latest_checkpoint_file(out: Path) -> Path | None:
    files = sorted((out / "checkpoints").glob(f"{CHECKPOINT_PREFIX}*.npz"))
    return files[-1] if files else None


def load_checkpoint(path: Path, strategy: meta.Strategy, config: MetaConfig | None = None) -> Checkpoint:
    """Read a checkpoint; any damage is a one-line :class:`UserError` (the file is left as is).

    With ``config``, a checkpoint written under a different config (``config.yaml``
    edited since) is refused as such, naming what differs, before its arrays are read.
    """
    try:
        header, arrays = read_npz(path)
        if header is None:
            raise KeyError("no __header__")
    except Exception as error:
        raise UserError(
            f"corrupt checkpoint {path}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        ) from None
    if config is not None and isinstance(header.get("config"), dict):
        try:
            saved = meta_config_from_dict(header["config"], {}).identity()
        except UserError:
            saved = None
        if saved is not None and saved != config.identity():
            changed = sorted(k for k in saved if saved[k] != config.identity().get(k))
            raise UserError(
                f"the config no longer matches checkpoint {path} (it differs in: {', '.join(changed)}); "
                "was config.yaml edited? restore it, or start a new run with the new config"
            )
    try:
        state = meta.state_from_arrays(strategy, {k[3:]: v for k, v in arrays.items() if k.startswith("es/")})
    except Exception as error:
        raise UserError(
            f"corrupt checkpoint {path}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        ) from None
    if not _all_finite(strategy.mean(state)):
        raise UserError(
            f"checkpoint {path} holds a non-finite ES mean (the run diverged before it was written); "
            "resume from an earlier checkpoint, or start again with a smaller es.learning_rate"
        )
    references = header.get("references")
    return Checkpoint(
        int(header["generation"]), state, None if references is None else np.asarray(references), header["config"]
    )


def _all_finite(tree) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(leaf)))) for leaf in jax.tree.leaves(tree))


# ---- artifacts and logs ------------------------------------------------------------


def save_drift_artifacts(out: Path, drift, strategy: meta.Strategy, state, generation: int, envs: list[str]) -> None:
    """Write ``drift.npz`` (the ES mean) and ``best_drift.npz`` (best member seen); the metadata
    records the meta-training envs, which ``discovery distill --check`` uses by default."""
    mean = jax.tree.map(np.asarray, strategy.mean(state))
    best, best_value = strategy.best(state)
    common = {"generation": generation, "es_algorithm": strategy.config.algorithm, "envs": envs}
    save_artifact(out / "drift.npz", drift, mean, {"label": f"{drift.name}-mean", **common})
    save_artifact(
        out / "best_drift.npz",
        drift,
        jax.tree.map(np.asarray, best),
        {"label": f"{drift.name}-best", "fitness": float(best_value), **common},
    )


def read_metrics(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_metrics(out: Path, rows: list[dict]) -> None:
    """Rewrite ``metrics.jsonl`` atomically (it is small: one line per generation)."""
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in rows))


# ---- the loop ---------------------------------------------------------------------


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


def validation_points(config: MetaConfig) -> list[tuple[int, str, TrainSpec]]:
    """``(task index, label, spec)`` of every setting validation scores the ES mean at: each task at its base
    setting, or, with sampled settings, at every static variant (the learning rate at its middle)."""
    if not config.sampling:
        return [(index, task.env, spec) for index, (task, spec) in enumerate(zip(config.tasks, task_specs(config)))]
    points = []
    for index, (task, per_task) in enumerate(zip(config.tasks, variant_specs(config))):
        for variant, spec in zip(task_settings.static_variants(task.sampled), per_task):
            points.append((index, task.env + "".join(f" {k}={v}" for k, v in variant.items()), spec))
    return points


def members_per_micro_batch(config: MetaConfig) -> int:
    """ES members per vmapped micro-batch: ``population_chunk``, else ``DISCOVERY_MICRO_BATCH`` learners' worth
    (each member trains ``seeds`` learners per task, vmapped inside its fitness)."""
    if config.population_chunk is not None:
        return config.population_chunk
    return max(1, devices.micro_batch() // config.seeds)


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
        else:
            state, stats = meta.run_generation(
                run.strategy, state, key, run.fitness_fn, micro_batch=members_per_micro_batch(run.config)
            )
        if not _all_finite(
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
        previous = rows[-1] if rows else {}
        row["env_steps"] = env_steps
        row["env_steps_total"] = previous.get("env_steps_total", 0) + env_steps
        row["cpu_seconds_total"] = previous.get("cpu_seconds_total", 0.0) + (time.process_time() - cpu_started)
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
        return fitness

    state, stats = meta.run_generation(run.strategy, state, key, None, evaluate=evaluate)
    return state, stats, results


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
    result = run.validation.score(run.strategy.mean(state))
    previous = [r["validation"]["score"] for r in rows if r.get("validation") and r["validation"]["score"] is not None]
    if result["score"] is not None and result["score"] > max(previous, default=-np.inf):
        mean = jax.tree.map(np.asarray, run.strategy.mean(state))
        save_artifact(
            out / "best_validated_drift.npz",
            run.drift,
            mean,
            {
                "label": f"{run.drift.name}-validated",
                "generation": generation,
                "validation": result,
                "es_algorithm": run.strategy.config.algorithm,
                "envs": [task.env for task in run.config.tasks],
            },
        )
    return result
