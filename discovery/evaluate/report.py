"""Statistics, tables and W&B logging of an evaluation grid (:mod:`discovery.evaluate.grid`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from discovery.evaluate.plots import plot_normalized_scores
from discovery.outputs import atomic_write_csv, atomic_write_json, atomic_write_text, environment_info, slug
from discovery.plots import plot_learning_curves
from discovery.progress import status
from discovery.stats import aggregate_scores, score_summary
from discovery.wandb_logging import WandbRun

if TYPE_CHECKING:  # the grid imports this module
    from discovery.evaluate.grid import CellResult

RESULT_COLUMNS = [
    "env", "drift", "family", "drift_source", "seeds", "n_finite",
    "mean", "mean_ci_low", "mean_ci_high", "median", "median_ci_low", "median_ci_high",
    "iqm", "iqm_ci_low", "iqm_ci_high", "normalized_mean", "normalized_mean_ci_low", "normalized_mean_ci_high", "normalized_iqm", "reference",
    "env_steps_per_seed", "compile_seconds", "run_seconds", "wall_seconds", "resumed",
]


def summarise(results: list[CellResult], specs, reference: str | None, reps: int, seed: int):
    """Per-cell rows (rliable mean/median/IQM + bootstrap CIs) and the across-env aggregate.

    The aggregate uses the per-seed normalised scores of the envs where the
    reference's mean is positive and every drift has a finite return on every
    seed, as an rliable ``[seeds, envs]`` matrix per drift.
    """
    reference_mean: dict[str, float] = {}
    if reference is not None:
        for r in results:
            if r.cell.label == reference:
                finite = r.final_returns[np.isfinite(r.final_returns)]
                reference_mean[r.cell.env] = float(finite.mean()) if finite.size else float("nan")
    rows = []
    for r in results:
        summary = score_summary(r.final_returns, reps=reps, seed=seed)
        ref = reference_mean.get(r.cell.env, float("nan"))
        usable = np.isfinite(ref) and ref > 0
        rows.append({
            "env": r.cell.env,
            "drift": r.cell.label,
            "family": r.cell.drift.drift.name,
            "drift_source": r.cell.drift.source,
            "seeds": int(r.final_returns.shape[0]),
            "n_finite": summary.pop("n"),
            **summary,
            "normalized_mean": summary["mean"] / ref if usable else float("nan"),
            "normalized_mean_ci_low": summary["mean_ci_low"] / ref if usable else float("nan"),
            "normalized_mean_ci_high": summary["mean_ci_high"] / ref if usable else float("nan"),
            "normalized_iqm": summary["iqm"] / ref if usable else float("nan"),
            "reference": reference if usable else "",
            "env_steps_per_seed": int(r.env_steps[-1]),
            "compile_seconds": round(r.compile_seconds, 3),
            "run_seconds": round(r.run_seconds, 3),
            "wall_seconds": round(r.wall_seconds, 3),
            "resumed": r.resumed,
            "final_returns": r.final_returns.tolist(),
        })
    envs = list(specs)
    labels = list(dict.fromkeys(r.cell.label for r in results))
    by_cell = {(r.cell.env, r.cell.label): r.final_returns for r in results}
    usable_envs = [
        env for env in envs
        if np.isfinite(reference_mean.get(env, np.nan)) and reference_mean[env] > 0
        and all(np.all(np.isfinite(by_cell[(env, label)])) for label in labels)
    ]
    per_env_scores = {label: {env: by_cell[(env, label)] / reference_mean[env] for env in usable_envs} for label in labels}
    aggregate: dict[str, dict[str, float]] = {}
    if usable_envs:
        matrices = {label: np.stack([per_env_scores[label][env] for env in usable_envs], axis=1) for label in labels}
        aggregate = aggregate_scores(matrices, reps=reps, seed=seed)
        for label in labels:
            aggregate[label]["envs"] = list(usable_envs)
    return rows, aggregate


# ---- reports ----------------------------------------------------------------


def _fmt(value: float, digits: int = 1) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _fmt_ci(point: float, low: float, high: float, digits: int = 1) -> str:
    if not np.isfinite(point):
        return "–"
    return f"{point:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def results_markdown(rows, aggregate, specs, reference: str | None, num_seeds: int, overrides: dict | None = None) -> str:
    lines = [
        "# Evaluation results",
        "",
        f"Final return = mean return of the episodes that ended in the last {int(100 * next(iter(specs.values()))[0].ppo.final_return_window)}% "
        f"of updates, per seed; {num_seeds} seeds per cell, the same seeds for every drift. "
        "Brackets: 95% bootstrap confidence intervals (rliable).",
        "",
        f"| env | drift | mean [95% CI] | median | IQM [95% CI] | ÷ {reference or 'PPO'} (mean) | seeds | env steps | wall (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        seeds = f"{row['n_finite']}/{row['seeds']}" if row["n_finite"] != row["seeds"] else str(row["seeds"])
        lines.append(
            f"| {row['env']} | {row['drift']} | {_fmt_ci(row['mean'], row['mean_ci_low'], row['mean_ci_high'])} | "
            f"{_fmt(row['median'])} | {_fmt_ci(row['iqm'], row['iqm_ci_low'], row['iqm_ci_high'])} | "
            f"{_fmt(row['normalized_mean'], 2)} | {seeds} | {row['env_steps_per_seed']:,} | {_fmt(row['wall_seconds'])} |"
        )
    lines.append("")
    if aggregate:
        envs = next(iter(aggregate.values()))["envs"]
        lines += [
            f"## Across environments (score ÷ {reference}'s mean return on the same env)",
            "",
            f"Stratified bootstrap over seeds within each of {len(envs)} env(s): {', '.join(envs)}.",
            "",
            "| drift | IQM [95% CI] | mean [95% CI] | median [95% CI] |",
            "|---|---|---|---|",
        ]
        for label, agg in aggregate.items():
            lines.append(
                f"| {label} | {_fmt_ci(agg['iqm'], agg['iqm_ci_low'], agg['iqm_ci_high'], 3)} | "
                f"{_fmt_ci(agg['mean'], agg['mean_ci_low'], agg['mean_ci_high'], 3)} | "
                f"{_fmt_ci(agg['median'], agg['median_ci_low'], agg['median_ci_high'], 3)} |"
            )
        lines.append("")
    elif reference is None:
        lines += ["No `ppo`/`ppo_clip` drift in the grid (and no `--reference`): normalised scores are left blank.", ""]
    else:
        lines += [f"No env had a positive mean return for {reference} with finite returns for every drift: no aggregate.", ""]
    lines += ["## Settings", "", "| env | config | env steps per seed | envs × steps | updates | learning rate |", "|---|---|---|---|---|---|"]
    for env, (spec, fallback) in specs.items():
        ppo = spec.ppo
        lines.append(f"| {env} | {spec.source}{' (family default)' if fallback else ''} | {ppo.env_steps:,} | "
                     f"{ppo.num_envs} × {ppo.num_steps} | {ppo.num_updates:,} | {ppo.learning_rate:g} |")
    if overrides:
        lines += ["", "Command-line overrides applied to every env: " + ", ".join(f"`{k}={v}`" for k, v in overrides.items()) + "."]
    lines.append("")
    return "\n".join(lines)


def write_reports(out: Path, results, rows, aggregate, specs, reference, grid) -> list[Path]:
    files = []
    csv_rows = [[row[c] for c in RESULT_COLUMNS] for row in rows]
    files.append(atomic_write_csv(out / "results.csv", RESULT_COLUMNS, csv_rows))
    files.append(atomic_write_json(out / "results.json", {
        "grid": grid,
        "reference": reference,
        "normalization": "final return ÷ mean final return of the reference drift on the same env "
                         "(blank where the reference is missing or its mean is not positive)",
        "rows": rows,
        "aggregate": aggregate,
        "environment": environment_info(),
    }))
    files.append(atomic_write_text(out / "results.md", results_markdown(rows, aggregate, specs, reference, grid["seeds"], grid["overrides"])))
    for env in specs:
        env_results = [r for r in results if r.cell.env == env]
        curves = {r.cell.label: r.curves for r in env_results}
        files.append(plot_learning_curves(curves, env_results[0].env_steps, out / f"curves_{slug(env)}.png",
                                          title=f"{env} ({grid['seeds']} seeds, mean ± 95% CI)"))
    if aggregate:
        files.append(plot_normalized_scores(rows, aggregate, reference, out / "normalized_scores.png"))
    else:
        status("[yellow]no reference drift with a positive return: skipping normalized_scores.png[/yellow]")
    return files


# ---- W&B ----------------------------------------------------------------------


def log_cell_to_wandb(options, out: Path, cell, result, num_seeds: int, seed: int) -> None:
    """One W&B run per cell: its per-update curves and final-return summary (``options``: a ``WandbOptions``)."""
    if options.mode == "off":
        return
    config = {"env": cell.env, "drift": cell.label, "drift_source": cell.drift.source, "drift_family": cell.drift.drift.name,
              "drift_options": cell.drift.drift.options, "train": cell.spec.to_dict(), "seeds": num_seeds, "seed": seed}
    run = WandbRun(options.mode, out, project=options.project, entity=options.entity, group=options.group or cell.env,
                   name=f"{cell.env}/{cell.label}", config=config, job_type="evaluate", tags=["evaluate"])
    series = {f"{name}/mean": np.nanmean(values, axis=0) for name, values in result.metrics.items()}
    series |= {f"episode_return/seed{s}": result.metrics["episode_return"][s] for s in range(num_seeds)}
    run.log_series(series, result.env_steps)
    summary = score_summary(result.final_returns, reps=500, seed=seed)
    run.summary({f"final_return_{k}": v for k, v in summary.items()} | {"compile_seconds": result.compile_seconds,
                                                                          "run_seconds": result.run_seconds})
    run.finish()


def log_summary_to_wandb(options, out: Path, grid, rows, aggregate, files) -> None:
    if options.mode == "off":
        return
    run = WandbRun(options.mode, out, project=options.project, entity=options.entity, group=options.group or "evaluate-summary",
                   name="evaluate/summary", config=grid, job_type="evaluate-summary", tags=["evaluate"])
    run.log_table("results", RESULT_COLUMNS, [[row[c] for c in RESULT_COLUMNS] for row in rows])
    if aggregate:
        header = ["drift", "iqm", "iqm_ci_low", "iqm_ci_high", "mean", "mean_ci_low", "mean_ci_high"]
        run.log_table("aggregate", header, [[label] + [agg[k] for k in header[1:]] for label, agg in aggregate.items()])
    for path in files:
        if path.suffix == ".png":
            run.log_image(path.stem, path)
    run.finish()
