"""``discovery meta-train``: evolve a learned drift (LPO / TA-LPO) with evolution strategies."""

from __future__ import annotations

import drift_functions
from discovery.commands.arguments import add_run_arguments, add_wandb_arguments, overrides_from
from discovery.runtime.progress import interruptible
from discovery.workflows.meta_run import MetaTrainRequest, meta_train

EXAMPLE = "discovery meta-train --config configs/meta/cartpole_demo.yaml --generations 3 --out /tmp/m"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "meta-train",
        help="meta-train a drift's parameters with evolution strategies, or with meta-gradients through the learner",
        description="Evolve drift parameters (fitness = final return of inner PPO runs that use the drift), or, "
        "with `outer: meta_gradient` in the config, follow the drift's gradient through K of the learner's updates. "
        "Extra --key value pairs override the config: top-level keys (generations, seeds, outer, ...), ES keys "
        "(population_size, sigma, algorithm, ...), meta-gradient keys (unroll, agents, ...), drift.<option>, or PPO "
        "keys applied to every task (total_timesteps, num_envs, ...). A key that names two fields needs its "
        "prefix: --es.learning-rate, --meta-gradient.learning-rate or --ppo.learning-rate. Example: " + EXAMPLE,
    )
    parser.add_argument("--config", default=None, help="meta-training YAML (configs/meta/*.yaml)")
    parser.add_argument(
        "--resume", default=None, metavar="DIR", help="continue the run in DIR from its last checkpoint"
    )
    parser.add_argument(
        "--drift",
        default=None,
        help=f"drift family whose parameters the ES searches: {', '.join(drift_functions.registered())} (default: "
        "from config)",
    )
    parser.add_argument("--generations", type=int, default=None, help="total generations (default: from config)")
    parser.add_argument(
        "--population-chunk",
        type=int,
        default=None,
        help="ES members per vmapped micro-batch (default: DISCOVERY_MICRO_BATCH learners' worth); smaller bounds "
        "memory; it is part of the arithmetic, the device count is not",
    )
    add_run_arguments(
        parser,
        out_help="new run directory (default: runs/meta_<time>)",
        seed_default=None,
        seeds_help="inner seeds per population member (default: from the config)",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="at the end, train the learned drift, the shipped discovered drifts, "
        "PPO and DPO on the first task on fresh seeds, and print the table with a one-line reading",
    )
    parser.add_argument(
        "--compare-seeds", type=int, default=16, help="fresh seeds per drift for --compare (default: 16)"
    )
    add_wandb_arguments(parser)
    parser.set_defaults(run=interruptible(run))


def _collect_overrides(args, extra) -> dict:
    overrides = overrides_from(args, extra)
    for name in ("drift", "generations", "population_chunk", "seeds", "seed"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    return overrides


def run(args, extra: list[str]) -> int:
    overrides = _collect_overrides(args, extra)
    return meta_train(
        MetaTrainRequest(
            compare=args.compare,
            compare_seeds=args.compare_seeds,
            config=args.config,
            out=args.out,
            overwrite=args.overwrite,
            resume=args.resume,
            wandb=args.wandb,
            wandb_entity=args.wandb_entity,
            wandb_group=args.wandb_group,
            wandb_project=args.wandb_project,
            overrides=overrides,
        )
    )
