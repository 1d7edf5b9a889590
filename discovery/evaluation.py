"""The evaluation grid behind ``discovery evaluate`` (and ``discovery distill --check``).

Every (drift, env) *cell* trains all its seeds in one jitted, vmapped call
(:func:`discovery.training.run_seeds`) with that env's settings from
``configs/train/`` and the same seed keys for every drift, so comparisons
between drifts on one env are paired.

Layout of an evaluation directory::

    evaluation.json              the grid last asked for (drifts, envs, seeds, overrides)
    cells/<env>__<drift>.npz     per-update metrics [seeds, updates] + final returns of one cell
    cells/<env>__<drift>.json    its summary and *fingerprint*; written last, so it marks the cell done
    results.csv / .json / .md    one row per drift × env, plus the across-env aggregate
    curves_<env>.png             learning curves of every drift on that env (mean ± 95% CI)
    normalized_scores.png        per-env and aggregate scores normalised by the reference drift

Resuming: a cell whose JSON exists with the same fingerprint (env settings,
drift family/options/parameter hash, seeds, base seed) is loaded, not rerun;
one with a different fingerprint is refused (a different evaluation lives
there) unless ``overwrite`` is set.

Normalisation: each final return is divided by the mean final return of the
*reference* drift on the same env. The reference is the ``ppo_clip`` entry of
the grid (``ppo``; the one with the default ε = 0.2 if there are several)
unless one is named; with none in the grid, or where the reference's mean
return is not positive, the normalised columns are left blank.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import jax
import numpy as np

from discovery import configs
from discovery.drifts import ResolvedDrift, resolve_drift
from discovery.errors import UserError
from discovery.outputs import atomic_write_bytes, atomic_write_csv, atomic_write_json, atomic_write_text, environment_info
from discovery.progress import make_progress, status
from discovery.stats import aggregate_scores, score_summary
from discovery.training import TrainingResult, run_seeds

CELL_DIR = "cells"
GRID_FILE = "evaluation.json"
RESULT_COLUMNS = [
    "env", "drift", "family", "drift_source", "seeds", "n_finite",
    "mean", "mean_ci_low", "mean_ci_high", "median", "median_ci_low", "median_ci_high",
    "iqm", "iqm_ci_low", "iqm_ci_high", "normalized_mean", "normalized_mean_ci_low", "normalized_mean_ci_high", "normalized_iqm", "reference",
    "env_steps_per_seed", "compile_seconds", "run_seconds", "wall_seconds", "resumed",
]


@dataclasses.dataclass(frozen=True)
class WandbOptions:
    mode: str = "off"
    project: str = "discovery"
    entity: str | None = None
    group: str | None = None


@dataclasses.dataclass
class Cell:
    env: str
    spec: configs.TrainSpec
    drift: ResolvedDrift
    name: str  # file stem under cells/

    @property
    def label(self) -> str:
        return self.drift.label


@dataclasses.dataclass
class CellResult:
    cell: Cell
    final_returns: np.ndarray  # [seeds]
    curves: np.ndarray  # episode_return [seeds, updates]
    env_steps: np.ndarray  # [updates]
    compile_seconds: float
    run_seconds: float
    wall_seconds: float
    resumed: bool


@dataclasses.dataclass
class EvaluationReport:
    out: Path
    rows: list[dict[str, Any]]
    aggregate: dict[str, dict[str, float]]
    reference: str | None
    files: list[Path]


def slug(text: str) -> str:
    """A file-name-safe version of a label (``dpo:alpha=1.5`` -> ``dpo_alpha=1.5``)."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_") or "drift"


def split_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def params_digest(params: Any) -> str:
    """SHA-256 of a drift's parameter values (float32, in key-path order)."""
    digest = hashlib.sha256()
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    for path, leaf in sorted(leaves, key=lambda item: jax.tree_util.keystr(item[0])):
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
    return digest.hexdigest()[:16]


