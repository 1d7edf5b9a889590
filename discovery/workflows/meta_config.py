"""What a meta-training run is: the typed config of ``configs/meta/*.yaml``, its tasks and their settings.

A :class:`MetaConfig` names the drift family to search, the tasks (each a
:class:`TaskConfig`: an env, fixed PPO / env overrides, and the distributions of
its sampled settings), the ES, and the run's budget and cadences. Everything
here is pure: it reads YAML and overrides and returns values, or raises a
one-line :class:`~discovery.runtime.errors.UserError`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

import drift_functions
import meta
from discovery.io import configs
from discovery.io.configs import TrainSpec
from discovery.runtime import devices
from discovery.runtime.errors import UserError
from discovery.workflows import task_settings


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


OUTER_LOOPS = ("es", "meta_gradient")
TASK_FITNESS = ("score", "rank")


@dataclasses.dataclass(frozen=True)
class MetaGradientConfig:
    """The meta-gradient outer loop (``outer: meta_gradient``; see :mod:`rl_algos.ppo.meta_gradient`).

    Each generation is one outer step: every agent runs ``unroll`` (K) updates, the drift's gradient of the
    meta-objective flows back through them, and Adam (after clipping to ``max_grad_norm``) steps the drift.
    """

    unroll: int = 4  # K: inner updates per window, the truncation of the backpropagation
    agents: int = 8  # inner learners per task, their lifetimes staggered
    learning_rate: float = 1e-3
    max_grad_norm: float = 1.0
    entropy_coef: float = 0.01  # of the meta-objective
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    rematerialize: bool = True  # recompute each inner update in the backward pass (memory ~ K states)

    def __post_init__(self):
        for name in ("unroll", "agents"):
            if getattr(self, name) < 1:
                raise ValueError(f"meta_gradient.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("learning_rate", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"meta_gradient.{name} must be > 0, got {getattr(self, name)}")
        if self.entropy_coef < 0:
            raise ValueError(f"meta_gradient.entropy_coef must be >= 0, got {self.entropy_coef}")
        for name in ("adam_b1", "adam_b2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"meta_gradient.{name} must be in [0, 1), got {getattr(self, name)}")


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
    outer: str = "es"  # the outer loop: "es" (evolution strategies) or "meta_gradient"
    # How a sampled generation's drawn tasks combine into the fitness ES ranks: "score", the mean normalised score;
    # "rank", the mean over drawn tasks of each task's centered ranks, so every task has one equal vote however wide
    # its scores spread (a task where PPO's gap is small otherwise decides the ranking alone).
    task_fitness: str = "score"
    meta_gradient: MetaGradientConfig = MetaGradientConfig()

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
            "outer": self.outer,
            # Written only when set, so runs from before the option keep their identity for --resume.
            **({"task_fitness": self.task_fitness} if self.task_fitness != "score" else {}),
            **({"meta_gradient": dataclasses.asdict(self.meta_gradient)} if self.outer == "meta_gradient" else {}),
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


_SECTIONS = ("tasks", "es", "drift_options", "meta_gradient")  # meta YAML keys that are not plain MetaConfig values


def meta_targets(drift: str) -> dict[str, dict]:
    """Override targets of ``meta-train``: meta fields, ES fields, ``drift.<option>``, and per-task PPO / Brax env
    options."""
    meta_fields = {k: v for k, v in configs.field_types(MetaConfig).items() if k not in _SECTIONS}
    return {
        "meta": meta_fields,
        "es": configs.field_types(meta.ESConfig),
        "meta_gradient": configs.field_types(MetaGradientConfig),
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
    meta_gradient_values = dict(data.get("meta_gradient") or {}) | routed["meta_gradient"]
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
        config = dataclasses.replace(
            config,
            es=configs.replace_fields(meta.ESConfig(), es_values, "es"),
            meta_gradient=configs.replace_fields(MetaGradientConfig(), meta_gradient_values, "meta_gradient"),
        )
    except ValueError as error:
        raise UserError(str(error)) from None
    if config.outer not in OUTER_LOOPS:
        raise UserError(f"outer must be one of {', '.join(OUTER_LOOPS)}, got {config.outer!r}")
    if config.outer == "meta_gradient" and config.sampling:
        raise UserError(
            "outer: meta_gradient trains every task at its fixed settings: sampled settings and "
            "tasks_per_generation are for the ES outer loop (give each task fixed values)"
        )
    if config.task_fitness not in TASK_FITNESS:
        raise UserError(f"task_fitness must be one of {', '.join(TASK_FITNESS)}, got {config.task_fitness!r}")
    if config.task_fitness == "rank" and not (config.sampling and config.outer == "es"):
        raise UserError(
            "task_fitness: rank combines the tasks an ES generation draws: it needs sampled settings or "
            "tasks_per_generation (and outer: es)"
        )
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
