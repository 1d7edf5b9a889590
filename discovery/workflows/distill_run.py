"""`discovery distill` end to end: sample a learned drift, fit the closed forms, plot, write the report and
(`--check`) train the fits beside the learned drift.

The sampling and fitting it uses are in :mod:`discovery.workflows.distill`.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from discovery.io import configs
from discovery.io.artifacts import ArtifactError, load_artifact, save_artifact
from discovery.io.configs import split_list
from discovery.io.drift_registry import resolve_drift
from discovery.io.outputs import atomic_write_json, atomic_write_text, environment_info, prepare_run_dir
from discovery.reporting.drift_grid import depends_on_regime
from discovery.reporting.drift_plots import Panel, panels_for, plot_drift_panels, reference_panels
from discovery.runtime.errors import UserError
from discovery.runtime.progress import status
from discovery.workflows.distill import (
    FAMILIES,
    combine,
    describe_params,
    distill,
    grid_samples,
    record_rollout_samples,
)
from discovery.workflows.evaluate import WandbOptions, env_tasks, run_evaluation


def _training_env(requested: str | None, metadata: dict) -> str | None:
    """The env to check fits on: ``--env``, else the one the drift artifact records."""
    if requested:
        return requested
    env = metadata.get("env")
    if isinstance(env, str):
        return env
    envs = metadata.get("envs")
    if isinstance(envs, (list, tuple)) and envs and isinstance(envs[0], str):
        return envs[0]
    return None


@dataclasses.dataclass(frozen=True)
class DistillRequest:
    """What `discovery distill` asks for (its parsed arguments)."""

    check: Any = None
    check_seeds: Any = None
    drift: Any = None
    env: Any = None
    families: Any = None
    max_samples: Any = None
    out: Any = None
    overwrite: Any = None
    progress: Any = None
    rollout_steps: Any = None
    seed: Any = None
    total_timesteps: Any = None
    wandb: Any = None
    wandb_entity: Any = None
    wandb_group: Any = None
    wandb_project: Any = None
    overrides: Any = None


def distill_drift(request: DistillRequest) -> int:
    """Run `discovery distill` for ``request``; a user error raises :class:`UserError`."""
    if request.total_timesteps is not None:
        request.overrides["total_timesteps"] = (
            int(request.total_timesteps) if float(request.total_timesteps).is_integer() else request.total_timesteps
        )
    families = list(dict.fromkeys(["dpo"] + split_list(request.families)))
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise UserError(f"unknown closed-form family {', '.join(unknown)}; valid: {', '.join(FAMILIES)}")
    try:
        progress_values = [float(p) for p in split_list(request.progress)]
    except ValueError:
        raise UserError(f"--progress must be comma-separated numbers in [0, 1], got {request.progress!r}") from None
    if not progress_values or any(not 0.0 <= p <= 1.0 for p in progress_values):
        raise UserError(f"--progress must be comma-separated numbers in [0, 1], got {request.progress!r}")
    if request.max_samples < 1 or request.rollout_steps < 1:
        raise UserError("--max-samples and --rollout-steps must be positive")

    learned = resolve_drift(request.drift)
    if "dpo_ra" not in families and depends_on_regime(learned):
        families.append("dpo_ra")  # the closed form with the regime inputs the drift reads
    metadata = {}
    if Path(learned.source).is_file():
        try:
            metadata = load_artifact(learned.source)[2]
        except ArtifactError:
            metadata = {}
    env = _training_env(request.env, metadata)
    if request.check and env is None:
        raise UserError("--check needs the training env: pass --env (the drift does not record one)")
    spec = None
    if env is not None:
        spec, fallback = configs.load_train_spec(env, request.overrides)
        if fallback:
            status(
                f"[yellow]no configs/train/{env}.yaml: using the {Path(spec.source).stem} family defaults "
                f"({spec.source})[/yellow]"
            )
    out = prepare_run_dir(
        Path(request.out or f"runs/distill_{datetime.now():%Y%m%d-%H%M%S}"), overwrite=request.overwrite
    )

    status(f"distilling [bold]{learned.label}[/bold] ({learned.drift.spec}) into {', '.join(families)} → {out}")
    grid = grid_samples(learned, progress_values)
    rollout = None
    if request.env is not None:
        rollout_steps = min(int(request.rollout_steps), spec.ppo.total_timesteps)
        rollout_spec, _ = configs.load_train_spec(env, request.overrides | {"total_timesteps": rollout_steps})
        status(f"recording (ratio, advantage) samples: one seed on {env} for {rollout_spec.ppo.env_steps:,} env steps…")
        rollout = record_rollout_samples(rollout_spec, learned, max_samples=request.max_samples, seed=request.seed)
        status(
            f"  kept {rollout.ratio.size:,} samples; ratio 1–99% range [{np.percentile(rollout.ratio, 1):.3f}, "
            f"{np.percentile(rollout.ratio, 99):.3f}], advantage [{np.percentile(rollout.advantage, 1):.2f}, "
            f"{np.percentile(rollout.advantage, 99):.2f}]"
        )
    samples = combine(grid, rollout)
    fits = distill(samples, families)

    report = {
        "drift": {
            "source": learned.source,
            "label": learned.label,
            "family": learned.drift.name,
            "options": learned.drift.options,
        },
        "samples": {
            "grid": {
                "ratio": [0.05, 3.0],
                "advantage": [-3.0, 3.0],
                "n": int(grid.ratio.size),
                "progress": sorted(set(grid.progress.tolist())),
                "regimes": sorted({tuple(row) for row in grid.regime.tolist()}),
            },
            "rollout": None
            if rollout is None
            else {"env": env, "n": int(rollout.ratio.size), "env_steps": int(rollout_spec.ppo.env_steps)},
            "weighting": "each sample set has equal total weight",
        },
        "fits": {},
        "environment": environment_info(),
    }
    paths = {}
    for fit in fits:
        path = out / f"fit_{fit.family}.npz"
        fit_metadata = {
            "label": f"fit_{fit.family}",
            "distilled_from": learned.source,
            "family": fit.family,
            **({"env": env} if env else {}),
            "fit": fit.metrics,
        }
        save_artifact(path, fit.drift, fit.params, fit_metadata)
        paths[fit.family] = path
        report["fits"][fit.family] = {
            "artifact": str(path),
            "spec": fit.drift.spec,
            "params": {k: np.asarray(v).tolist() for k, v in fit.params.items()},
            **fit.metrics,
        }

    panels = panels_for(
        learned,
        f"learned: {learned.label}",
        progress_values=(min(progress_values), max(progress_values)) if len(progress_values) > 1 else progress_values,
    )
    panels += [
        Panel(f"fit {fit.family} (R²={fit.metrics['r2']:.3f})", resolve_drift(str(paths[fit.family]))) for fit in fits
    ]
    panels += reference_panels()
    heatmap = plot_drift_panels(panels, out / "drift_heatmaps.png", title=f"{learned.label} and its closed-form fits")

    if request.check:
        status(f"checking the fits by training on {env} ({request.check_seeds} seeds each)…")
        evaluation = run_evaluation(
            [learned.source] + [str(paths[f.family]) for f in fits],
            env_tasks([env], request.overrides),
            out / "check",
            num_seeds=request.check_seeds,
            seed=request.seed,
            overrides=request.overrides,
            reference=learned.source,
            overwrite=request.overwrite,
            wandb=WandbOptions(request.wandb, request.wandb_project, request.wandb_entity, request.wandb_group),
        )
        check = {
            "env": env,
            "seeds": request.check_seeds,
            "reference": evaluation.reference,
            "results": str(out / "check" / "results.md"),
        }
        for row in evaluation.rows:
            check[row["drift"]] = {
                "mean": row["mean"],
                "mean_ci": [row["mean_ci_low"], row["mean_ci_high"]],
                "return_ratio": row["normalized_mean"],
            }
        report["check"] = check

    atomic_write_json(out / "distill.json", report)
    markdown = distill_markdown(report)
    atomic_write_text(out / "distill.md", markdown)
    status(markdown.rstrip())
    status(f"wrote {out}/distill.json, distill.md, {heatmap.name} and {', '.join(p.name for p in paths.values())}")
    return 0


def distill_markdown(report: dict) -> str:
    drift = report["drift"]
    sets = [name for name in ("grid", "rollout") if report["samples"].get(name)]
    lines = [f"# Distilling {drift['label']} ({drift['family']})", ""]
    grid = report["samples"]["grid"]
    lines.append(
        f"Samples: grid r ∈ [0.05, 3] × Â ∈ [−3, 3] ({grid['n']:,} points, progress {grid['progress']})"
        + (
            f"; rollout: {report['samples']['rollout']['n']:,} (r, Â) from training on "
            f"{report['samples']['rollout']['env']}"
            if report["samples"].get("rollout")
            else ""
        )
        + ". Each set has equal weight."
    )
    lines += [
        "",
        "| family | R² (all) | " + " | ".join(f"R² {s} | max abs err {s}" for s in sets) + " | parameters | artifact |",
        "|---|---|" + "---|---|" * len(sets) + "---|---|",
    ]
    for family, fit in report["fits"].items():
        cells = " | ".join(f"{fit[f'r2_{s}']:.4f} | {fit[f'max_abs_error_{s}']:.4f}" for s in sets)
        lines.append(
            f"| {family} | {fit['r2']:.4f} | {cells} | {describe_params(fit['params'])} | `{fit['artifact']}` |"
        )
    check = report.get("check")
    if check:
        lines += [
            "",
            f"## Check: training on {check['env']} ({check['seeds']} seeds), return ÷ {check['reference']}'s",
            "",
            "| drift | final return [95% CI] | ratio to learned |",
            "|---|---|---|",
        ]
        for name, value in check.items():
            if isinstance(value, dict):
                ratio = value["return_ratio"]
                lines.append(
                    f"| {name} | {value['mean']:.1f} [{value['mean_ci'][0]:.1f}, {value['mean_ci'][1]:.1f}] | "
                    f"{'–' if ratio is None or not np.isfinite(ratio) else f'{ratio:.3f}'} |"
                )
    lines.append("")
    return "\n".join(lines)
