"""Arguments that several commands share, declared once, and the command-line overrides they feed."""

from __future__ import annotations

import argparse

from discovery.io import configs
from discovery.runtime.wandb_logging import MODES

OVERWRITE_HELP = "allow writing into an existing, non-empty --out"


def add_run_arguments(
    parser: argparse.ArgumentParser,
    *,
    out_help: str,
    overwrite_help: str = OVERWRITE_HELP,
    learners: bool = True,
    seeds_default: int | None = None,
    seeds_help: str = "seeds per learner setting (default: from the config)",
    seed_default: int | None = 0,
) -> None:
    """``--out`` and ``--overwrite``; with ``learners`` also ``--seeds``, ``--seed`` and ``--total-timesteps``.

    ``--total-timesteps`` is kept as typed and becomes an override, so it is
    coerced once, like any PPO field (``5e5`` is read as the integer 500000).
    """
    if learners:
        parser.add_argument("--seeds", type=int, default=seeds_default, help=seeds_help)
        seed_text = f"default: {seed_default}" if seed_default is not None else "default: from the config, else 0"
        parser.add_argument("--seed", type=int, default=seed_default, help=f"base random seed ({seed_text})")
        parser.add_argument(
            "--total-timesteps",
            default=None,
            metavar="N",
            help="env steps per learner, e.g. 5e5 (default: from the env's config)",
        )
    parser.add_argument("--out", default=None, help=out_help)
    parser.add_argument("--overwrite", action="store_true", help=overwrite_help)


def overrides_from(args: argparse.Namespace, extra: list[str]) -> dict[str, str]:
    """The ``--key value`` overrides of a command line, ``--total-timesteps`` included."""
    overrides = configs.parse_overrides(extra)
    if getattr(args, "total_timesteps", None) is not None:
        overrides["total_timesteps"] = args.total_timesteps
    return overrides


def add_wandb_arguments(parser) -> None:
    parser.add_argument("--wandb", choices=MODES, default="off", help="log to Weights & Biases (default: off)")
    parser.add_argument("--wandb-project", default="discovery", help="W&B project (default: discovery)")
    parser.add_argument("--wandb-entity", default=None, help="W&B entity (team or user)")
    parser.add_argument("--wandb-group", default=None, help="W&B group (runs compared together)")
