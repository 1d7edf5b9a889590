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
from datetime import datetime
from pathlib import Path
from typing import Any

import jax
import numpy as np
import yaml
from rich.markup import escape

import drift_functions
import meta
from discovery.io import configs
from discovery.io.artifacts import save_artifact
from discovery.io.configs import TrainSpec
from discovery.io.drift_registry import discovered, resolve_drift
from discovery.io.outputs import (
    atomic_write_json,
    atomic_write_text,
    claim_run_dir,
    environment_info,
    prepare_run_dir,
    read_npz,
    write_npz,
)
from discovery.reporting.plots import plot_fitness_curve
from discovery.reporting.stats import finite_or_none, mean_ci, paired_difference, reading_of_difference
from discovery.runtime import devices, distributed
from discovery.runtime.baselines import reference_returns
from discovery.runtime.errors import UserError
from discovery.runtime.learners import run_seeds
from discovery.runtime.progress import eta_text, make_progress, set_interrupt_hint, status
from discovery.runtime.wandb_logging import WandbRun, preflight
from discovery.workflows.fitness import Validation, build_validation, make_fitness_fn

CHECKPOINT_PREFIX = "gen_"
KEEP_CHECKPOINTS = 3


@dataclasses.dataclass(frozen=True)
class TaskConfig:
    env: str
    overrides: dict  # PPOConfig fields / Brax env options for this task


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

    def to_dict(self) -> dict:
        return {
            "drift": self.drift,
            "drift_options": dict(self.drift_options),
            "tasks": [{"env": t.env, "overrides": dict(t.overrides)} for t in self.tasks],
            "es": dataclasses.asdict(self.es),
            "generations": self.generations,
            "seeds": self.seeds,
            "seed": self.seed,
            "normalize": self.normalize,
            "checkpoint_every": self.checkpoint_every,
            "population_chunk": self.population_chunk,
            "validate_every": self.validate_every,
            "validation_seeds": self.validation_seeds,
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
        return self.normalize == "ppo" or (self.normalize == "auto" and len(self.tasks) > 1)


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
        yaml_options = {"ppo_init": True} if drift_name in ("lpo", "ta_lpo") else {}
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
    tasks = tuple(TaskConfig(str(t["env"]), {**(t.get("overrides") or {}), **task_overrides}) for t in raw_tasks)
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
    return config


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
    return [configs.load_train_spec(task.env, task.overrides)[0] for task in config.tasks]


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

    @property
    def env_steps_per_generation(self) -> int:
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
    fitness_fn = make_fitness_fn(specs, drift, config.seeds, references if config.uses_reference else None)
    return MetaRun(config, drift, strategy, fitness_fn, specs, references, jax.random.PRNGKey(config.seed))


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
            "env_steps_per_second": run.env_steps_per_generation / max(seconds, 1e-9),
            "fitness": [finite_or_none(v) for v in fitness],
        }
        previous = rows[-1] if rows else {}
        row["env_steps_total"] = previous.get("env_steps_total", 0) + run.env_steps_per_generation
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


# ---- the `discovery meta-train` workflow ----------------------------------------


@dataclasses.dataclass(frozen=True)
class MetaTrainRequest:
    """What `discovery meta-train` asks for (its parsed arguments)."""

    compare: Any = None
    compare_seeds: Any = None
    config: Any = None
    out: Any = None
    overwrite: Any = None
    resume: Any = None
    wandb: Any = None
    wandb_entity: Any = None
    wandb_group: Any = None
    wandb_project: Any = None
    overrides: Any = None


