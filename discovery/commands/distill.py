"""``discovery distill``: fit closed-form drifts (DPO, dpo_poly) to a learned drift; plot; optionally check by training."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from discovery import configs
from discovery.artifacts import ArtifactError, load_artifact, save_artifact
from discovery.distillation import DEFAULT_PROGRESS, FAMILIES, combine, describe_params, distill, grid_samples, record_rollout_samples
from discovery.drift_plots import Panel, panels_for, plot_drift_panels, reference_panels
from discovery.drifts import resolve_drift
from discovery.commands.arguments import add_wandb_arguments
from discovery.errors import UserError
from discovery.evaluate import WandbOptions, env_tasks, run_evaluation, split_list
from discovery.outputs import atomic_write_json, atomic_write_text, environment_info, prepare_run_dir
from discovery.progress import status

EXAMPLE = "discovery distill --drift runs/lpo/best_drift.npz --env CartPole-v1 --check --out runs/distill"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "distill",
        help="fit closed-form drifts (DPO and dpo_poly) to a learned drift; heatmaps; --check trains them",
        description="Least-squares fit of closed-form drift families to a learned drift on a dense (ratio, advantage) grid "
        "and, with --env, on the (ratio, advantage) a learner actually sees. Writes fit_<family>.npz drift artifacts "
        "that train/evaluate accept, distill.json/.md (R², max error) and drift_heatmaps.png. Example: " + EXAMPLE,
    )
    parser.add_argument("--drift", required=True, help="the drift to distil: an artifact path (.npz), or any drift spec")
    parser.add_argument("--out", default=None, help="output directory (default: runs/distill_<time>)")
    parser.add_argument("--env", default=None, help="also fit on (ratio, advantage) samples recorded while training with the drift on this env")
    parser.add_argument("--families", default=",".join(FAMILIES), help=f"closed forms to fit, comma-separated (default: {','.join(FAMILIES)}; dpo is always fitted)")
    parser.add_argument("--progress", default=",".join(f"{p:g}" for p in DEFAULT_PROGRESS),
                        help="training-progress values to average over for drifts that depend on progress (TA-LPO)")
    parser.add_argument("--rollout-steps", type=float, default=100_000, help="env steps of the sample-recording run with --env (default: 1e5)")
    parser.add_argument("--max-samples", type=int, default=20_000, help="rollout samples kept for the fit (default: 20000)")
    parser.add_argument("--check", action="store_true", help="train the learned drift and each fit on the training env (--env, else the artifact's recorded env) "
                        "through the evaluate pipeline and report each fit's return ÷ the learned drift's")
    parser.add_argument("--check-seeds", type=int, default=4, help="seeds per drift for --check (default: 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--total-timesteps", type=float, default=None, help="env steps per seed for --check (default: the env's config)")
    parser.add_argument("--overwrite", action="store_true", help="allow writing into an existing, non-empty --out")
    add_wandb_arguments(parser)
    parser.set_defaults(run=run)


def _training_env(args, metadata: dict) -> str | None:
    if args.env:
        return args.env
    env = metadata.get("env")
    if isinstance(env, str):
        return env
    envs = metadata.get("envs")
    if isinstance(envs, (list, tuple)) and envs and isinstance(envs[0], str):
        return envs[0]
    return None


def run(args, extra: list[str]) -> int:
    overrides = configs.parse_overrides(extra)
    if args.total_timesteps is not None:
        overrides["total_timesteps"] = int(args.total_timesteps) if float(args.total_timesteps).is_integer() else args.total_timesteps
    families = list(dict.fromkeys(["dpo"] + split_list(args.families)))
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise UserError(f"unknown closed-form family {', '.join(unknown)}; valid: {', '.join(FAMILIES)}")
    try:
        progress_values = [float(p) for p in split_list(args.progress)]
    except ValueError:
        raise UserError(f"--progress must be comma-separated numbers in [0, 1], got {args.progress!r}") from None
    if not progress_values or any(not 0.0 <= p <= 1.0 for p in progress_values):
        raise UserError(f"--progress must be comma-separated numbers in [0, 1], got {args.progress!r}")
    if args.max_samples < 1 or args.rollout_steps < 1:
        raise UserError("--max-samples and --rollout-steps must be positive")

    learned = resolve_drift(args.drift)
    metadata = {}
    if Path(learned.source).is_file():
        try:
            metadata = load_artifact(learned.source)[2]
        except ArtifactError:
            metadata = {}
    env = _training_env(args, metadata)
    if args.check and env is None:
        raise UserError("--check needs the training env: pass --env (the drift does not record one)")
    spec = None
    if env is not None:
        spec, fallback = configs.load_train_spec(env, overrides)
        if fallback:
            status(f"[yellow]no configs/train/{env}.yaml: using the {Path(spec.source).stem} family defaults ({spec.source})[/yellow]")
    out = prepare_run_dir(Path(args.out or f"runs/distill_{datetime.now():%Y%m%d-%H%M%S}"), overwrite=args.overwrite)

    status(f"distilling [bold]{learned.label}[/bold] ({learned.drift.spec}) into {', '.join(families)} → {out}")
    grid = grid_samples(learned, progress_values)
    rollout = None
    if args.env is not None:
        rollout_steps = min(int(args.rollout_steps), spec.ppo.total_timesteps)
        rollout_spec, _ = configs.load_train_spec(env, overrides | {"total_timesteps": rollout_steps})
        status(f"recording (ratio, advantage) samples: one seed on {env} for {rollout_spec.ppo.env_steps:,} env steps…")
        rollout = record_rollout_samples(rollout_spec, learned, max_samples=args.max_samples, seed=args.seed)
        status(f"  kept {rollout.ratio.size:,} samples; ratio 1–99% range [{np.percentile(rollout.ratio, 1):.3f}, "
               f"{np.percentile(rollout.ratio, 99):.3f}], advantage [{np.percentile(rollout.advantage, 1):.2f}, "
               f"{np.percentile(rollout.advantage, 99):.2f}]")
    samples = combine(grid, rollout)
    fits = distill(samples, families)

    report = {
        "drift": {"source": learned.source, "label": learned.label, "family": learned.drift.name, "options": learned.drift.options},
        "samples": {
            "grid": {"ratio": [0.05, 3.0], "advantage": [-3.0, 3.0], "n": int(grid.ratio.size),
                     "progress": sorted(set(grid.progress.tolist()))},
            "rollout": None if rollout is None else {"env": env, "n": int(rollout.ratio.size), "env_steps": int(rollout_spec.ppo.env_steps)},
            "weighting": "each sample set has equal total weight",
        },
        "fits": {},
        "environment": environment_info(),
    }
    paths = {}
    for fit in fits:
        path = out / f"fit_{fit.family}.npz"
        fit_metadata = {"label": f"fit_{fit.family}", "distilled_from": learned.source, "family": fit.family, **(
            {"env": env} if env else {}), "fit": fit.metrics}
        save_artifact(path, fit.drift, fit.params, fit_metadata)
        paths[fit.family] = path
        report["fits"][fit.family] = {"artifact": str(path), "spec": fit.drift.spec,
                                      "params": {k: np.asarray(v).tolist() for k, v in fit.params.items()}, **fit.metrics}

    panels = panels_for(learned, f"learned: {learned.label}", progress_values=(min(progress_values), max(progress_values))
                        if len(progress_values) > 1 else progress_values)
    panels += [Panel(f"fit {fit.family} (R²={fit.metrics['r2']:.3f})", resolve_drift(str(paths[fit.family]))) for fit in fits]
    panels += reference_panels()
    heatmap = plot_drift_panels(panels, out / "drift_heatmaps.png", title=f"{learned.label} and its closed-form fits")

    if args.check:
        status(f"checking the fits by training on {env} ({args.check_seeds} seeds each)…")
        evaluation = run_evaluation(
            [learned.source] + [str(paths[f.family]) for f in fits], env_tasks([env], overrides), out / "check",
            num_seeds=args.check_seeds, seed=args.seed, overrides=overrides, reference=learned.source,
            overwrite=args.overwrite, wandb=WandbOptions(args.wandb, args.wandb_project, args.wandb_entity, args.wandb_group),
        )
        check = {"env": env, "seeds": args.check_seeds, "reference": evaluation.reference, "results": str(out / "check" / "results.md")}
        for row in evaluation.rows:
            check[row["drift"]] = {"mean": row["mean"], "mean_ci": [row["mean_ci_low"], row["mean_ci_high"]],
                                   "return_ratio": row["normalized_mean"]}
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
    lines.append(f"Samples: grid r ∈ [0.05, 3] × Â ∈ [−3, 3] ({grid['n']:,} points, progress {grid['progress']})"
                 + (f"; rollout: {report['samples']['rollout']['n']:,} (r, Â) from training on {report['samples']['rollout']['env']}"
                    if report["samples"].get("rollout") else "") + ". Each set has equal weight.")
    lines += ["", "| family | R² (all) | " + " | ".join(f"R² {s} | max abs err {s}" for s in sets) + " | parameters | artifact |",
              "|---|---|" + "---|---|" * len(sets) + "---|---|"]
    for family, fit in report["fits"].items():
        cells = " | ".join(f"{fit[f'r2_{s}']:.4f} | {fit[f'max_abs_error_{s}']:.4f}" for s in sets)
        lines.append(f"| {family} | {fit['r2']:.4f} | {cells} | {describe_params(fit['params'])} | `{fit['artifact']}` |")
    check = report.get("check")
    if check:
        lines += ["", f"## Check: training on {check['env']} ({check['seeds']} seeds), return ÷ {check['reference']}'s", "",
                  "| drift | final return [95% CI] | ratio to learned |", "|---|---|---|"]
        for name, value in check.items():
            if isinstance(value, dict):
                ratio = value["return_ratio"]
                lines.append(f"| {name} | {value['mean']:.1f} [{value['mean_ci'][0]:.1f}, {value['mean_ci'][1]:.1f}] | "
                             f"{'–' if ratio is None or not np.isfinite(ratio) else f'{ratio:.3f}'} |")
    lines.append("")
    return "\n".join(lines)
