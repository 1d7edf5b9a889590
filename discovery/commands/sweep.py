"""``discovery sweep``: a grid over array-valued hyper-parameters × seeds as one jitted, vmapped call."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from discovery.commands.arguments import add_run_arguments, add_wandb_arguments, overrides_from
from discovery.io.outputs import (
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    environment_info,
    prepare_run_dir,
    slug,
    write_npz,
)
from discovery.reporting.plots import plot_learning_curves
from discovery.runtime.errors import UserError
from discovery.runtime.progress import status
from discovery.runtime.wandb_logging import WandbRun, preflight
from discovery.workflows.sweep import (
    SUMMARY_COLUMNS,
    SweepDefinition,
    build_plan,
    load_sweep_yaml,
    parse_grid_option,
    plot_sensitivity,
    run_sweep,
    sensitivity_columns,
    sweep_markdown,
    sweep_rows,
)

EXAMPLE = (
    "discovery sweep --env CartPole-v1 --drift dpo --grid learning_rate=1e-4,3e-4 --grid alpha=1.5,2.0 "
    "--seeds 2 --out runs/sweep"
)
MAX_CURVES = 12


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="vectorised hyper-parameter sweep (grid × seeds in one jitted call); or a W&B sweep YAML",
        description="Sweep any HParams field (learning_rate, ent_coef, vf_coef, gamma, gae_lambda, max_grad_norm, "
        "reward_scale), any scalar drift parameter (epsilon, alpha, beta) or the drift itself (--grid "
        "drift=dpo:alpha=1,dpo:alpha=2) "
        "in one compiled, vmapped call. --config reads a W&B sweep YAML (configs/sweeps/*.yaml): `value:` entries "
        "are fixed, "
        "`values:` lists are grid axes. Other --key value pairs fix config fields. Example: " + EXAMPLE,
    )
    parser.add_argument("--env", default=None, help="environment (default: the --config's env, else CartPole-v1)")
    parser.add_argument("--drift", default=None, help="drift to sweep with (default: the --config's drift, else ppo)")
    parser.add_argument(
        "--grid", action="append", default=[], metavar="NAME=V1,V2,...", help="a grid axis; repeat for more axes"
    )
    parser.add_argument(
        "--config", default=None, help="a W&B sweep YAML whose `parameters` give fixed values and grid axes"
    )
    add_run_arguments(
        parser,
        out_help="output directory (default: runs/sweep_<env>_<time>)",
        seed_default=None,
        seeds_help="seeds per grid point (default: the --config's, else 4)",
    )
    add_wandb_arguments(parser)
    parser.set_defaults(run=run)


def _definition(args, extra: list[str]) -> tuple[SweepDefinition, dict]:
    definition = load_sweep_yaml(args.config) if args.config else SweepDefinition()
    seen_cli: set[str] = set()
    for text in args.grid:
        name, values = parse_grid_option(text)
        if name in seen_cli:
            raise UserError(f"grid axis {name!r} is given twice")
        seen_cli.add(name)
        definition.axes[name] = values  # the command line replaces an axis of the same name from --config
        definition.fixed.pop(name, None)
    overrides = overrides_from(args, extra)
    for name in overrides:  # a fixed value on the command line replaces an axis from --config
        definition.axes.pop(name, None)
    return definition, overrides


def run(args, extra: list[str]) -> int:
    definition, overrides = _definition(args, extra)
    fixed = definition.fixed
    env = args.env or fixed.get("env") or "CartPole-v1"
    drift = args.drift or fixed.get("drift") or "ppo"
    seeds = args.seeds if args.seeds is not None else int(fixed.get("seeds", 4))
    seed = args.seed if args.seed is not None else int(fixed.get("seed", 0))
    plan = build_plan(str(env), str(drift), definition, overrides, seeds, seed)
    preflight(args.wandb)  # before any training: W&B is only used at the end
    if plan.used_family_default:
        status(
            f"[yellow]no configs/train/{env}.yaml: using the {Path(plan.spec.source).stem} family defaults "
            f"({plan.spec.source})[/yellow]"
        )
    out = prepare_run_dir(
        Path(args.out or f"runs/sweep_{slug(str(env))}_{datetime.now():%Y%m%d-%H%M%S}"), overwrite=args.overwrite
    )
    config = plan.spec.ppo
    status(
        f"sweeping [bold]{', '.join(plan.definition.axes)}[/bold] on [bold]{env}[/bold] with {plan.drift.name}: "
        f"{len(plan.points)} points × {seeds} seeds = {len(plan.points) * seeds} learners × {config.env_steps:,} env "
        "steps, "
        f"one vectorised call → {out}"
    )

    run_config = {
        "env": env,
        "drift": drift,
        "axes": {k: [str(v) for v in vs] for k, vs in definition.axes.items()},
        "fixed": {k: str(v) for k, v in (definition.fixed | overrides).items()},
        "seeds": seeds,
        "seed": seed,
        "train": plan.spec.to_dict(),
        "source": definition.source,
    }
    result = run_sweep(plan)
    rows = sweep_rows(plan, result)

    header = ["point"] + plan.columns + SUMMARY_COLUMNS
    files = [atomic_write_csv(out / "results.csv", header, [[row[c] for c in header] for row in rows])]
    files.append(
        atomic_write_json(
            out / "results.json",
            {
                "config": run_config,
                "points": plan.points,
                "columns": plan.columns,
                "rows": rows,
                "compile_seconds": result.compile_seconds,
                "run_seconds": result.run_seconds,
                "environment": environment_info(),
            },
        )
    )
    markdown = sweep_markdown(plan, rows, result)
    files.append(atomic_write_text(out / "results.md", markdown))
    files.append(
        write_npz(
            out / "metrics.npz",
            {"final_returns": result.final_returns, "env_steps": result.env_steps, **result.metrics},
            compressed=True,
        )
    )
    for column in sensitivity_columns(plan):
        files.append(plot_sensitivity(plan, result, column, out / f"sensitivity_{slug(column)}.png"))
    if len(plan.points) <= MAX_CURVES:
        curves = {
            ", ".join(f"{c}={_short(row[c])}" for c in plan.columns): result.metrics["episode_return"][i]
            for i, row in enumerate(rows)
        }
        files.append(
            plot_learning_curves(curves, result.env_steps, out / "curves.png", title=f"{env} sweep ({seeds} seeds)")
        )

    wandb_run = WandbRun(
        args.wandb,
        out,
        project=args.wandb_project,
        entity=args.wandb_entity,
        group=args.wandb_group or f"sweep/{env}",
        name=f"sweep/{env}/{'x'.join(plan.definition.axes)}",
        config=run_config,
        job_type="sweep",
    )
    if wandb_run.run is not None:
        wandb_run.log_table("sweep", header, [[row[c] for c in header] for row in rows])
        for path in files:
            if path.suffix == ".png":
                wandb_run.log_image(path.stem, path)
        best = max(rows, key=lambda r: r["mean"] if np.isfinite(r["mean"]) else -np.inf)
        wandb_run.summary({"best_final_return_mean": best["mean"], **{f"best/{c}": best[c] for c in plan.columns}})
        wandb_run.finish()

    status(markdown.rstrip())
    status(
        f"wrote {out}/results.csv, results.json, results.md, metrics.npz and "
        f"{sum(p.suffix == '.png' for p in files)} plots"
    )
    return 0


def _short(value) -> str:
    return value if isinstance(value, str) else f"{value:.3g}"
