"""``discovery plot-drift``: heatmaps of drift(r, Â) and ∂drift/∂r for any drifts, beside DPO and PPO-clip."""

from __future__ import annotations

from pathlib import Path

from discovery.io.configs import split_list
from discovery.io.drift_registry import resolve_drift, split_drift_list
from discovery.reporting.drift_plots import panels_for, plot_drift_panels, reference_panels
from discovery.runtime.errors import UserError
from discovery.runtime.progress import status

EXAMPLE = "discovery plot-drift --drift runs/lpo/best_drift.npz,dpo:alpha=1.5 --out drift.png"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot-drift",
        help="heatmaps of drift(ratio, advantage) and its ratio-derivative for any drift, beside DPO and PPO-clip",
        description="Draw drift(r, Â) and ∂drift/∂r on r ∈ [0.05, 3] × Â ∈ [−3, 3] for each drift (names, "
        "NAME:key=value "
        "or artifact paths, comma-separated), on shared axes and colour scales, with DPO(2, 0.6) and PPO-clip for "
        "reference. Drifts that depend on training progress (TA-LPO) get one panel per --progress value. Example: "
        + EXAMPLE,
    )
    parser.add_argument("--drift", required=True, help="drift(s) to draw, comma-separated")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument(
        "--progress", default="0,0.5,1", help="progress values for progress-dependent drifts (default: 0,0.5,1)"
    )
    parser.add_argument("--no-reference", action="store_true", help="leave out the DPO(2, 0.6) and PPO-clip panels")
    parser.add_argument("--title", default=None, help="figure title")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    parser.set_defaults(run=run)


def run(args, extra: list[str]) -> int:
    if extra:
        raise UserError(f"unexpected argument(s) {' '.join(extra)}")
    try:
        progress = [float(p) for p in split_list(args.progress)]
    except ValueError:
        progress = []
    if not progress or any(not 0.0 <= p <= 1.0 for p in progress):
        raise UserError(f"--progress must be comma-separated numbers in [0, 1], got {args.progress!r}")
    texts = split_drift_list(args.drift)
    if not texts:
        raise UserError("no drift given (e.g. --drift dpo)")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise UserError(f"--out must be a .png file, got {out}")
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a .png file name")
    if out.exists() and not args.overwrite:
        raise UserError(f"--out {out} exists; pass --overwrite to replace it, or choose another file")
    groups = [panels_for(resolve_drift(text), progress_values=progress) for text in texts]
    if not args.no_reference:
        groups.append(reference_panels())
    path = plot_drift_panels(groups, out, title=args.title)
    status(f"wrote {path} ({sum(len(group) for group in groups)} panels of {len(groups)} drifts)")
    return 0
