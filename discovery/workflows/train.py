"""The `discovery train` workflow."""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.markup import escape

from discovery.io import configs
from discovery.io.drift_registry import resolve_drift
from discovery.io.outputs import atomic_write_csv, atomic_write_json, environment_info, prepare_run_dir, slug
from discovery.reporting.plots import plot_learning_curves
from discovery.reporting.stats import mean_ci
from discovery.runtime.errors import UserError
from discovery.runtime.learners import run_seeds
from discovery.runtime.progress import status
from discovery.runtime.wandb_logging import WandbRun, preflight
from rl_algos.ppo import METRIC_NAMES

# ---- the `discovery train` workflow ----------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainRequest:
    """What `discovery train` asks for (its parsed arguments)."""

    config: Any = None
    drift: Any = None
    env: Any = None
    out: Any = None
    overwrite: Any = None
    seed: Any = None
    seeds: Any = None
    wandb: Any = None
    wandb_entity: Any = None
    wandb_group: Any = None
    wandb_project: Any = None
    overrides: Any = None


def train(request: TrainRequest) -> int:
    """Run `discovery train` for ``request``; a user error raises :class:`UserError`."""
    if request.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {request.seeds}")
    spec, fallback = configs.load_train_spec(request.env, request.overrides, request.config)
    resolved = resolve_drift(request.drift)
    preflight(request.wandb)  # before --out is made: a W&B failure leaves nothing behind
    if fallback:
        whose = f"{request.env} is your own env" if ":" in request.env else f"no configs/train/{request.env}.yaml"
        status(f"[yellow]{whose}: using the {Path(spec.source).stem} family defaults ({spec.source})[/yellow]")
    out = Path(
        request.out
        or f"runs/{slug(request.env)}_{resolved.label.replace('/', '_').replace(':', '_')}_"
        f"{datetime.now():%Y%m%d-%H%M%S}"
    )
    out = prepare_run_dir(out, overwrite=request.overwrite)

    config = spec.ppo
    if spec.profile:
        status(profile_line(spec))
    status(
        f"training [bold]{request.env}[/bold] with drift [bold]{resolved.label}[/bold]: {request.seeds} seeds × "
        f"{config.env_steps:,} env steps ({config.num_updates} updates of {config.batch_size:,}) → {out}"
    )
    run_config = {
        "train": spec.to_dict(),
        "drift": {
            "source": resolved.source,
            "label": resolved.label,
            "family": resolved.drift.name,
            "options": resolved.drift.options,
        },
        "seeds": request.seeds,
        "seed": request.seed,
    }
    wandb_run = WandbRun(
        request.wandb,
        out,
        project=request.wandb_project,
        entity=request.wandb_entity,
        group=request.wandb_group or request.env,
        name=f"{request.env}/{resolved.label}",
        config=run_config,
        job_type="train",
    )
    started = time.time()
    result = run_seeds(spec, resolved, request.seeds, seed=request.seed, allow_split=True)

    mean, low, high = mean_ci(result.final_returns)
    summary = {
        "final_return_mean": mean,
        "final_return_ci95": [low, high],
        "final_return_per_seed": result.final_returns.tolist(),
        "env_steps_per_seed": int(result.env_steps[-1]),
        "compile_seconds": result.compile_seconds,
        "run_seconds": result.run_seconds,
        "env_steps_per_second": result.steps_per_second,
        "devices": result.devices,
        "layout": result.layout,
        "diverged_seeds": diverged_seeds(result.metrics),
    }
    if summary["diverged_seeds"]:
        status(
            f"[bold red]seed(s) {', '.join(map(str, summary['diverged_seeds']))} diverged (non-finite losses): their "
            "returns "
            "are not meaningful; lower the learning rate or check the env[/bold red]"
        )
    write_metrics_csv(out / "metrics.csv", result)
    plot_learning_curves(
        {resolved.label: result.metrics["episode_return"]},
        result.env_steps,
        out / "learning_curve.png",
        title=f"{request.env} — {resolved.label} ({request.seeds} seeds)",
    )
    atomic_write_json(
        out / "results.json",
        {
            "config": run_config,
            "summary": summary,
            "environment": environment_info(),
            "started": datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        },
    )
    if wandb_run.run is not None:
        series = {f"{name}/mean": np.nanmean(values, axis=0) for name, values in result.metrics.items()}
        series |= {f"episode_return/seed{s}": result.metrics["episode_return"][s] for s in range(request.seeds)}
        wandb_run.log_series(series, result.env_steps)
        wandb_run.log_image("learning_curve", out / "learning_curve.png")
        wandb_run.summary({k: v for k, v in summary.items() if not isinstance(v, list)})
        wandb_run.finish()

    per_seed = escape(np.array2string(result.final_returns, precision=1, separator=", "))
    status(
        f"final return {mean:.1f}  (95% CI [{low:.1f}, {high:.1f}] over {request.seeds} seeds; per seed "
        f"{per_seed})\n"
        f"compile {result.compile_seconds:.1f}s, train {result.run_seconds:.1f}s, {result.steps_per_second:,.0f} "
        "env-steps/s "
        f"on {result.devices} device{'s' if result.devices != 1 else ''}\n"
        f"wrote {out}/results.json, metrics.csv, learning_curve.png"
    )
    return 0


def profile_line(spec) -> str:
    """One console line naming the config profile that runs, and how to choose the other one."""
    other = {"cpu": "accelerator (the published settings)", "accelerator": "cpu (a few dozen envs)"}[spec.profile]
    return (
        f"profile [bold]{spec.profile}[/bold] of {spec.source}: {spec.ppo.num_envs} envs × {spec.ppo.num_steps} "
        "steps × "
        f"{spec.ppo.rollouts_per_update} unrolls per update (--profile {other})"
    )


def diverged_seeds(metrics: dict) -> list[int]:
    """Seeds whose losses became NaN/inf at some update (a diverged learner still reports finite returns)."""
    losses = [np.asarray(metrics[name]) for name in ("policy_loss", "value_loss") if name in metrics]
    if not losses:
        return []
    bad = np.any([~np.isfinite(loss) for loss in losses], axis=(0, 2))
    return [int(s) for s in np.flatnonzero(bad)]


def write_metrics_csv(path: Path, result) -> None:
    """One row per (update, seed) with every per-update metric."""
    seeds, num_updates = result.metrics["episode_return"].shape
    names = [n for n in METRIC_NAMES if n in result.metrics]
    columns = [result.metrics[n] for n in names]
    rows = (
        [update + 1, seed, int(result.env_steps[update])] + [float(c[seed, update]) for c in columns]
        for update in range(num_updates)
        for seed in range(seeds)
    )
    atomic_write_csv(path, ["update", "seed", "env_steps"] + names, rows)
