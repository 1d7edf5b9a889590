"""The evaluation grid behind ``discovery evaluate`` (and ``discovery distill --check``).

Every (drift, task) *cell* trains all its seeds in one jitted, vmapped call
(:func:`discovery.runtime.learners.run_seeds`) with that task's settings and the same
seed keys for every drift, so comparisons between drifts on one task are
paired. A *task* is an env with its ``configs/train/`` settings plus
overrides: one per ``--envs`` entry, or the tasks of a suite
(:mod:`discovery.io.suites`, with ``train`` / ``held_out`` roles).

Layout of an evaluation directory::

    evaluation.json              the grid last asked for (drifts, envs, seeds, overrides)
    cells/<task>__<drift>.npz    per-update metrics [seeds, updates] + final returns of one cell
    cells/<task>__<drift>.json   its summary and *fingerprint*; written last, so it marks the cell done
    cells/<task>__random.json    the task's uniform-random-policy return (the score's zero)
    results.csv / .json / .md    one row per drift × task, plus aggregates (per role for a suite)
    curves_<task>.png            learning curves of every drift on that task (mean, bootstrap CI over seeds)
    normalized_scores.png        per-task and aggregate normalised scores

Resuming: a cell whose JSON exists with the same fingerprint (env settings,
drift family/options/parameter hash, seeds, base seed) is loaded, not rerun;
one with a different fingerprint is refused (a different evaluation lives
there) unless ``overwrite`` is set.

Normalisation: each final return becomes ``(R − R_random) / (R_ref − R_random)``
with ``R_ref`` the mean final return of the *reference* drift on the same task
and ``R_random`` a uniform-random policy's (0 = random, 1 = the reference), so
tasks with negative returns rank correctly. The reference is the ``ppo_clip``
entry of the grid (``ppo``; the one with the default ε = 0.2 if there are
several) unless one is named; with none in the grid the normalised columns are blank.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import jax
import numpy as np

from discovery.io import configs
from discovery.io.drift_registry import ResolvedDrift, resolve_drift
from discovery.io.outputs import DamagedFileError, atomic_write_json, prepare_run_dir, read_npz, slug, write_npz
from discovery.io.suites import Suite
from discovery.runtime import distributed
from discovery.runtime.baselines import RANDOM_METHOD, random_return
from discovery.runtime.errors import UserError
from discovery.runtime.learners import TrainingResult, run_seeds
from discovery.runtime.progress import eta_text, make_progress, status
from discovery.workflows.evaluate.cells import Cell, CellResult, Task
from discovery.workflows.evaluate.public_report import write_public_report
from discovery.workflows.evaluate.report import log_cell_to_wandb, log_summary_to_wandb, summarise, write_reports

CELL_DIR = "cells"
GRID_FILE = "evaluation.json"


@dataclasses.dataclass(frozen=True)
class WandbOptions:
    mode: str = "off"
    project: str = "discovery"
    entity: str | None = None
    group: str | None = None


@dataclasses.dataclass
class EvaluationReport:
    out: Path
    rows: list[dict[str, Any]]
    aggregates: dict[str, dict]  # group ("all", "train", "held_out") -> role statistics
    reference: str | None
    files: list[Path]


def params_digest(params: Any) -> str:
    """SHA-256 of a drift's parameter values (float32, in key-path order)."""
    digest = hashlib.sha256()
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    for path, leaf in sorted(leaves, key=lambda item: jax.tree_util.keystr(item[0])):
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
    return digest.hexdigest()[:16]


def env_tasks(env_names: list[str], overrides: dict[str, Any]) -> list[Task]:
    """One task per env id, with its ``configs/train`` settings and the command-line overrides."""
    if len(set(env_names)) != len(env_names):
        raise UserError(f"an environment appears twice in {env_names}")
    tasks = []
    for env in env_names:
        spec, fallback = configs.load_train_spec(env, overrides)
        tasks.append(Task(env, env, spec, fallback))
    return tasks


def suite_tasks(suite: Suite, overrides: dict[str, Any], roles: tuple[str, ...] | None = None) -> list[Task]:
    """The suite's tasks (optionally only some roles); command-line overrides win over the suite's."""
    tasks = []
    for task in suite.tasks:
        if roles is None or task.role in roles:
            spec, fallback = configs.load_train_spec(task.env, {**task.overrides, **overrides})
            tasks.append(Task(task.label, task.env, spec, fallback, task.role))
    return tasks


