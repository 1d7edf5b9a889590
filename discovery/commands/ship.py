"""``discovery ship``: copy a meta-training run's drift into ``drift_functions/discovered/`` with its provenance."""

from __future__ import annotations

from discovery.workflows.ship import CHOICES, ShipRequest, ship

EXAMPLE = (
    "discovery ship docs/meta_training/lpo_cpu_suite --name lpo_cpu_suite; "
    "discovery ship runs/distill/fit_dpo_poly.npz --name lpo_cpu_suite_poly"
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "ship",
        help="ship a meta-training run's drift as `--drift STEM` (drift_functions/discovered/STEM.npz)",
        description="Copy a drift of a meta-training run into drift_functions/discovered/ with its provenance: the "
        "run's "
        "config, generations, env steps, CPU hours, validation score and the commit. RUN may also be one drift "
        "artifact "
        "(.npz, e.g. a `discovery distill` fit), shipped with its own metadata. Example: " + EXAMPLE,
    )
    parser.add_argument(
        "run_dir",
        metavar="RUN",
        help="a meta-training run directory (with config.yaml and metrics.jsonl), or a drift artifact (.npz)",
    )
    parser.add_argument(
        "--name", required=True, help="the stem users will type after --drift (letters, digits, _ and -)"
    )
    parser.add_argument(
        "--artifact",
        default=None,
        choices=CHOICES,
        help="which of the run's drifts (default: the ES mean that scored best on the validation seeds, "
        "or the last ES mean, drift.npz, for a run without validation)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a shipped drift of the same name")
    parser.set_defaults(run=run)


def run(args, extra: list[str]) -> int:
    return ship(
        ShipRequest(artifact=args.artifact, name=args.name, overwrite=args.overwrite, run_dir=args.run_dir, extra=extra)
    )