def plan_cells(drift_texts: list[str], env_names: list[str], overrides: dict[str, Any]) -> tuple[list[ResolvedDrift], dict[str, tuple[configs.TrainSpec, bool]], list[Cell]]:
    """Resolve every drift and env spec up front, so a typo fails before any training."""
    if not drift_texts:
        raise UserError("empty grid: no drifts given (e.g. --drifts ppo,dpo)")
    if not env_names:
        raise UserError("empty grid: no environments given (e.g. --envs CartPole-v1)")
    resolved = [resolve_drift(text) for text in drift_texts]
    labels = [r.label for r in resolved]
    for label in labels:
        if labels.count(label) > 1:
            raise UserError(f"drift {label!r} appears twice in the grid; give each drift once")
    slugs = [slug(label) for label in labels]
    if len(set(slugs)) != len(slugs):
        raise UserError(f"drift labels {labels} collide as file names; rename an artifact")
    if len(set(env_names)) != len(env_names):
        raise UserError(f"an environment appears twice in {env_names}")
    specs = {env: configs.load_train_spec(env, overrides) for env in env_names}
    cells = [Cell(env, specs[env][0], r, f"{slug(env)}__{slug(r.label)}") for env in env_names for r in resolved]
    return resolved, specs, cells


def pick_reference(resolved: list[ResolvedDrift], requested: str | None) -> str | None:
    """The label of the drift that scores are normalised by (see module docstring)."""
    if requested:
        for r in resolved:
            if requested in (r.label, r.source):
                return r.label
        raise UserError(f"--reference {requested!r} is not in the grid; drifts: {', '.join(r.label for r in resolved)}")
    ppo = [r for r in resolved if r.drift.name == "ppo_clip"]
    default = [r for r in ppo if abs(float(np.asarray(r.params["epsilon"])) - 0.2) < 1e-6]
    chosen = (default or ppo or [None])[0]
    return chosen.label if chosen is not None else None


def fingerprint(cell: Cell, num_seeds: int, seed: int) -> dict[str, Any]:
    train = cell.spec.to_dict()
    train.pop("source", None)
    return {
        "env": cell.env,
        "train": train,
        "drift_family": cell.drift.drift.name,
        "drift_options": cell.drift.drift.options,
        "drift_params_sha256": params_digest(cell.drift.params),
        "seeds": num_seeds,
        "seed": seed,
    }


def _canonical(data: Any) -> str:
    return json.dumps(json.loads(json.dumps(data, default=str)), sort_keys=True)


def _load_cell(cell: Cell, out: Path, expected: dict, overwrite: bool) -> CellResult | None:
    json_path = out / CELL_DIR / f"{cell.name}.json"
    npz_path = out / CELL_DIR / f"{cell.name}.npz"
    if not json_path.is_file():
        return None
    try:
        saved = json.loads(json_path.read_text())
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError, KeyError) as error:
        if overwrite:
            return None
        raise UserError(f"unreadable cell {json_path} ({type(error).__name__}); delete it to rerun that cell, or pass --overwrite") from None
    if _canonical(saved.get("fingerprint")) != _canonical(expected):
        if overwrite:
            return None
        old = saved.get("fingerprint") or {}
        changed = sorted(k for k in set(old) | set(expected) if _canonical(old.get(k)) != _canonical(expected.get(k)))
        raise UserError(
            f"{out} already holds a different result for {cell.env} × {cell.label} (differs in: {', '.join(changed) or 'format'}); "
            "use another --out, or --overwrite to recompute it"
        )
    return CellResult(cell, arrays["final_returns"], arrays["episode_return"], arrays["env_steps"],
                      float(saved.get("compile_seconds", 0.0)), float(saved.get("run_seconds", 0.0)),
                      float(saved.get("wall_seconds", 0.0)), resumed=True)