def plan_cells(drift_texts: list[str], tasks: list[Task]) -> tuple[list[ResolvedDrift], list[Cell]]:
    """Resolve every drift up front (tasks are already resolved), so a typo fails before any training."""
    if not drift_texts:
        raise UserError("empty grid: no drifts given (e.g. --drifts ppo,dpo)")
    if not tasks:
        raise UserError("empty grid: no environments given (e.g. --envs CartPole-v1 or --suite cpu)")
    resolved = unique_labels([resolve_drift(text) for text in drift_texts])
    slugs = [slug(r.label) for r in resolved]
    if len(set(slugs)) != len(slugs):
        raise UserError(f"drift labels {[r.label for r in resolved]} collide as file names; rename an artifact")
    cells = [Cell(task, r, f"{slug(task.label)}__{slug(r.label)}") for task in tasks for r in resolved]
    return resolved, cells


def unique_labels(resolved: list[ResolvedDrift]) -> list[ResolvedDrift]:
    """Refuse a drift given twice; two artifacts with one label get longer, path-derived labels."""
    sources = [r.source for r in resolved]
    for source in sources:
        if sources.count(source) > 1:
            raise UserError(f"drift {source!r} appears twice in the grid; give each drift once")
    labels = [r.label for r in resolved]
    out = []
    for r in resolved:
        if labels.count(r.label) > 1 and r.source.endswith(".npz"):
            r = dataclasses.replace(r, label=str(Path(r.source).with_suffix("")))
        out.append(r)
    labels = [r.label for r in out]
    clash = sorted({label for label in labels if labels.count(label) > 1})
    if clash:
        raise UserError(f"drift label(s) {', '.join(clash)} appear twice in the grid; give each drift once")
    return out


def _episode_hint(spec) -> str:
    """What budget would let episodes end (from the env's episode limit, when it declares one)."""
    limit = getattr(spec.make_env(), "time_limit", None)
    if not limit:
        return "raise --total-timesteps"
    return (
        f"its episodes last up to {int(limit):,} steps: raise --total-timesteps well above "
        f"{int(limit) * spec.ppo.num_envs:,} ({spec.ppo.num_envs} envs × {int(limit):,})"
    )


def refuse_dropping(out: Path, labels: list[str], task_labels: list[str]) -> None:
    """Refuse a rerun that would rewrite ``out``'s results without drifts or tasks the folder already evaluated."""
    path = out / GRID_FILE
    if not path.is_file():
        return
    try:
        previous = json.loads(path.read_text())
        old_labels = [d["label"] for d in previous.get("drifts", [])]
        old_tasks = list(previous.get("tasks", {}))
    except (OSError, ValueError, KeyError, TypeError):
        return  # an unreadable grid.json is rewritten; its cells are checked one by one
    dropped = [label for label in old_labels if label not in labels] + [
        task for task in old_tasks if task not in task_labels
    ]
    if dropped:
        raise UserError(
            f"{out} already holds an evaluation of {', '.join(old_labels)} on {', '.join(old_tasks)}; this run would "
            f"rewrite its results without {', '.join(dropped)} (their cells stay under {CELL_DIR}/): list them "
            "too to add to it, choose another --out, or pass --overwrite to replace its results"
        )


def random_return_of(task: Task, out: Path, seed: int) -> float:
    """The task's uniform-random-policy return, computed once and kept under ``cells/``."""
    path = out / CELL_DIR / f"{slug(task.label)}__random.json"
    settings = task.spec.to_dict()
    settings.pop("source", None)
    expected = {"env": task.env, "train": settings, "seed": seed, "method": RANDOM_METHOD}
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
            if _canonical(saved.get("fingerprint")) == _canonical(expected):
                return float(saved["random_return"])
        except (OSError, ValueError, KeyError):
            pass  # recomputed below: it is cheap and deterministic
    value = random_return(task.spec, seed)
    atomic_write_json(path, {"task": task.label, "random_return": value, "fingerprint": expected})
    return value


def pick_reference(resolved: list[ResolvedDrift], requested: str | None) -> str | None:
    """The label of the drift that scores are normalised by (see module docstring)."""
    if requested:
        for r in resolved:
            if requested in (r.label, r.source):
                return r.label
        raise UserError(f"--reference {requested!r} is not in the grid; drifts: {', '.join(r.label for r in resolved)}")
    ppo = [r for r in resolved if r.drift.name == "ppo_clip"]
    default = [r for r in ppo if abs(float(np.asarray(r.params["epsilon"])) - 0.2) < 1e-6]
    chosen = (default or ppo or [None])[0]
    return chosen.label if chosen is not None else None