def meta_train(request: MetaTrainRequest) -> int:
    """Run `discovery meta-train` for ``request``; a user error raises :class:`UserError`."""
    references = None
    state = None
    start = 0
    if request.resume:
        if request.out and Path(request.out).resolve() != Path(request.resume).resolve():
            raise UserError(
                f"--resume {request.resume} continues that run in its own directory, so --out {request.out} would be "
                "ignored; "
                f"drop --out (to branch the run, copy {request.resume} to {request.out} and pass --resume "
                f"{request.out})"
            )
        out = Path(request.resume)
        if distributed.active():
            out = _mirror_resume_dir(out)
        if not out.is_dir():
            raise UserError(f"--resume directory {out} does not exist")
        if not (out / "config.yaml").is_file():
            raise UserError(f"--resume directory {out} is not a meta-training run (no config.yaml)")
        if distributed.is_main():
            claim_run_dir(out)  # two resumes of one run would write over each other
        stored = load_meta_config(str(out / "config.yaml"), {})
        config = load_meta_config(request.config or str(out / "config.yaml"), request.overrides)
        if config.identity() != stored.identity():
            changed = sorted(k for k in stored.identity() if stored.identity()[k] != config.identity().get(k))
            raise UserError(
                f"--resume {out} was started with a different config (differs in: {', '.join(changed)}); "
                "only generations, population_chunk and checkpoint_every may change on resume"
            )
    else:
        if not request.config:
            raise UserError("--config is required (e.g. configs/meta/cartpole_demo.yaml), or --resume DIR")
        config = load_meta_config(request.config, request.overrides)
        out = Path(request.out or f"runs/meta_{datetime.now():%Y%m%d-%H%M%S}")
    distributed.agree("the meta-training config", json.dumps(config.identity(), sort_keys=True, default=str))

    run_ = build_run(config, None)  # validates drift, tasks and ES before anything heavy
    preflight(request.wandb)
    if request.resume:
        latest = latest_checkpoint_file(out)
        if latest is not None:
            checkpoint = load_checkpoint(latest, run_.strategy, config)
            state, start, references = checkpoint.es_state, checkpoint.generation, checkpoint.references
            if config.generations < start:  # config.yaml must never claim fewer generations than the run holds
                raise UserError(
                    f"{out} already has {start} generations; --generations is the total to reach, so "
                    f"{config.generations} would run nothing: give --generations {start + 1} or more to continue"
                )
            status(f"resuming {out} from generation {start} ({latest.name})")
        else:
            status(f"no checkpoint in {out} yet: starting it from generation 0")
    else:
        out = prepare_run_dir(out, overwrite=request.overwrite)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    set_interrupt_hint(
        f"`discovery meta-train --resume {out}` continues this run from its last checkpoint "
        f"(one every {config.checkpoint_every} generations)"
    )

    if references is None or np.ndim(references) != 2:  # runs from before random normalisation stored PPO's only
        references = reference_returns(run_.specs, config.seeds, config.seed)
    status(
        "reference returns (random policy → PPO-clip): "
        + ", ".join(f"{s.env} {r[0]:.4g} → {r[1]:.4g}" for s, r in zip(run_.specs, references))
    )
    run_ = build_run(config, references)
    if config.validate_every:
        status(f"[dim]validation: PPO-clip on {config.validation_seeds} fresh seeds per task…[/dim]")
        run_.validation = build_validation(
            run_.specs, run_.drift, config.validation_seeds, config.seed, references[:, 0]
        )
        status(
            "validation PPO returns: "
            + ", ".join(f"{s.env} {r:.4g}" for s, r in zip(run_.specs, run_.validation.ppo_returns))
        )
    if state is None:
        state = initial_state(run_)

    layout = meta.sharding.plan(config.es.population_size, members_per_micro_batch(config))
    devices = (
        f"{distributed.describe(layout.mesh.devices.flat)}, micro-batches of {layout.micro_batch} members "
        f"× {config.seeds} seeds"
    )
    tasks = ", ".join(t.env for t in config.tasks)
    status(
        f"meta-training [bold]{config.drift}[/bold] on {tasks} with {config.es.algorithm}: population "
        f"{config.es.population_size} × {config.seeds} seeds, {run_.env_steps_per_generation:,} env steps per "
        "generation, "
        f"generations {start}→{config.generations}, {devices} → {out}"
    )
    wandb_run = WandbRun(
        request.wandb,
        out,
        project=request.wandb_project,
        entity=request.wandb_entity,
        group=request.wandb_group,
        name=out.name,
        config=config.to_dict(),
        job_type="meta-train",
    )
    progress = make_progress()
    task = progress.add_task("generations", total=config.generations, completed=start, rate="")

    def on_generation(row):
        mean, best, sigma = (
            row[k] if row[k] is not None else float("nan") for k in ("fitness_mean", "best_fitness", "sigma")
        )
        progress.update(
            task,
            advance=1,
            rate=f"fit {mean:.3g} best {best:.3g} σ {sigma:.3g} · {row['env_steps_per_second']:,.0f} steps/s",
        )
        if not progress.console.is_terminal:
            done = row["generation"] + 1 - start
            status(
                f"  gen {row['generation'] + 1}/{config.generations}: fitness mean {mean:.4g}, max "
                f"{row['fitness_max'] or float('nan'):.4g}, "
                f"best {best:.4g}, σ {sigma:.3g}, {row['num_nonfinite']} non-finite, {row['seconds']:.1f}s "
                f"({row['env_steps_per_second']:,.0f} env-steps/s), "
                f"{eta_text(done, config.generations - start, time.perf_counter() - started)}"
            )
        validation = row.get("validation")
        if validation:
            status(
                f"  validation after gen {row['generation'] + 1}: ES mean scores {validation['score']:.3f} (PPO = 1) "
                "on "
                f"fresh seeds; returns {', '.join(f'{v:.4g}' for v in validation['returns'])}"
            )
        logged = {k: v for k, v in row.items() if k not in ("fitness", "validation") and v is not None}
        if validation and validation["score"] is not None:
            logged["validation_score"] = validation["score"]
        wandb_run.log(logged, step=row["generation"])

    started = time.perf_counter()
    if start < config.generations:
        status("[dim]compiling the generation (the first one includes compile time)…[/dim]")
        with progress:
            state, rows = run_generations(run_, state, start, config.generations, out, on_generation)
    else:
        rows = read_metrics(out)
        status(f"{out} already has {start} generations; nothing to run (raise --generations to continue)")
    elapsed = time.perf_counter() - started
    if rows:
        plot_fitness_curve(
            rows,
            out / "fitness.png",
            title=f"{config.drift} on {tasks} ({config.es.algorithm})",
            normalized=config.uses_reference,
        )
    summary = {
        "generations": config.generations,
        "seconds_this_session": elapsed,
        "references": references,
        "final_fitness_mean": rows[-1]["fitness_mean"] if rows else None,
        "best_fitness": rows[-1]["best_fitness"] if rows else None,
    }
    status(
        f"done: {len(rows)} generations, last mean fitness {summary['final_fitness_mean']}, best "
        f"{summary['best_fitness']} "
        f"({elapsed:.0f}s this session)\nwrote {out}/metrics.jsonl, checkpoints/, drift.npz, best_drift.npz, "
        "fitness.png"
    )

    if request.compare:
        summary["comparison"] = compare_on_first_task(run_, out, request.compare_seeds, wandb_run)
    atomic_write_json(out / "summary.json", {**summary, "environment": environment_info()})
    wandb_run.summary({k: v for k, v in summary.items() if isinstance(v, (int, float))})
    wandb_run.finish()
    return 0


