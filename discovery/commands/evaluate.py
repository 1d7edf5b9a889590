"""``discovery evaluate``: a drift × env grid, paired seeds, rliable statistics, resumable."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from discovery.commands.arguments import add_run_arguments, add_wandb_arguments, overrides_from
from discovery.io.configs import split_list
from discovery.io.drift_registry import split_drift_list
from discovery.io.suites import ROLES, load_suite
from discovery.runtime.errors import UserError
from discovery.runtime.progress import interruptible, set_interrupt_hint, status
from discovery.runtime.wandb_logging import preflight
from discovery.workflows.evaluate import WandbOptions, env_tasks, run_evaluation, suite_tasks

EXAMPLE = (
    "discovery evaluate --drifts ppo,dpo,runs/lpo/best_drift.npz --envs CartPole-v1,Breakout-MinAtar --seeds 8 --out "
    "runs/eval; "
    "discovery evaluate --suite cpu --drifts ppo,dpo,lpo_cpu_suite --seeds 16 --seed 9100 --out runs/suite"
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate drifts on environments (paired seeds; mean, median, IQM and bootstrap CIs; resumable)",
        description="Train every drift on every env with that env's configs/train settings and the same seeds for "
        "every "
        "drift; write results.csv/.json/.md, one learning-curve plot per env and a normalised-score summary. "
        "Rerunning with the same --out skips finished cells. Overrides (--total-timesteps 1e5, --num-envs 8, ...) "
        "apply "
        "to every env. Example: " + EXAMPLE,
    )
    parser.add_argument(
        "--drifts",
        default="ppo,dpo",
        help="comma-separated drifts: names, NAME:key=value,... or artifact paths (default: ppo,dpo)",
    )
    parser.add_argument(
        "--envs", default=None, help="comma-separated environment names (default: CartPole-v1 unless --suite)"
    )
    parser.add_argument(
        "--suite",
        default=None,
        help="a task suite: a name in configs/suites/ (e.g. cpu) or a suite YAML path; "
        "scores are aggregated per role (train / held_out)",
    )
    parser.add_argument(
        "--roles", default=None, help=f"with --suite: only these roles, comma-separated ({', '.join(ROLES)})"
    )
    parser.add_argument(
        "--reference",
        default=None,
        help="drift that scores are normalised by (default: the ppo/ppo_clip entry, if any)",
    )
    parser.add_argument(
        "--report",
        default=None,
        metavar="PATH",
        help="also write the results as a self-contained document (e.g. docs/RESULTS.md), figures in PATH's "
        "folder/results/",
    )
    parser.add_argument(
        "--profile",
        choices=("cpu", "accelerator", "auto"),
        default=None,
        help="the settings of configs with profiles (Brax): cpu (a few dozen envs) or accelerator (the published "
        "ones); default auto: cpu when JAX finds no accelerator",
    )
    parser.add_argument(
        "--bootstrap-reps", type=int, default=2000, help="bootstrap resamples for the CIs (default: 2000)"
    )
    add_run_arguments(
        parser,
        out_help="output directory (default: runs/evaluate_<time>); reuse it to resume",
        overwrite_help="recompute cells whose saved settings differ instead of refusing",
        seeds_default=8,
        seeds_help="seeds per cell, trained in one vmapped call; the same for every drift (default: 8)",
    )
    add_wandb_arguments(parser)
    parser.set_defaults(run=interruptible(run))


def run(args, extra: list[str]) -> int:
    overrides = overrides_from(args, extra) | ({"profile": args.profile} if args.profile else {})
    if args.bootstrap_reps < 1:
        raise UserError(f"--bootstrap-reps must be >= 1, got {args.bootstrap_reps}")
    if args.suite and args.envs:
        raise UserError("give --envs or --suite, not both")
    if args.roles and not args.suite:
        raise UserError("--roles selects tasks of a --suite")
    if args.suite:
        roles = tuple(split_list(args.roles)) if args.roles else None
        bad = sorted(set(roles or ()) - set(ROLES))
        if bad:
            raise UserError(f"unknown role(s) {', '.join(bad)}; valid roles: {', '.join(ROLES)}")
        suite = load_suite(args.suite)
        tasks = suite_tasks(suite, overrides, roles)
    else:
        suite, tasks = None, env_tasks(split_list(args.envs or "CartPole-v1"), overrides)
    preflight(args.wandb)  # before any cell is trained: each cell logs as it finishes
    out = Path(args.out or f"runs/evaluate_{datetime.now():%Y%m%d-%H%M%S}")
    set_interrupt_hint(
        f"rerun the same command with --out {out} to continue: finished cells are kept and only the rest is trained"
    )
    for task in tasks:
        if task.spec.profile:
            status(
                f"{task.label}: profile [bold]{task.spec.profile}[/bold] of {task.spec.source} "
                f"({task.spec.ppo.num_envs} envs × {task.spec.ppo.num_steps} steps; --profile cpu|accelerator)"
            )
    report = run_evaluation(
        split_drift_list(args.drifts),
        tasks,
        out,
        num_seeds=args.seeds,
        seed=args.seed,
        overrides=overrides,
        reference=args.reference,
        overwrite=args.overwrite,
        wandb=WandbOptions(args.wandb, args.wandb_project, args.wandb_entity, args.wandb_group),
        bootstrap_reps=args.bootstrap_reps,
        suite=suite.name if suite else None,
        report=args.report,
    )
    status((report.out / "results.md").read_text().split("## Settings")[0].rstrip())
    if args.report:
        status(f"wrote {args.report}")
    status(
        f"wrote {report.out}/results.csv, results.json, results.md and "
        f"{sum(p.suffix == '.png' for p in report.files)} plots"
    )
    return 0