def fingerprint(cell: Cell, num_seeds: int, seed: int) -> dict[str, Any]:
    train = cell.spec.to_dict()
    train.pop("source", None)
    return {
        "env": cell.env,
        **({"task": cell.task.label} if cell.task.label != cell.env else {}),
        "train": train,
        "drift_family": cell.drift.drift.name,
        "drift_options": cell.drift.drift.options,
        "drift_params_sha256": params_digest(cell.drift.params),
        "seeds": num_seeds,
        "seed": seed,
    }


def _canonical(data: Any) -> str:
    return json.dumps(json.loads(json.dumps(data, default=str)), sort_keys=True)


def _load_cell(cell: Cell, out: Path, expected: dict, overwrite: bool) -> CellResult | None:
    json_path = out / CELL_DIR / f"{cell.name}.json"
    npz_path = out / CELL_DIR / f"{cell.name}.npz"
    if not json_path.is_file():
        return None
    try:
        saved = json.loads(json_path.read_text())
        _, arrays = read_npz(npz_path)
    except (OSError, ValueError, KeyError) as error:
        if overwrite:
            return None
        reason = str(error) if isinstance(error, DamagedFileError) else f"{type(error).__name__}: {error}"
        raise UserError(
            f"unreadable cell {json_path.with_suffix('')}.{{json,npz}} ({reason}); delete both files to rerun "
            "that cell, or pass --overwrite"
        ) from None
    if _canonical(saved.get("fingerprint")) != _canonical(expected):
        if overwrite:
            return None
        old = saved.get("fingerprint") or {}
        changed = sorted(k for k in set(old) | set(expected) if _canonical(old.get(k)) != _canonical(expected.get(k)))
        raise UserError(
            f"{out} already holds a different result for {cell.task.label} × {cell.label} (differs in: "
            f"{', '.join(changed) or 'format'}); "
            "use another --out, or --overwrite to recompute it"
        )
    return CellResult(
        cell,
        arrays["final_returns"],
        arrays["episode_return"],
        arrays["env_steps"],
        float(saved.get("compile_seconds", 0.0)),
        float(saved.get("run_seconds", 0.0)),
        float(saved.get("wall_seconds", 0.0)),
        resumed=True,
    )


def _save_cell(out: Path, cell: Cell, result: TrainingResult, wall: float, expected: dict) -> None:
    write_npz(
        out / CELL_DIR / f"{cell.name}.npz",
        {"final_returns": result.final_returns, "env_steps": result.env_steps, **result.metrics},
        compressed=True,
    )
    atomic_write_json(
        out / CELL_DIR / f"{cell.name}.json",
        {
            "task": cell.task.label,
            "env": cell.env,
            "drift": cell.label,
            "drift_source": cell.drift.source,
            "fingerprint": expected,
            "final_returns": result.final_returns.tolist(),
            "compile_seconds": result.compile_seconds,
            "run_seconds": result.run_seconds,
            "devices": result.devices,
            "layout": result.layout,
            "wall_seconds": wall,
            "finished": datetime.now().isoformat(timespec="seconds"),
        },
    )


