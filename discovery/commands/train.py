"""``discovery train``: train all seeds of one env with one drift; write results, metrics and a plot."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import numpy as np
from rich.markup import escape

import drift_functions
from discovery import configs
from discovery.commands.arguments import add_run_arguments, add_wandb_arguments, overrides_from
from discovery.drifts import resolve_drift
from discovery.errors import UserError
from discovery.outputs import atomic_write_csv, atomic_write_json, environment_info, prepare_run_dir, slug
from discovery.plots import plot_learning_curves
from discovery.progress import status
from discovery.stats import mean_ci
from discovery.training import run_seeds
from discovery.wandb_logging import WandbRun, preflight
from rl_algos.ppo import METRIC_NAMES

EXAMPLE = "discovery train --env CartPole-v1 --drift dpo --seeds 8 --total-timesteps 500000 --out runs/cp_dpo"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train PPO-family learners with a given drift (all seeds in one jitted call)",
        description="Train with a drift. Any PPO config field can be overridden: --num-envs 8, --learning-rate=1e-3, "
        "and for Brax --backend spring, --episode-length 500. Example: " + EXAMPLE,
    )
    parser.add_argument("--env", default="CartPole-v1", help="any gymnax or Brax environment name, or your own as module:factory "
                        "or path/to/file.py:factory (default: CartPole-v1)")
    parser.add_argument("--profile", choices=(*configs.PROFILES, "auto"), default=None,
                        help="the settings of a config with profiles (Brax): cpu (a few dozen envs) or accelerator (the published "
                        "ones); default auto: cpu when JAX finds no accelerator")
    parser.add_argument("--drift", default="ppo", help=f"{' | '.join(drift_functions.registered())}, NAME:key=value,... (e.g. dpo:alpha=1.5), "
                        "a shipped discovered drift (see `discovery drifts`), or a drift artifact path (default: ppo)")
    parser.add_argument("--config", default=None, help="a train YAML to use instead of configs/train/<env>.yaml")
    add_run_arguments(parser, out_help="output directory (default: runs/<env>_<drift>_<time>)", seeds_default=8,
                      seeds_help="number of seeds trained in parallel (default: 8)")
    add_wandb_arguments(parser)
    parser.set_defaults(run=run)


def run(args, extra: list[str]) -> int:
    overrides = overrides_from(args, extra) | ({configs.PROFILE_KEY: args.profile} if args.profile else {})
    if args.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {args.seeds}")
    spec, fallback = configs.load_train_spec(args.env, overrides, args.config)
    resolved = resolve_drift(args.drift)
    preflight(args.wandb)  # before --out is made: a W&B failure leaves nothing behind
    if fallback:
        whose = f"{args.env} is your own env" if ":" in args.env else f"no configs/train/{args.env}.yaml"
        status(f"[yellow]{whose}: using the {Path(spec.source).stem} family defaults ({spec.source})[/yellow]")
    out = Path(args.out or f"runs/{slug(args.env)}_{resolved.label.replace('/', '_').replace(':', '_')}_{datetime.now():%Y%m%d-%H%M%S}")
    out = prepare_run_dir(out, overwrite=args.overwrite)

    config = spec.ppo
    if spec.profile:
        status(profile_line(spec))
    status(
        f"training [bold]{args.env}[/bold] with drift [bold]{resolved.label}[/bold]: {args.seeds} seeds × "
        f"{config.env_steps:,} env steps ({config.num_updates} updates of {config.batch_size:,}) → {out}"
    )
    run_config = {"train": spec.to_dict(), "drift": {"source": resolved.source, "label": resolved.label, "family": resolved.drift.name,
                  "options": resolved.drift.options}, "seeds": args.seeds, "seed": args.seed}
    wandb_run = WandbRun(args.wandb, out, project=args.wandb_project, entity=args.wandb_entity, group=args.wandb_group or args.env,
                         name=f"{args.env}/{resolved.label}", config=run_config, job_type="train")
    started = time.time()
    result = run_seeds(spec, resolved, args.seeds, seed=args.seed, allow_split=True)

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
        status(f"[bold red]seed(s) {', '.join(map(str, summary['diverged_seeds']))} diverged (non-finite losses): their returns "
               "are not meaningful; lower the learning rate or check the env[/bold red]")
    write_metrics_csv(out / "metrics.csv", result)
    plot_learning_curves({resolved.label: result.metrics["episode_return"]}, result.env_steps, out / "learning_curve.png",
                         title=f"{args.env} — {resolved.label} ({args.seeds} seeds)")
    atomic_write_json(out / "results.json", {"config": run_config, "summary": summary, "environment": environment_info(),
                                             "started": datetime.fromtimestamp(started).isoformat(timespec="seconds")})
    if wandb_run.run is not None:
        series = {f"{name}/mean": np.nanmean(values, axis=0) for name, values in result.metrics.items()}
        series |= {f"episode_return/seed{s}": result.metrics["episode_return"][s] for s in range(args.seeds)}
        wandb_run.log_series(series, result.env_steps)
        wandb_run.log_image("learning_curve", out / "learning_curve.png")
        wandb_run.summary({k: v for k, v in summary.items() if not isinstance(v, list)})
        wandb_run.finish()

    per_seed = escape(np.array2string(result.final_returns, precision=1, separator=", "))
    status(
        f"final return {mean:.1f}  (95% CI [{low:.1f}, {high:.1f}] over {args.seeds} seeds; per seed "
        f"{per_seed})\n"
        f"compile {result.compile_seconds:.1f}s, train {result.run_seconds:.1f}s, {result.steps_per_second:,.0f} env-steps/s "
        f"on {result.devices} device{'s' if result.devices != 1 else ''}\n"
        f"wrote {out}/results.json, metrics.csv, learning_curve.png"
    )
    return 0


def profile_line(spec) -> str:
    """One console line naming the config profile that runs, and how to choose the other one."""
    other = {"cpu": "accelerator (the published settings)", "accelerator": "cpu (a few dozen envs)"}[spec.profile]
    return (f"profile [bold]{spec.profile}[/bold] of {spec.source}: {spec.ppo.num_envs} envs × {spec.ppo.num_steps} steps × "
            f"{spec.ppo.rollouts_per_update} unrolls per update (--profile {other})")


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
