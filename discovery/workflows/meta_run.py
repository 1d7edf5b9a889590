"""`discovery meta-train` end to end: start or resume a run (one line for every refusal), train its
generations with a progress bar and W&B, plot, and compare the learned drift with PPO and DPO (`--compare`).

The generation loop is :mod:`discovery.workflows.meta_training`; its config and what it writes are
:mod:`~discovery.workflows.meta_config` and :mod:`~discovery.workflows.meta_checkpoints`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.markup import escape

import meta
from discovery.io.drift_registry import discovered, resolve_drift
from discovery.io.outputs import (
    atomic_write_json,
    atomic_write_text,
    claim_run_dir,
    environment_info,
    prepare_run_dir,
)
from discovery.reporting.plots import plot_fitness_curve
from discovery.reporting.stats import mean_ci, paired_difference, reading_of_difference
from discovery.runtime import distributed
from discovery.runtime.baselines import reference_returns
from discovery.runtime.errors import UserError
from discovery.runtime.learners import run_seeds
from discovery.runtime.progress import eta_text, make_progress, set_interrupt_hint, status
from discovery.runtime.wandb_logging import WandbRun, preflight
from discovery.workflows import meta_gradient
from discovery.workflows.fitness import build_validation
from discovery.workflows.meta_checkpoints import (
    current_host,
    host_change_note,
    latest_checkpoint_file,
    load_checkpoint,
    read_metrics,
)
from discovery.workflows.meta_config import load_meta_config, members_per_micro_batch, validation_points
from discovery.workflows.meta_training import MetaRun, build_run, initial_state, run_generations


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

    by_gradient = config.outer == "meta_gradient"
    build = meta_gradient.build_run if by_gradient else build_run
    run_ = build(config, None)  # validates drift, tasks and the outer loop before anything heavy
    preflight(request.wandb)
    if request.resume:
        latest = latest_checkpoint_file(out)
        if latest is not None:
            if by_gradient:
                checkpoint = meta_gradient.load_state(latest, run_, config)
            else:
                checkpoint = load_checkpoint(latest, run_.strategy, config)
            state, start, references = checkpoint.es_state, checkpoint.generation, checkpoint.references
            if config.generations < start:  # config.yaml must never claim fewer generations than the run holds
                raise UserError(
                    f"{out} already has {start} generations; --generations is the total to reach, so "
                    f"{config.generations} would run nothing: give --generations {start + 1} or more to continue"
                )
            status(f"resuming {out} from generation {start} ({latest.name})")
            if note := host_change_note(checkpoint, current_host()):
                status(note)
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
    run_ = build(config, references)
    if config.validate_every:
        points = validation_points(config)
        status(
            f"[dim]validation: PPO-clip on {config.validation_seeds} fresh seeds at each of {len(points)} "
            "settings…[/dim]"
        )
        run_.validation = build_validation(
            [spec for _, _, spec in points],
            run_.drift,
            config.validation_seeds,
            config.seed,
            references[[task for task, _, _ in points], 0],
        )
        status(
            "validation PPO returns: "
            + ", ".join(f"{label} {r:.4g}" for (_, label, _), r in zip(points, run_.validation.ppo_returns))
        )
    if state is None:
        state = meta_gradient.initial_state(run_) if by_gradient else initial_state(run_)

    tasks = ", ".join(t.env for t in config.tasks)
    if by_gradient:
        memory = meta_gradient.check_memory(run_)
        limit = "unknown" if memory["limit"] is None else f"{memory['limit'] / 2**30:.2f} GiB"
        status(
            f"meta-training [bold]{config.drift}[/bold] on {tasks} by {meta_gradient.describe(run_)}; one outer step "
            f"needs {memory['total'] / 2**30:.3f} GiB per device ({memory['temp'] / 2**30:.3f} GiB of it grows "
            f"with K; available {limit}), generations {start}→{config.generations} on "
            f"{distributed.describe(run_.devices)} → {out}"
        )
    else:
        _describe_es_run(config, run_, start, out)
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
        mean, best, sigma, meta_loss = (
            float("nan") if row.get(k) is None else row[k]
            for k in ("fitness_mean", "best_fitness", "sigma", "meta_loss")
        )
        # What moves the drift: the ES's σ, or the meta-gradient's objective.
        mover = f"meta-loss {meta_loss:.4g}" if by_gradient else f"σ {sigma:.3g}"
        progress.update(
            task,
            advance=1,
            rate=f"fit {mean:.3g} best {best:.3g} {mover} · {row['env_steps_per_second']:,.0f} steps/s",
        )
        if not progress.console.is_terminal:
            done = row["generation"] + 1 - start
            status(
                f"  gen {row['generation'] + 1}/{config.generations}: fitness mean {mean:.4g}, max "
                f"{row['fitness_max'] or float('nan'):.4g}, "
                f"best {best:.4g}, {mover}, {row['num_nonfinite']} non-finite, {row['seconds']:.1f}s "
                f"({row['env_steps_per_second']:,.0f} env-steps/s), "
                f"{eta_text(done, config.generations - start, time.perf_counter() - started)}"
            )
        if row.get("draws") and not progress.console.is_terminal:
            status("    drawn: " + "; ".join(_describe_draw(draw) for draw in row["draws"]))
        validation = row.get("validation")
        if validation:
            status(
                f"  validation after gen {row['generation'] + 1}: {'the drift' if by_gradient else 'ES mean'} scores "
                f"{validation['score']:.3f} (PPO = 1) "
                "on "
                f"fresh seeds; returns {', '.join(f'{v:.4g}' for v in validation['returns'])}"
            )
        logged = {k: v for k, v in row.items() if k not in ("fitness", "validation", "draws") and v is not None}
        for draw in row.get("draws") or []:  # one scalar per drawn task: the members' mean score against PPO
            if draw.get("score_mean") is not None:
                logged[f"draw_score/{draw['env']}"] = draw["score_mean"]
        if validation and validation["score"] is not None:
            logged["validation_score"] = validation["score"]
        wandb_run.log(logged, step=row["generation"])

    started = time.perf_counter()
    if start < config.generations:
        status("[dim]compiling the generation (the first one includes compile time)…[/dim]")
        with progress:
            loop = meta_gradient.run_generations if by_gradient else run_generations
            state, rows = loop(run_, state, start, config.generations, out, on_generation)
    else:
        rows = read_metrics(out)
        status(f"{out} already has {start} generations; nothing to run (raise --generations to continue)")
    elapsed = time.perf_counter() - started
    outer_name = f"meta-gradients, K={config.meta_gradient.unroll}" if by_gradient else config.es.algorithm
    if rows:
        plot_fitness_curve(
            rows,
            out / "fitness.png",
            title=f"{config.drift} on {tasks} ({outer_name})",
            normalized=config.uses_reference or by_gradient,
            outer=config.outer,
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
        f"({elapsed:.0f}s this session)\nwrote {out}/metrics.jsonl, checkpoints/, drift.npz, "
        f"{'' if by_gradient else 'best_drift.npz, '}fitness.png"
    )

    if request.compare:
        summary["comparison"] = compare_on_first_task(run_, out, request.compare_seeds, wandb_run)
    atomic_write_json(out / "summary.json", {**summary, "environment": environment_info()})
    wandb_run.summary({k: v for k, v in summary.items() if isinstance(v, (int, float))})
    wandb_run.finish()
    return 0


def _describe_es_run(config, run_: MetaRun, start: int, out: Path) -> None:
    tasks = ", ".join(t.env for t in config.tasks)
    layout = meta.sharding.plan(config.es.population_size, members_per_micro_batch(config))
    devices = (
        f"{distributed.describe(layout.mesh.devices.flat)}, micro-batches of {layout.micro_batch} members "
        f"× {config.seeds} seeds"
    )
    if config.sampling:
        drawn = config.tasks_per_generation or len(config.tasks)
        per_generation = (
            f"{drawn} of {len(config.tasks)} tasks and their settings drawn per generation, PPO beside each draw"
        )
    else:
        per_generation = f"{run_.env_steps_per_generation:,} env steps per generation"
    status(
        f"meta-training [bold]{config.drift}[/bold] on {tasks} with {config.es.algorithm}: population "
        f"{config.es.population_size} × {config.seeds} seeds, {per_generation}, "
        f"generations {start}→{config.generations}, {devices} → {out}"
    )


def _describe_draw(draw: dict) -> str:
    """``CartPole-v1 update_epochs=16 learning_rate=0.0012: members 0.93 × PPO (PPO 312)``."""
    settings = " ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in draw.items()
        if k not in ("task", "env", "ppo_return", "return_mean", "score_mean")
    )
    score, ppo = draw.get("score_mean"), draw.get("ppo_return")
    return f"{draw['env']} {settings}: members score {score or float('nan'):.3g} (PPO {ppo or float('nan'):.4g})"


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
