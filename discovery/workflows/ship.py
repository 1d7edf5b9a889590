"""The `discovery ship` workflow."""

from __future__ import annotations

import dataclasses
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from discovery.io.artifacts import ArtifactError, load_artifact, save_artifact
from discovery.io.configs import REPO_ROOT
from discovery.io.drift_registry import DISCOVERED_DIR
from discovery.io.outputs import git_commit
from discovery.runtime.errors import UserError
from discovery.runtime.progress import status
from discovery.workflows.meta_checkpoints import read_metrics
from discovery.workflows.meta_config import load_meta_config

CHOICES = ("best_validated_drift.npz", "drift.npz", "best_drift.npz")  # a run's drifts, in the order ship prefers them


def _relative(path: Path) -> str:
    """``path`` relative to the repository when inside it (shipped metadata should not name one machine's folders)."""
    resolved = path.resolve()
    return os.path.relpath(resolved, REPO_ROOT) if resolved.is_relative_to(REPO_ROOT) else str(resolved)


# ---- the `discovery ship` workflow ----------------------------------------


@dataclasses.dataclass(frozen=True)
class ShipRequest:
    """What `discovery ship` asks for (its parsed arguments)."""

    artifact: Any = None
    name: Any = None
    overwrite: Any = None
    run_dir: Any = None
    extra: Any = None


def ship(request: ShipRequest) -> int:
    """Run `discovery ship` for ``request``; a user error raises :class:`UserError`."""
    if request.extra:
        raise UserError(
            f"unexpected argument(s) {' '.join(request.extra)}; ship takes RUN, --name, --artifact, --overwrite"
        )
    run_dir = Path(request.run_dir)
    single = run_dir.suffix == ".npz"
    if not single and (not (run_dir / "config.yaml").is_file() or not (run_dir / "metrics.jsonl").is_file()):
        raise UserError(
            f"{run_dir} is not a meta-training run (it needs config.yaml and metrics.jsonl) nor a drift artifact (.npz)"
        )
    name = request.name.strip()
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        raise UserError(f"--name must be letters, digits, '_' and '-' (it becomes --drift NAME), got {request.name!r}")
    if single:
        source = run_dir
    elif request.artifact is not None:
        source = run_dir / request.artifact
    elif (run_dir / CHOICES[0]).is_file():
        source = run_dir / CHOICES[0]
    else:
        source = run_dir / "drift.npz"
        by_gradient = load_meta_config(str(run_dir / "config.yaml"), {}).outer == "meta_gradient"
        held = "drift" if by_gradient else "ES mean"
        status(f"{run_dir} has no {CHOICES[0]} (it ran without validation): shipping its last {held}, {source.name}")
    try:
        drift, params, metadata = load_artifact(source)
    except ArtifactError as error:
        raise UserError(str(error)) from None
    target = DISCOVERED_DIR / f"{name}.npz"
    if target.exists() and not request.overwrite:
        raise UserError(f"{target} already exists; pass --overwrite to replace it, or choose another --name")
    if single:
        DISCOVERED_DIR.mkdir(parents=True, exist_ok=True)
        save_artifact(
            target,
            drift,
            params,
            {
                **metadata,
                "label": name,
                "shipped_from": _relative(source),
                "commit": git_commit(),
                "shipped": datetime.now().isoformat(timespec="seconds"),
            },
        )
        status(f"shipped {source} as --drift {name} ({target}, {target.stat().st_size:,} bytes): {drift.spec}")
        return 0

    rows = read_metrics(run_dir)
    generation = int(metadata.get("generation") or len(rows))
    spent = [r for r in rows if r["generation"] < generation]
    last = spent[-1] if spent else {}
    config = load_meta_config(str(run_dir / "config.yaml"), {})
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
    status(
        f"shipped {source} as --drift {name} ({target}, {target.stat().st_size:,} bytes): {drift.spec}, generation "
        f"{generation}, {shipped['env_steps_total']:,} env steps, {shipped['cpu_seconds_total'] / 3600:.2f} CPU hours"
    )
    return 0
