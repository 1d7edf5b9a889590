"""Statistics, tables and W&B logging of an evaluation grid (:mod:`discovery.workflows.evaluate.grid`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from discovery.io.outputs import atomic_write_csv, atomic_write_json, atomic_write_text, environment_info, slug
from discovery.io.suites import ROLES
from discovery.reporting.plots import plot_learning_curves
from discovery.reporting.stats import SEED_SUMMARY_COLUMNS, score_summary
from discovery.runtime.progress import status
from discovery.runtime.wandb_logging import WandbRun
from discovery.workflows.evaluate.cells import CellResult
from discovery.workflows.evaluate.plots import plot_normalized_scores
from discovery.workflows.evaluate.suite_scores import normalized_scores, role_statistics

RESULT_COLUMNS = [
    "task",
    "env",
    "role",
    "drift",
    "family",
    "drift_source",
    *SEED_SUMMARY_COLUMNS,
    "random_return",
    "reference",
    "normalized_mean",
    "normalized_mean_ci_low",
    "normalized_mean_ci_high",
    "normalized_iqm",
    "normalized_iqm_ci_low",
    "normalized_iqm_ci_high",
    "return_ratio",
    "env_steps_per_seed",
    "compile_seconds",
    "run_seconds",
    "wall_seconds",
    "resumed",
]
NORMALIZATION = (
    "(R − R_random) / (R_ref − R_random) per task: R_random = a uniform-random policy's mean return, "
    "R_ref = the reference drift's mean final return on the same task and seeds (0 = random, 1 = reference)"
)


def summarise(
    results: list[CellResult], tasks, reference: str | None, random_returns: dict[str, float], reps: int, seed: int
):
    """Per-cell rows (rliable mean/median/IQM + bootstrap CIs, raw and normalised) and aggregates.

    Aggregates are computed over ``all`` tasks and, for suites, over each role
    separately (:func:`discovery.workflows.evaluate.suite_scores.role_statistics`):
    IQM / mean / median of normalised scores as rliable ``[seeds, tasks]``
    matrices, and the probability of improvement of each drift over the reference.
    """
    reference_mean: dict[str, float] = {}
    for r in results:
        if reference is not None and r.cell.label == reference:
            finite = r.final_returns[np.isfinite(r.final_returns)]
            reference_mean[r.cell.task.label] = float(finite.mean()) if finite.size else float("nan")
    rows, scores = [], {}
    for r in results:
        task = r.cell.task.label
        summary = score_summary(r.final_returns, reps=reps, seed=seed)
        ref, low = reference_mean.get(task, float("nan")), random_returns[task]
        normalized = normalized_scores(r.final_returns, low, ref)
        scores.setdefault(r.cell.label, {})[task] = normalized
        norm = score_summary(normalized, reps=reps, seed=seed)
        rows.append(
            {
                "task": task,
                "env": r.cell.env,
                "role": r.cell.task.role or "",
                "drift": r.cell.label,
                "family": r.cell.drift.drift.name,
                "drift_source": r.cell.drift.source,
                "seeds": int(r.final_returns.shape[0]),
                "n_finite": summary.pop("n"),
                **summary,
                "random_return": low,
                "reference": reference or "",
                **{
                    f"normalized_{k}": norm[k]
                    for k in ("mean", "mean_ci_low", "mean_ci_high", "iqm", "iqm_ci_low", "iqm_ci_high")
                },
                "return_ratio": summary["mean"] / ref if np.isfinite(ref) and ref > 0 else float("nan"),
                "env_steps_per_seed": int(r.env_steps[-1]),
                "compile_seconds": round(r.compile_seconds, 3),
                "run_seconds": round(r.run_seconds, 3),
                "wall_seconds": round(r.wall_seconds, 3),
                "resumed": r.resumed,
                "final_returns": r.final_returns.tolist(),
            }
        )
    groups = {"all": [t.label for t in tasks]}
    for role in ROLES:
        labels = [t.label for t in tasks if t.role == role]
        if labels:
            groups[role] = labels
    aggregates = role_statistics(scores, groups, reference, reps=reps, seed=seed) if reference else {}
    return rows, aggregates


# ---- reports ----------------------------------------------------------------


def _fmt(value: float, digits: int = 1) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _fmt_ci(point: float, low: float, high: float, digits: int = 1) -> str:
    if point is None or not np.isfinite(point):
        return "–"
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


GROUP_TITLES = {"all": "all tasks", "train": "training tasks", "held_out": "held-out tasks"}


def aggregate_markdown(aggregates: dict, reference: str | None) -> list[str]:
    """One table per group: IQM, mean and P(improvement over the reference), each with its 95% CI."""
    lines = []
    for group, stats in aggregates.items():
        if group == "all" and len(aggregates) > 1:
            continue  # a suite reports its roles separately: training tasks say nothing about held-out ones
        title = GROUP_TITLES.get(group, group)
        if not stats["tasks"]:
            lines += [
                f"## Aggregate over {title}",
                "",
                f"No task had finite returns for every drift: no aggregate (dropped: {', '.join(stats['dropped'])}).",
                "",
            ]
            continue
        lines += [
            f"## Aggregate over {title} ({len(stats['tasks'])}: {', '.join(stats['tasks'])})",
            "",
            "Normalised score, stratified bootstrap over seeds within each task (rliable)"
            + (f"; dropped for non-finite returns: {', '.join(stats['dropped'])}" if stats["dropped"] else "")
            + ".",
            "",
            f"| drift | IQM [95% CI] | mean [95% CI] | P(better than {reference}) [95% CI] |",
            "|---|---|---|---|",
        ]
        for label, agg in stats["aggregate"].items():
            poi = stats["improvement"].get(label)
            lines.append(
                f"| {label} | {_fmt_ci(agg['iqm'], agg['iqm_ci_low'], agg['iqm_ci_high'], 3)} | "
                f"{_fmt_ci(agg['mean'], agg['mean_ci_low'], agg['mean_ci_high'], 3)} | "
                f"{_fmt_ci(*poi, 2) if poi else '–'} |"
            )
        lines.append("")
    return lines


def results_markdown(
    rows, aggregates, tasks, reference: str | None, num_seeds: int, overrides: dict | None = None
) -> str:
    window = int(100 * tasks[0].spec.ppo.final_return_window)
    lines = [
        "# Evaluation results",
        "",
        f"Final return = mean return of the episodes that ended in the last {window}% of updates, per seed; "
        f"{num_seeds} seeds per cell, the same seeds for every drift. Normalised score = {NORMALIZATION}. "
        "Brackets: 95% bootstrap confidence intervals (rliable).",
        "",
        "| task | role | drift | mean [95% CI] | IQM [95% CI] | normalised IQM [95% CI] | seeds | env steps |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        seeds = f"{row['n_finite']}/{row['seeds']}" if row["n_finite"] != row["seeds"] else str(row["seeds"])
        lines.append(
            f"| {row['task']} | {row['role'] or '–'} | {row['drift']} | "
            f"{_fmt_ci(row['mean'], row['mean_ci_low'], row['mean_ci_high'])} | "
            f"{_fmt_ci(row['iqm'], row['iqm_ci_low'], row['iqm_ci_high'])} | "
            f"{_fmt_ci(row['normalized_iqm'], row['normalized_iqm_ci_low'], row['normalized_iqm_ci_high'], 2)} | "
            f"{seeds} | {row['env_steps_per_seed']:,} |"
        )
    lines.append("")
    if aggregates:
        lines += aggregate_markdown(aggregates, reference)
    else:
        lines += ["No `ppo`/`ppo_clip` drift in the grid (and no `--reference`): normalised scores are left blank.", ""]
    random_by_task = {row["task"]: row["random_return"] for row in rows}
    lines += [
        "## Settings",
        "",
        "| task | env | config | env steps per seed | envs × steps | epochs | learning rate | random return |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        ppo = task.spec.ppo
        lines.append(
            f"| {task.label} | {task.env} | {task.spec.source}{' (family default)' if task.fallback else ''} | "
            f"{ppo.env_steps:,} | {ppo.num_envs} × {ppo.num_steps} | {ppo.update_epochs} | {ppo.learning_rate:g} | "
            f"{_fmt(random_by_task.get(task.label, float('nan')), 2)} |"
        )
    if overrides:
        lines += [
            "",
            "Command-line overrides applied to every task: "
            + ", ".join(f"`{k}={v}`" for k, v in overrides.items())
            + ".",
        ]
    lines.append("")
    return "\n".join(lines)


def write_reports(out: Path, results, rows, aggregates, tasks, reference, grid) -> list[Path]:
    files = []
    csv_rows = [[row[c] for c in RESULT_COLUMNS] for row in rows]
    files.append(atomic_write_csv(out / "results.csv", RESULT_COLUMNS, csv_rows))
    files.append(
        atomic_write_json(
            out / "results.json",
            {
                "grid": grid,
                "reference": reference,
                "normalization": NORMALIZATION,
                "rows": rows,
                "aggregates": aggregates,
                "environment": environment_info(),
            },
        )
    )
    files.append(
        atomic_write_text(
            out / "results.md", results_markdown(rows, aggregates, tasks, reference, grid["seeds"], grid["overrides"])
        )
    )
    for task in tasks:
        task_results = [r for r in results if r.cell.task.label == task.label]
        curves = {r.cell.label: r.curves for r in task_results}
        files.append(
            plot_learning_curves(
                curves,
                task_results[0].env_steps,
                out / f"curves_{slug(task.label)}.png",
                title=f"{task.label} ({grid['seeds']} seeds)",
            )
        )
    if aggregates and any(stats["tasks"] for stats in aggregates.values()):
        files.append(plot_normalized_scores(rows, aggregates, reference, out / "normalized_scores.png"))
    else:
        status(
            "[yellow]no reference drift, or no task with finite returns for every drift: skipping "
            "normalized_scores.png[/yellow]"
        )
    return files


# ---- W&B ----------------------------------------------------------------------


def log_cell_to_wandb(options, out: Path, cell, result, num_seeds: int, seed: int) -> None:
    """One W&B run per cell: its per-update curves and final-return summary (``options``: a ``WandbOptions``)."""
    if options.mode == "off":
        return
    config = {
        "task": cell.task.label,
        "env": cell.env,
        "role": cell.task.role,
        "drift": cell.label,
        "drift_source": cell.drift.source,
        "drift_family": cell.drift.drift.name,
        "drift_options": cell.drift.drift.options,
        "train": cell.spec.to_dict(),
        "seeds": num_seeds,
        "seed": seed,
    }
    run = WandbRun(
        options.mode,
        out,
        project=options.project,
        entity=options.entity,
        group=options.group or cell.task.label,
        name=f"{cell.task.label}/{cell.label}",
        config=config,
        job_type="evaluate",
        tags=["evaluate"],
    )
    series = {f"{name}/mean": np.nanmean(values, axis=0) for name, values in result.metrics.items()}
    series |= {f"episode_return/seed{s}": result.metrics["episode_return"][s] for s in range(num_seeds)}
    run.log_series(series, result.env_steps)
    summary = score_summary(result.final_returns, reps=500, seed=seed)
    run.summary(
        {f"final_return_{k}": v for k, v in summary.items()}
        | {"compile_seconds": result.compile_seconds, "run_seconds": result.run_seconds}
    )
    run.finish()


def log_summary_to_wandb(options, out: Path, grid, rows, aggregates, files) -> None:
    if options.mode == "off":
        return
    run = WandbRun(
        options.mode,
        out,
        project=options.project,
        entity=options.entity,
        group=options.group or "evaluate-summary",
        name="evaluate/summary",
        config=grid,
        job_type="evaluate-summary",
        tags=["evaluate"],
    )
    run.log_table("results", RESULT_COLUMNS, [[row[c] for c in RESULT_COLUMNS] for row in rows])
    header = ["drift", "iqm", "iqm_ci_low", "iqm_ci_high", "mean", "mean_ci_low", "mean_ci_high", "p_improvement"]
    for group, stats in aggregates.items():
        if stats["aggregate"]:
            run.log_table(
                f"aggregate_{group}",
                header,
                [
                    [label] + [agg[k] for k in header[1:-1]] + [stats["improvement"].get(label, (float("nan"),))[0]]
                    for label, agg in stats["aggregate"].items()
                ],
            )
    for path in files:
        if path.suffix == ".png":
            run.log_image(path.stem, path)
    run.finish()