def _mirror_resume_dir(out: Path) -> Path:
    """In a multi-process run: process 0's ``out`` (config, checkpoints, metrics) copied into every other
    process's private directory, so hosts need no shared file system; process 0 keeps ``out``."""
    exists = distributed.broadcast_json(out.is_dir() if distributed.is_main() else None)
    if not exists:
        return out  # every process then reports the missing directory
    local = out if distributed.is_main() else distributed.private_dir() / "resume"
    distributed.mirror(local, ["config.yaml", "metrics.jsonl", "checkpoints"])
    return local


def compare_on_first_task(run_: MetaRun, out: Path, num_seeds: int, wandb_run) -> dict:
    """Train the freshly learned drift (ES mean), every shipped discovered drift, PPO and DPO on the
    first task at the meta-training budget, on fresh paired seeds, and say what the table shows."""
    spec = run_.specs[0]
    # Fresh seeds, disjoint from the ones the ES saw (those were fold_in(run_key, generation)).
    seed = run_.config.seed + 10_000
    rows = []
    for text in [str(out / "drift.npz"), *discovered(), "ppo", "dpo"]:
        resolved = resolve_drift(text)
        label = "learned (this run)" if text == str(out / "drift.npz") else resolved.label
        result = run_seeds(spec, resolved, num_seeds, seed=seed, description=f"compare {label}")
        mean, low, high = mean_ci(result.final_returns)
        rows.append({"drift": label, "mean": mean, "ci95": [low, high], "per_seed": result.final_returns.tolist()})
    ppo = next(r for r in rows if r["drift"] == "ppo")
    readings = [
        reading_of_difference(r["drift"], "PPO", paired_difference(r["per_seed"], ppo["per_seed"], seed=seed))
        for r in rows
        if r["drift"] not in ("ppo",)
    ]
    width = max(len(r["drift"]) for r in rows)
    lines = [
        f"{spec.env}, {spec.ppo.env_steps:,} steps, {num_seeds} fresh seeds, the same for every drift (final return, "
        "95% CI):"
    ]
    lines += [f"  {r['drift']:<{width}}  {r['mean']:8.1f}  [{r['ci95'][0]:.1f}, {r['ci95'][1]:.1f}]" for r in rows]
    lines += ["", "Reading:"] + [f"  {line}" for line in readings]
    status(escape("\n".join(lines)))
    atomic_write_json(
        out / "comparison.json",
        {
            "env": spec.env,
            "env_steps": spec.ppo.env_steps,
            "seeds": num_seeds,
            "seed": seed,
            "rows": rows,
            "readings": readings,
        },
    )
    wandb_run.log_table(
        "comparison", ["drift", "mean", "ci_low", "ci_high"], [[r["drift"], r["mean"], *r["ci95"]] for r in rows]
    )
    return {"env": spec.env, "rows": rows, "readings": readings}
