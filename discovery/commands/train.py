"""``discovery train``: train all seeds of one env with one drift; write results, metrics and a plot."""

from __future__ import annotations

import drift_functions
from discovery.commands.arguments import add_run_arguments, add_wandb_arguments, overrides_from
from discovery.io import configs
from discovery.workflows.train import TrainRequest, train

EXAMPLE = "discovery train --env CartPole-v1 --drift dpo --seeds 8 --total-timesteps 500000 --out runs/cp_dpo"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train PPO-family learners with a given drift (all seeds in one jitted call)",
        description="Train with a drift. Any PPO config field can be overridden: --num-envs 8, --learning-rate=1e-3, "
        "and for Brax --backend spring, --episode-length 500. Example: " + EXAMPLE,
    )
    parser.add_argument(
        "--env",
        default="CartPole-v1",
        help="any gymnax or Brax environment name, or your own as module:factory "
        "or path/to/file.py:factory (default: CartPole-v1)",
    )
    parser.add_argument(
        "--profile",
        choices=(*configs.PROFILES, "auto"),
        default=None,
        help="the settings of a config with profiles (Brax): cpu (a few dozen envs) or accelerator (the published "
        "ones); default auto: cpu when JAX finds no accelerator",
    )
    parser.add_argument(
        "--drift",
        default="ppo",
        help=f"{' | '.join(drift_functions.registered())}, NAME:key=value,... (e.g. dpo:alpha=1.5), "
        "a shipped discovered drift (see `discovery drifts`), or a drift artifact path (default: ppo)",
    )
    parser.add_argument("--config", default=None, help="a train YAML to use instead of configs/train/<env>.yaml")
    add_run_arguments(
        parser,
        out_help="output directory (default: runs/<env>_<drift>_<time>)",
        seeds_default=8,
        seeds_help="number of seeds trained in parallel (default: 8)",
    )
    add_wandb_arguments(parser)
    parser.set_defaults(run=run)


def run(args, extra: list[str]) -> int:
    overrides = overrides_from(args, extra) | ({configs.PROFILE_KEY: args.profile} if args.profile else {})
    return train(
        TrainRequest(
            config=args.config,
            drift=args.drift,
            env=args.env,
            out=args.out,
            overwrite=args.overwrite,
            seed=args.seed,
            seeds=args.seeds,
            wandb=args.wandb,
            wandb_entity=args.wandb_entity,
            wandb_group=args.wandb_group,
            wandb_project=args.wandb_project,
            overrides=overrides,
        )
    )
