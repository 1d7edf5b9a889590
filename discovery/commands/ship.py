"""``discovery ship``: copy a meta-training run's drift into ``drift_functions/discovered/`` with its provenance."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from discovery import meta_training as mt
from discovery.artifacts import ArtifactError, load_artifact, save_artifact
from discovery.configs import REPO_ROOT
from discovery.drifts import DISCOVERED_DIR
from discovery.errors import UserError
from discovery.outputs import git_commit
from discovery.progress import status

EXAMPLE = ("discovery ship docs/meta_training/lpo_cpu_suite --name lpo_cpu_suite; "
           "discovery ship runs/distill/fit_dpo_poly.npz --name lpo_cpu_suite_poly")
CHOICES = ("best_validated_drift.npz", "drift.npz", "best_drift.npz")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "ship",
        help="ship a meta-training run's drift as `--drift STEM` (drift_functions/discovered/STEM.npz)",
        description="Copy a drift of a meta-training run into drift_functions/discovered/ with its provenance: the run's "
        "config, generations, env steps, CPU hours, validation score and the commit. RUN may also be one drift artifact "
        "(.npz, e.g. a `discovery distill` fit), shipped with its own metadata. Example: " + EXAMPLE,
    )
    parser.add_argument("run_dir", metavar="RUN", help="a meta-training run directory (with config.yaml and metrics.jsonl), "
                        "or a drift artifact (.npz)")
    parser.add_argument("--name", required=True, help="the stem users will type after --drift (letters, digits, _ and -)")
    parser.add_argument("--artifact", default=None, choices=CHOICES,
                        help="which of the run's drifts (default: the ES mean that scored best on the validation seeds, "
                        "or the last ES mean, drift.npz, for a run without validation)")
    parser.add_argument("--overwrite", action="store_true", help="replace a shipped drift of the same name")
    parser.set_defaults(run=run)


def _relative(path: Path) -> str:
    """``path`` relative to the repository when inside it (shipped metadata should not name one machine's folders)."""
    resolved = path.resolve()
    return os.path.relpath(resolved, REPO_ROOT) if resolved.is_relative_to(REPO_ROOT) else str(resolved)


def run(args, extra: list[str]) -> int:
    if extra:
        raise UserError(f"unexpected argument(s) {' '.join(extra)}; ship takes RUN, --name, --artifact, --overwrite")
    run_dir = Path(args.run_dir)
    single = run_dir.suffix == ".npz"
    if not single and (not (run_dir / "config.yaml").is_file() or not (run_dir / "metrics.jsonl").is_file()):
        raise UserError(f"{run_dir} is not a meta-training run (it needs config.yaml and metrics.jsonl) nor a drift artifact (.npz)")
    name = args.name.strip()
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        raise UserError(f"--name must be letters, digits, '_' and '-' (it becomes --drift NAME), got {args.name!r}")
    if single:
        source = run_dir
    elif args.artifact is not None:
        source = run_dir / args.artifact
    elif (run_dir / CHOICES[0]).is_file():
        source = run_dir / CHOICES[0]
    else:
        source = run_dir / "drift.npz"
        status(f"{run_dir} has no {CHOICES[0]} (it ran without validation): shipping its last ES mean, {source.name}")
    try:
        drift, params, metadata = load_artifact(source)
    except ArtifactError as error:
        raise UserError(str(error)) from None
    target = DISCOVERED_DIR / f"{name}.npz"
    if target.exists() and not args.overwrite:
        raise UserError(f"{target} already exists; pass --overwrite to replace it, or choose another --name")
    if single:
        DISCOVERED_DIR.mkdir(parents=True, exist_ok=True)
        save_artifact(target, drift, params, {**metadata, "label": name, "shipped_from": _relative(source),
                                              "commit": git_commit(), "shipped": datetime.now().isoformat(timespec="seconds")})
        status(f"shipped {source} as --drift {name} ({target}, {target.stat().st_size:,} bytes): {drift.spec}")
        return 0

    rows = mt.read_metrics(run_dir)
    generation = int(metadata.get("generation") or len(rows))
    spent = [r for r in rows if r["generation"] < generation]
    last = spent[-1] if spent else {}
    config = mt.load_meta_config(str(run_dir / "config.yaml"), {})
    shipped = {
        **metadata,
        "label": name,
        "shipped_from": _relative(source),
        "run": _relative(run_dir),
        "generation": generation,
        "env_steps_total": int(last.get("env_steps_total", 0)),
        "cpu_seconds_total": float(last.get("cpu_seconds_total", 0.0)),
        "meta_config": config.to_dict(),
        "commit": git_commit(),
        "shipped": datetime.now().isoformat(timespec="seconds"),
    }
    DISCOVERED_DIR.mkdir(parents=True, exist_ok=True)
    save_artifact(target, drift, params, shipped)
    status(f"shipped {source} as --drift {name} ({target}, {target.stat().st_size:,} bytes): {drift.spec}, generation "
           f"{generation}, {shipped['env_steps_total']:,} env steps, {shipped['cpu_seconds_total'] / 3600:.2f} CPU hours")
    return 0
