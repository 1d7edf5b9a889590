"""``discovery compare-runs``: meta-training runs' validation against env steps and CPU hours, in one figure."""

from __future__ import annotations

from discovery.runtime.errors import UserError
from discovery.workflows.compare_runs import CompareRunsRequest, compare_runs

EXAMPLE = (
    "discovery compare-runs runs/compare_es runs/compare_mg --labels ES meta-gradients --out docs/img/es_vs_mg.png"
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare-runs",
        help="plot meta-training runs' validation scores against env steps and CPU hours (ES vs meta-gradients, "
        "ablations)",
        description="One figure with every run's validation score (random = 0, PPO = 1) against the env steps and "
        "the CPU hours it had spent, so outer loops or ablations compare at equal cost. Example: " + EXAMPLE,
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="meta-training run directories (with metrics.jsonl)")
    parser.add_argument("--out", required=True, help="the figure to write (.png)")
    parser.add_argument("--labels", nargs="+", default=None, help="one legend label per run (default: directory names)")
    parser.add_argument("--title", default=None, help="the figure's title (default: the labels)")
    parser.set_defaults(run=run)


def run(args, extra: list[str]) -> int:
    if extra:
        takes = "compare-runs takes RUN..., --out, --labels, --title"
        raise UserError(f"unexpected argument(s) {' '.join(extra)}; {takes}")
    return compare_runs(CompareRunsRequest(runs=args.runs, out=args.out, labels=args.labels, title=args.title))
