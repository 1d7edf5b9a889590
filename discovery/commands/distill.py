"""``discovery distill``: fit closed-form drifts (DPO, dpo_poly) to a learned drift; plot; optionally check by
training."""

from __future__ import annotations

from discovery.commands.arguments import add_wandb_arguments
from discovery.io import configs
from discovery.workflows.distill import DEFAULT_PROGRESS, FAMILIES
from discovery.workflows.distill_run import DistillRequest, distill_drift

EXAMPLE = "discovery distill --drift runs/lpo/best_drift.npz --env CartPole-v1 --check --out runs/distill"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "distill",
        help="fit closed-form drifts (DPO and dpo_poly) to a learned drift; heatmaps; --check trains them",
        description="Least-squares fit of closed-form drift families to a learned drift on a dense (ratio, "
        "advantage) grid "
        "and, with --env, on the (ratio, advantage) a learner actually sees. Writes fit_<family>.npz drift artifacts "
        "that train/evaluate accept, distill.json/.md (R², max error) and drift_heatmaps.png. Example: " + EXAMPLE,
    )
    parser.add_argument(
        "--drift", required=True, help="the drift to distil: an artifact path (.npz), or any drift spec"
    )
    parser.add_argument("--out", default=None, help="output directory (default: runs/distill_<time>)")
    parser.add_argument(
        "--env",
        default=None,
        help="also fit on (ratio, advantage) samples recorded while training with the drift on this env",
    )
    parser.add_argument(
        "--families",
        default=",".join(FAMILIES),
        help=f"closed forms to fit, comma-separated (default: {','.join(FAMILIES)}; dpo is always fitted)",
    )
    parser.add_argument(
        "--progress",
        default=",".join(f"{p:g}" for p in DEFAULT_PROGRESS),
        help="training-progress values to average over for drifts that depend on progress (TA-LPO)",
    )
    parser.add_argument(
        "--rollout-steps",
        type=float,
        default=100_000,
        help="env steps of the sample-recording run with --env (default: 1e5)",
    )
    parser.add_argument(
        "--max-samples", type=int, default=20_000, help="rollout samples kept for the fit (default: 20000)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="train the learned drift and each fit on the training env (--env, else the artifact's recorded env) "
        "through the evaluate pipeline and report each fit's return ÷ the learned drift's",
    )
    parser.add_argument("--check-seeds", type=int, default=4, help="seeds per drift for --check (default: 4)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--total-timesteps", type=float, default=None, help="env steps per seed for --check (default: the env's config)"
    )
    parser.add_argument("--overwrite", action="store_true", help="allow writing into an existing, non-empty --out")
    add_wandb_arguments(parser)
    parser.set_defaults(run=run)


def run(args, extra: list[str]) -> int:
    overrides = configs.parse_overrides(extra)
    return distill_drift(
        DistillRequest(
            check=args.check,
            check_seeds=args.check_seeds,
            drift=args.drift,
            env=args.env,
            families=args.families,
            max_samples=args.max_samples,
            out=args.out,
            overwrite=args.overwrite,
            progress=args.progress,
            rollout_steps=args.rollout_steps,
            seed=args.seed,
            total_timesteps=args.total_timesteps,
            wandb=args.wandb,
            wandb_entity=args.wandb_entity,
            wandb_group=args.wandb_group,
            wandb_project=args.wandb_project,
            overrides=overrides,
        )
    )