def _save_cell(out: Path, cell: Cell, result: TrainingResult, wall: float, expected: dict) -> None:
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, final_returns=result.final_returns, env_steps=result.env_steps,
                        **{name: values for name, values in result.metrics.items()})
    atomic_write_bytes(out / CELL_DIR / f"{cell.name}.npz", buffer.getvalue())
    atomic_write_json(out / CELL_DIR / f"{cell.name}.json", {
        "env": cell.env,
        "drift": cell.label,
        "drift_source": cell.drift.source,
        "fingerprint": expected,
        "final_returns": result.final_returns.tolist(),
        "compile_seconds": result.compile_seconds,
        "run_seconds": result.run_seconds,
        "wall_seconds": wall,
        "finished": datetime.now().isoformat(timespec="seconds"),
    })


def _check_out_dir(out: Path, overwrite: bool) -> Path:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / GRID_FILE).is_file() and not overwrite:
        raise UserError(f"output directory {out} is not empty and holds no evaluation; choose another --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    return out


def run_evaluation(
    drift_texts: list[str],
    env_names: list[str],
    out: str | Path,
    *,
    num_seeds: int,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
    reference: str | None = None,
    overwrite: bool = False,
    wandb: WandbOptions = WandbOptions(),
    show_progress: bool = True,
    bootstrap_reps: int = 2000,
) -> EvaluationReport:
    """Train (or load) every cell of the drift × env grid and write the results (module docstring)."""
    if num_seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {num_seeds}")
    overrides = dict(overrides or {})
    resolved, specs, cells = plan_cells(drift_texts, env_names, overrides)
    reference_label = pick_reference(resolved, reference)
    out = _check_out_dir(Path(out), overwrite)
    for env, (spec, fallback) in specs.items():
        if fallback:
            status(f"[yellow]no configs/train/{env}.yaml: using the {Path(spec.source).stem} family defaults ({spec.source})[/yellow]")
    grid = {
        "drifts": [{"label": r.label, "source": r.source, "family": r.drift.name, "options": r.drift.options} for r in resolved],
        "envs": {env: spec.to_dict() for env, (spec, _) in specs.items()},
        "seeds": num_seeds,
        "seed": seed,
        "overrides": {k: str(v) for k, v in overrides.items()},
        "reference": reference_label,
    }
    results: list[CellResult] = []
    todo: list[tuple[Cell, dict]] = []
    for cell in cells:
        expected = fingerprint(cell, num_seeds, seed)
        loaded = _load_cell(cell, out, expected, overwrite)
        if loaded is not None:
            results.append(loaded)
        else:
            todo.append((cell, expected))
    atomic_write_json(out / GRID_FILE, grid)  # after the cells were checked: a refused grid leaves the directory as it was
    if results:
        status(f"resuming {out}: {len(results)} of {len(cells)} cells already done, skipping them")
    status(f"evaluating {len(resolved)} drifts × {len(specs)} envs × {num_seeds} seeds: {len(todo)} cells to train → {out}")

    progress = make_progress() if show_progress else None
    grid_task = progress.add_task("grid", total=len(cells), completed=len(results), rate="") if progress else None
    with progress or _nullcontext():
        for cell, expected in todo:
            config = cell.spec.ppo
            status(f"cell {len(results) + 1}/{len(cells)}: [bold]{cell.env}[/bold] × [bold]{cell.label}[/bold] "
                   f"({num_seeds} seeds × {config.env_steps:,} env steps)")
            started = time.perf_counter()
            result = run_seeds(cell.spec, cell.drift, num_seeds, seed=seed, show_progress=show_progress,
                               description=f"{cell.env} · {cell.label}", progress=progress)
            wall = time.perf_counter() - started
            _save_cell(out, cell, result, wall, expected)
            cell_result = CellResult(cell, result.final_returns, result.metrics["episode_return"], result.env_steps,
                                     result.compile_seconds, result.run_seconds, wall, resumed=False)
            results.append(cell_result)
            _log_cell_to_wandb(wandb, out, cell, cell_result, result, num_seeds, seed)
            finite = result.final_returns[np.isfinite(result.final_returns)]
            status(f"  final return {np.mean(finite) if finite.size else float('nan'):.1f} "
                   f"(compile {result.compile_seconds:.1f}s, train {result.run_seconds:.1f}s)")
            if progress is not None:
                progress.advance(grid_task)

    order = {cell.name: i for i, cell in enumerate(cells)}
    results.sort(key=lambda r: order[r.cell.name])
    rows, aggregate = summarise(results, specs, reference_label, bootstrap_reps, seed)
    files = write_reports(out, results, rows, aggregate, specs, reference_label, grid)
    _log_summary_to_wandb(wandb, out, grid, rows, aggregate, files)
    return EvaluationReport(out, rows, aggregate, reference_label, files)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# ---- statistics -------------------------------------------------------------


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
    from discovery.plots import plot_learning_curves

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


def plot_normalized_scores(rows, aggregate, reference: str, path: Path) -> Path:
    """Left: per-env normalised mean with its 95% bootstrap CI per drift. Right: rliable aggregate IQM
    and mean over the aggregated envs with stratified-bootstrap CIs."""
    import matplotlib.pyplot as plt

    from discovery.plots import save_figure

    labels = list(aggregate)
    envs = list(next(iter(aggregate.values()))["envs"])
    by_cell = {(row["env"], row["drift"]): row for row in rows}
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.6 + max(2.6, 0.45 * len(labels) * max(1, len(envs)) ** 0.5)),
                                      gridspec_kw={"width_ratios": [max(1.2, len(envs)), 1.6]})
    width = 0.8 / len(labels)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, label in enumerate(labels):
        stats = [(by_cell[(env, label)]["normalized_mean"], by_cell[(env, label)]["normalized_mean_ci_low"],
                  by_cell[(env, label)]["normalized_mean_ci_high"]) for env in envs]
        means = np.array([s[0] for s in stats])
        errors = np.array([[s[0] - s[1] for s in stats], [s[2] - s[0] for s in stats]])
        positions = np.arange(len(envs)) + (i - (len(labels) - 1) / 2) * width
        left.bar(positions, means, width, yerr=errors, capsize=3, label=label, color=colors[i % len(colors)])
    left.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    left.set_xticks(np.arange(len(envs)), envs, rotation=20 if len(envs) > 3 else 0)
    left.set_ylabel(f"final return ÷ {reference}'s mean")
    left.set_title("per environment (mean, 95% bootstrap CI)")
    left.grid(axis="y", alpha=0.3)
    left.legend(fontsize=8, loc="lower right")
    for j, metric in enumerate(("iqm", "mean")):
        for i, label in enumerate(labels):
            agg = aggregate[label]
            y = i + (0.18 if metric == "iqm" else -0.18)
            color = colors[i % len(colors)]
            right.plot([agg[f"{metric}_ci_low"], agg[f"{metric}_ci_high"]], [y, y], color=color, linewidth=5 if metric == "iqm" else 2.5,
                       alpha=0.45 if metric == "iqm" else 0.8, solid_capstyle="butt")
            right.plot([agg[metric]], [y], marker="|" if metric == "iqm" else "o", color="black", markersize=12 if metric == "iqm" else 4)
    right.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
    right.set_yticks(np.arange(len(labels)), labels)
    right.set_ylim(-0.6, len(labels) - 0.4)
    right.invert_yaxis()
    right.set_xlabel("normalised score")
    right.set_title(f"aggregate over {len(envs)} env(s): IQM (thick) and mean (thin), 95% CI", fontsize=9)
    right.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


# ---- W&B ----------------------------------------------------------------------


def _log_cell_to_wandb(options: WandbOptions, out: Path, cell: Cell, cell_result: CellResult, result: TrainingResult, num_seeds: int, seed: int) -> None:
    if options.mode == "off":
        return
    from discovery.wandb_logging import WandbRun

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


def _log_summary_to_wandb(options: WandbOptions, out: Path, grid, rows, aggregate, files) -> None:
    if options.mode == "off":
        return
    from discovery.wandb_logging import WandbRun

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
