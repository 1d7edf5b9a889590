"""Compare meta-training runs at equal cost: their validation scores against env steps and CPU hours, one figure."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from discovery.reporting.plots import plot_validation_curves
from discovery.runtime.errors import UserError
from discovery.runtime.progress import status
from discovery.workflows.meta_checkpoints import read_metrics


@dataclasses.dataclass(frozen=True)
class CompareRunsRequest:
    runs: list[str]
    out: str
    labels: list[str] | None = None
    title: str | None = None


def compare_runs(request: CompareRunsRequest) -> int:
    """Draw every run's validation curve (see :func:`plot_validation_curves`) and print where each ended."""
    labels = request.labels or [Path(run).name for run in request.runs]
    if len(labels) != len(request.runs):
        raise UserError(f"--labels gives {len(labels)} names for {len(request.runs)} runs; give one per run")
    curves = {}
    for label, run in zip(labels, request.runs):
        rows = read_metrics(Path(run))
        if not rows:
            raise UserError(f"{run} is not a meta-training run with metrics (no {Path(run) / 'metrics.jsonl'})")
        validated = [row for row in rows if row.get("validation") and row["validation"]["score"] is not None]
        if not validated:
            raise UserError(f"{run} has no validation yet (set validate_every in its config, or let it run longer)")
        curves[label] = rows
        last = validated[-1]
        best = max(validated, key=lambda row: row["validation"]["score"])
        status(
            f"{label}: {len(rows)} generations, {rows[-1]['env_steps_total']:.3g} env steps, "
            f"{rows[-1]['cpu_seconds_total'] / 3600:.2f} CPU h; validation last {last['validation']['score']:.3f} "
            f"(generation {last['generation'] + 1}), best {best['validation']['score']:.3f} "
            f"(generation {best['generation'] + 1})"
        )
    path = plot_validation_curves(curves, request.out, request.title or " vs ".join(labels))
    status(f"wrote {path}")
    return 0