def run_evaluation(
    drift_texts: list[str],
    tasks: list[Task],
    out: str | Path,
    *,
    num_seeds: int,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    reference: str | None = None,
    overwrite: bool = False,
    wandb: WandbOptions = WandbOptions(),
    show_progress: bool = True,
    bootstrap_reps: int = 2000,
    suite: str | None = None,
    report: str | Path | None = None,
) -> EvaluationReport:
    """Train (or load) every cell of the drift × task grid and write the results (module docstring).

    ``overrides`` are recorded in the results (they are already applied to ``tasks``).
    """
    if num_seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {num_seeds}")
    overrides = dict(overrides or {})
    resolved, cells = plan_cells(drift_texts, tasks)
    reference_label = pick_reference(resolved, reference)
    # Several processes: the same cells everywhere, and process 0's finished cells on every process (no shared disk
    # needed).
    distributed.agree(
        "the evaluation grid",
        json.dumps([fingerprint(cell, num_seeds, seed) for cell in cells], sort_keys=True, default=str),
    )
    distributed.mirror(Path(out), [GRID_FILE, CELL_DIR])
    out = prepare_run_dir(out, overwrite=overwrite, resume_marker=GRID_FILE)
    if not overwrite:
        refuse_dropping(out, [r.label for r in resolved], [task.label for task in tasks])
    for task in tasks:
        if task.fallback:
            whose = f"{task.env} is your own env" if ":" in task.env else f"no configs/train/{task.env}.yaml"
            status(
                f"[yellow]{whose}: using the {Path(task.spec.source).stem} family defaults "
                f"({task.spec.source})[/yellow]"
            )
    grid = {
        "drifts": [
            {"label": r.label, "source": r.source, "family": r.drift.name, "options": r.drift.options} for r in resolved
        ],
        "suite": suite,
        "tasks": {task.label: {"role": task.role, **task.spec.to_dict()} for task in tasks},
        "seeds": num_seeds,
        "seed": seed,
        "overrides": {k: str(v) for k, v in overrides.items()},
        "reference": reference_label,
    }
    results: list[CellResult] = []
    todo: list[tuple[Cell, dict]] = []
    for cell in cells:
        expected = fingerprint(cell, num_seeds, seed)
        loaded = _load_cell(cell, out, expected, overwrite)
        if loaded is not None:
            results.append(loaded)
        else:
            todo.append((cell, expected))
    atomic_write_json(
        out / GRID_FILE, grid
    )  # after the cells were checked: a refused grid leaves the directory as it was
    if results:
        status(f"resuming {out}: {len(results)} of {len(cells)} cells already done, skipping them")
    status(
        f"evaluating {len(resolved)} drifts × {len(tasks)} tasks × {num_seeds} seeds: {len(todo)} cells to train → "
        f"{out}"
    )
    random_returns = {task.label: random_return_of(task, out, seed) for task in tasks}

    progress = make_progress() if show_progress else None
    grid_task = progress.add_task("grid", total=len(cells), completed=len(results), rate="") if progress else None
    grid_started, trained_steps = time.perf_counter(), 0
    with progress or contextlib.nullcontext():
        for cell, expected in todo:
            config = cell.spec.ppo
            status(
                f"cell {len(results) + 1}/{len(cells)}: [bold]{cell.task.label}[/bold] × [bold]{cell.label}[/bold] "
                f"({num_seeds} seeds × {config.env_steps:,} env steps)"
            )
            started = time.perf_counter()
            result = run_seeds(
                cell.spec,
                cell.drift,
                num_seeds,
                seed=seed,
                show_progress=show_progress,
                description=f"{cell.task.label} · {cell.label}",
                progress=progress,
            )
            wall = time.perf_counter() - started
            _save_cell(out, cell, result, wall, expected)
            cell_result = CellResult(
                cell,
                result.final_returns,
                result.metrics["episode_return"],
                result.env_steps,
                result.compile_seconds,
                result.run_seconds,
                wall,
                resumed=False,
            )
            results.append(cell_result)
            log_cell_to_wandb(wandb, out, cell, result, num_seeds, seed)
            finite = result.final_returns[np.isfinite(result.final_returns)]
            trained_steps += int(result.env_steps[-1]) * num_seeds
            grid_elapsed = time.perf_counter() - grid_started
            status(
                f"  final return {np.mean(finite) if finite.size else float('nan'):.1f} "
                f"(compile {result.compile_seconds:.1f}s, train {result.run_seconds:.1f}s); grid: "
                f"{len(results) - len(cells) + len(todo)}/{len(todo)} cells to train, "
                f"{eta_text(len(results) - len(cells) + len(todo), len(todo), grid_elapsed)}"
            )
            if not finite.size:
                status(
                    f"[yellow]  no episode of {cell.task.label} ended in its {config.env_steps // config.num_envs:,} "
                    f"steps per env; {_episode_hint(cell.spec)}[/yellow]"
                )
            if progress is not None:
                progress.update(grid_task, advance=1, rate=f"{trained_steps / max(grid_elapsed, 1e-9):,.0f} steps/s")

    order = {cell.name: i for i, cell in enumerate(cells)}
    results.sort(key=lambda r: order[r.cell.name])
    rows, aggregates = summarise(results, tasks, reference_label, random_returns, bootstrap_reps, seed)
    files = write_reports(out, results, rows, aggregates, tasks, reference_label, grid)
    log_summary_to_wandb(wandb, out, grid, rows, aggregates, files)
    if report is not None:
        files.append(write_public_report(Path(report), out, rows, aggregates, tasks, reference_label, grid, resolved))
    return EvaluationReport(out, rows, aggregates, reference_label, files)
