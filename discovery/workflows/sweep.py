"""In-process vectorised hyper-parameter sweeps (``discovery sweep``).

A sweep is a grid over *array-valued* parameters: any :class:`HParams` field
(learning_rate, ent_coef, vf_coef, gamma, gae_lambda, max_grad_norm,
reward_scale), any scalar parameter of the drift (ε of ppo_clip, α and β of
dpo / dpo_poly), or the drift itself (``drift`` = a list of drifts of one family
whose structure matches, e.g. several DPO settings or several LPO artifacts).
The cartesian product of the axes gives ``P`` points; points × seeds run as
ONE jitted call of ``vmap(vmap(train, seeds), points)``, with the same seed
keys at every point (paired). Shape-changing settings (num_envs, network
sizes, ...) cannot vary inside one compiled program: they may be fixed
(``--num-envs 8``) but not swept here; sweep them with ``wandb agent``.

``configs/sweeps/*.yaml`` are Weights & Biases sweep definitions; this module
reads their ``parameters`` (``value:`` = fixed, ``values:`` = an axis), so
the same file runs in-process (``discovery sweep --config``) or distributed
(``wandb sweep`` + ``wandb agent``, which runs ``discovery train --key=value ...``).
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import drift_functions
from discovery.io import configs
from discovery.io.drift_registry import ResolvedDrift, resolve_drift, split_drift_list
from discovery.reporting.plots import plt, save_figure  # pyplot on the headless backend
from discovery.reporting.stats import SEED_SUMMARY_COLUMNS, score_summary
from discovery.runtime.errors import UserError
from discovery.runtime.learners import TrainingResult, run_batch, seed_keys
from rl_algos.ppo import POINTS, HParams

DRIFT_AXIS = "drift"
# keys of a W&B sweep's parameters that steer the command, not the training
CLI_KEYS = {"env", "drift", "seeds", "seed", "config"}
IGNORED_KEYS = {"wandb", "wandb_project", "wandb_entity", "wandb_group", "out", "overwrite"}


@dataclasses.dataclass
class SweepDefinition:
    """What the user asked for: fixed values and axes (name -> list of values), in order."""

    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)
    axes: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    source: str = "command line"


@dataclasses.dataclass
class SweepPlan:
    env: str
    spec: configs.TrainSpec
    used_family_default: bool
    drifts: list[ResolvedDrift]  # one per point
    hparams: list[HParams]  # one per point
    points: list[dict[str, Any]]  # swept values per point (name -> value; drift label under "drift")
    columns: list[str]  # names whose value varies across points, in axis order
    num_seeds: int
    seed: int
    definition: SweepDefinition

    @property
    def drift(self):
        return self.drifts[0].drift


def normalise_name(name: str) -> str:
    return name.strip().replace("-", "_")


def parse_grid_option(text: str) -> tuple[str, list[str]]:
    """``learning_rate=1e-4,3e-4`` -> ``('learning_rate', ['1e-4', '3e-4'])``."""
    name, sep, values = text.partition("=")
    name = normalise_name(name)
    if not sep or not name:
        raise UserError(f"malformed --grid {text!r}; expected NAME=V1,V2,... (e.g. --grid learning_rate=1e-4,3e-4)")
    items = split_drift_list(values) if name == DRIFT_AXIS else [v.strip() for v in values.split(",") if v.strip()]
    if not items:
        raise UserError(f"empty grid axis {name!r} in --grid {text!r}: give at least one value")
    return name, items


def load_sweep_yaml(path: str | Path) -> SweepDefinition:
    """Read the ``parameters`` of a W&B sweep definition (``value`` -> fixed, ``values`` -> axis)."""
    data = configs.load_yaml(path)
    parameters = data.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise UserError(f"sweep config {path} has no `parameters:` mapping")
    definition = SweepDefinition(source=str(path))
    for raw_name, spec in parameters.items():
        name = normalise_name(str(raw_name))
        if name in IGNORED_KEYS:
            continue
        if not isinstance(spec, dict):
            raise UserError(f"sweep config {path}: parameter {raw_name!r} must be a mapping with `value:` or `values:`")
        if "value" in spec:
            definition.fixed[name] = spec["value"]
        elif "values" in spec:
            values = spec["values"]
            if not isinstance(values, list) or not values:
                raise UserError(f"empty grid: sweep config {path} parameter {raw_name!r} has an empty `values:` list")
            if name in CLI_KEYS - {DRIFT_AXIS}:
                raise UserError(
                    f"sweep config {path}: {raw_name!r} cannot be swept in-process (it is not an array-valued "
                    "hyper-parameter)"
                )
            definition.axes[name] = list(values)
        else:
            raise UserError(
                f"sweep config {path}: parameter {raw_name!r} uses {', '.join(spec)}; in-process sweeps need "
                "`value:` or `values:` lists (run distributions with `wandb agent`)"
            )
    return definition


def _as_float(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(f"grid value {value!r} for {name} is not a number") from None
    if not np.isfinite(number):  # an inf learning rate "trains" to NaN and could be marked best
        raise UserError(f"grid value {value!r} for {name} is not finite; give finite numbers")
    return number


def _scalar_params(params: Any) -> dict[str, float]:
    if not isinstance(params, dict):
        return {}
    return {k: float(np.asarray(v)) for k, v in params.items() if np.asarray(v).size == 1 and not isinstance(v, dict)}


def _static_options(resolved: ResolvedDrift) -> dict[str, Any]:
    """Options that shape ``apply`` (those that are not also parameters)."""
    params = resolved.params if isinstance(resolved.params, dict) else {}
    return {k: v for k, v in resolved.drift.options.items() if k not in params}


def _tree_signature(params: Any):
    leaves, treedef = jax.tree.flatten(params)
    return treedef, tuple(np.shape(leaf) for leaf in leaves)


def build_plan(
    env: str, drift_text: str, definition: SweepDefinition, overrides: dict[str, Any], num_seeds: int, seed: int
) -> SweepPlan:
    """Validate every axis against the env's config and the drift, and expand the grid into points."""
    if num_seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {num_seeds}")
    if not definition.axes:
        raise UserError(
            "empty grid: give at least one axis, e.g. --grid learning_rate=1e-4,3e-4 (or --config with `values:` lists)"
        )
    # the drift axis (if any) fixes the family whose scalar parameters the other axes may name
    drift_axis: list[ResolvedDrift] | None = None
    if DRIFT_AXIS in definition.axes:
        drift_axis = [resolve_drift(str(v)) for v in definition.axes[DRIFT_AXIS]]
        signature = (drift_axis[0].drift.name, _static_options(drift_axis[0]), _tree_signature(drift_axis[0].params))
        for other in drift_axis[1:]:
            if (other.drift.name, _static_options(other), _tree_signature(other.params)) != signature:
                raise UserError(
                    f"the drift axis mixes {drift_axis[0].drift.spec} and {other.drift.spec}: one compiled sweep "
                    "needs drifts of one family with the same shape-defining options (use evaluate for mixed families)"
                )
        labels = [d.label for d in drift_axis]
        if len(set(labels)) != len(labels):
            raise UserError(f"a drift appears twice on the drift axis: {labels}")
    base_drift = drift_axis[0] if drift_axis else resolve_drift(drift_text)
    drift_param_names = set(_scalar_params(base_drift.params))
    hparam_names = set(HParams.names())

    # fixed values: drift parameters go to the drift, the rest to the train config
    fixed = {k: v for k, v in (definition.fixed | overrides).items() if k not in CLI_KEYS}
    routed = configs.route_overrides(
        fixed, {"drift": dict.fromkeys(sorted(drift_param_names), float), **configs.train_targets()}
    )
    fixed_drift = routed["drift"]
    spec, fallback = configs.load_train_spec(env, routed["ppo"] | routed["env"])

    axes: dict[str, list[Any]] = {}
    for name, values in definition.axes.items():
        if name == DRIFT_AXIS:
            axes[name] = drift_axis
        elif name in hparam_names:
            numbers = [_as_float(name, v) for v in values]
            for number in numbers:  # the same checks as a single run (lr > 0, gamma in [0, 1], ...)
                try:
                    configs.replace_fields(spec.ppo, {name: number}, "ppo config").validate()
                except ValueError as error:
                    raise UserError(f"bad grid value for {name}: {error}") from None
            axes[name] = numbers
        elif name in drift_param_names:
            axes[name] = [_as_float(name, v) for v in values]
        else:
            static = set(configs.field_types(type(spec.ppo))) - hparam_names
            if name in static or name in configs.BRAX_ENV_OPTIONS:
                if len(values) == 1:
                    raise UserError(
                        f"{name} is a fixed setting here: pass it as --{name.replace('_', '-')} {values[0]} instead "
                        "of a grid axis"
                    )
                raise UserError(
                    f"{name} changes the compiled program's shapes or structure and cannot be swept in one vectorised "
                    "call; sweep it with `wandb agent` (configs/sweeps/*.yaml) or separate runs"
                )
            sweepable = sorted(hparam_names | drift_param_names | {DRIFT_AXIS})
            raise UserError(
                f"unknown sweep parameter {name!r} for drift {base_drift.drift.name}; sweepable: {', '.join(sweepable)}"
            )

    base_hparams = HParams.from_config(spec.ppo)
    drifts, hparams, points = [], [], []
    for combination in itertools.product(*axes.values()):
        chosen = dict(zip(axes, combination))
        resolved = chosen.get(DRIFT_AXIS, base_drift)
        params = dict(resolved.params) if isinstance(resolved.params, dict) else resolved.params
        drift_updates = fixed_drift | {k: v for k, v in chosen.items() if k in drift_param_names}
        for key, value in drift_updates.items():
            params[key] = jnp.asarray(value, jnp.float32)
        _validate_drift_params(resolved, drift_updates)
        hp = base_hparams.replace(**{k: jnp.asarray(v, jnp.float32) for k, v in chosen.items() if k in hparam_names})
        values = {k: float(np.asarray(getattr(hp, k))) for k in HParams.names()} | _scalar_params(params)
        if DRIFT_AXIS in chosen:
            values[DRIFT_AXIS] = resolved.label
        drifts.append(dataclasses.replace(resolved, params=params))
        hparams.append(hp)
        points.append(values)
    columns: list[str] = []
    for name in axes:
        columns.append(name)
        if name == DRIFT_AXIS:  # also show the drift parameters that vary along the drift axis (e.g. α, β)
            columns += [k for k in sorted(drift_param_names) if k not in axes and len({p[k] for p in points}) > 1]
    return SweepPlan(env, spec, fallback, drifts, hparams, points, columns, num_seeds, seed, definition)


def _validate_drift_params(resolved: ResolvedDrift, updates: dict[str, float]) -> None:
    """Build the family with the new values as options, so its own checks (α > 0, ε > 0) apply."""
    options = {k: v for k, v in updates.items() if k in resolved.drift.options}
    if options:
        try:
            drift_functions.make(resolved.drift.name, **(resolved.drift.options | options))
        except ValueError as error:
            raise UserError(f"bad grid value for drift {resolved.drift.name}: {error}") from None


def stack(trees: list[Any]) -> Any:
    return jax.tree.map(lambda *leaves: jnp.stack([jnp.asarray(leaf, jnp.float32) for leaf in leaves]), *trees)


def run_sweep(plan: SweepPlan, show_progress: bool = True) -> TrainingResult:
    """All points × seeds as one batch of ``P·S`` learners; learner ``p·S + s`` is point ``p`` with seed ``s``.

    Every point gets the same ``S`` seed keys (paired). The result is reshaped
    to ``[P, S, ...]`` (metrics ``[P, S, updates]``, final returns ``[P, S]``).
    """
    num_points, num_seeds = len(plan.points), plan.num_seeds
    keys = jnp.tile(seed_keys(plan.seed, num_seeds), (num_points, 1))
    drift_params = stack([d.params for d in plan.drifts for _ in range(num_seeds)])
    hparams = stack([h for h in plan.hparams for _ in range(num_seeds)])
    description = f"sweep {plan.env} · {num_points} points × {num_seeds} seeds"
    result = run_batch(
        plan.spec, plan.drift, keys, drift_params, hparams, POINTS, description=description, show_progress=show_progress
    )
    unflatten = lambda x: np.reshape(x, (num_points, num_seeds) + np.shape(x)[1:])  # noqa: E731
    return dataclasses.replace(
        result,
        metrics={k: unflatten(v) for k, v in result.metrics.items()},
        final_returns=unflatten(result.final_returns),
        params=jax.tree.map(unflatten, result.params),
    )


# ---- reports ----------------------------------------------------------------------


def sweep_rows(plan: SweepPlan, result: TrainingResult, reps: int = 2000) -> list[dict[str, Any]]:
    """One row per grid point: its swept values, then rliable mean/median/IQM with bootstrap CIs."""
    rows = []
    for index, point in enumerate(plan.points):
        summary = score_summary(result.final_returns[index], reps=reps, seed=plan.seed)
        rows.append(
            {
                "point": index,
                **{c: point[c] for c in plan.columns},
                "seeds": plan.num_seeds,
                "n_finite": summary.pop("n"),
                **summary,
                "final_returns": result.final_returns[index].tolist(),
            }
        )
    return rows


SUMMARY_COLUMNS = SEED_SUMMARY_COLUMNS  # the columns of one point


def sweep_markdown(plan: SweepPlan, rows: list[dict[str, Any]], result: TrainingResult) -> str:
    def fmt(value):
        if isinstance(value, str):
            return value
        return f"{value:.4g}"

    ppo = plan.spec.ppo
    best = max(rows, key=lambda r: r["mean"] if np.isfinite(r["mean"]) else -np.inf)
    lines = [
        f"# Sweep on {plan.env}: {len(rows)} points × {plan.num_seeds} seeds (one vectorised call)",
        "",
        f"Drift {plan.drifts[0].drift.name}; {ppo.env_steps:,} env steps per seed ({plan.spec.source}); final return "
        "= mean return of "
        f"the episodes ending in the last {ppo.final_return_window:.0%} of updates; 95% bootstrap CIs (rliable). "
        f"Compile {result.compile_seconds:.1f} s, run {result.run_seconds:.1f} s on {result.devices} device(s).",
        "",
        "| " + " | ".join(plan.columns) + " | mean [95% CI] | median | IQM [95% CI] | seeds |",
        "|" + "---|" * (len(plan.columns) + 4),
    ]
    for row in rows:
        mark = " **(best)**" if row is best else ""
        lines.append(
            "| "
            + " | ".join(fmt(row[c]) for c in plan.columns)
            + f" | {row['mean']:.1f} [{row['mean_ci_low']:.1f}, {row['mean_ci_high']:.1f}]{mark} | "
            f"{row['median']:.1f} | "
            f"{row['iqm']:.1f} [{row['iqm_ci_low']:.1f}, {row['iqm_ci_high']:.1f}] | {row['n_finite']} |"
        )
    lines.append("")
    return "\n".join(lines)


def plot_sensitivity(plan: SweepPlan, result: TrainingResult, column: str, path: Path, reps: int = 1000) -> Path:
    """Final return (mean, 95% bootstrap CI) against one swept parameter.

    One line per combination of the other swept parameters when there are at
    most six; otherwise the seeds of all other combinations are pooled.
    """
    derived = [c for c in plan.columns if c not in plan.definition.axes]  # drift params that move with the drift axis
    if column == DRIFT_AXIS:
        others = [c for c in plan.columns if c in plan.definition.axes and c != DRIFT_AXIS]
    else:
        others = [c for c in plan.columns if c != column and not (c == DRIFT_AXIS and derived)]
    groups: dict[tuple, list[int]] = {}
    for index, point in enumerate(plan.points):
        groups.setdefault(tuple(point[c] for c in others), []).append(index)
    pooled = len(groups) > 6
    if pooled:
        groups = {(): list(range(len(plan.points)))}
    values = list(dict.fromkeys(p[column] for p in plan.points))
    categorical = any(isinstance(v, str) for v in values)
    positions = {v: (i if categorical else v) for i, v in enumerate(values)}
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    for key, indices in groups.items():
        xs, means, lows, highs = [], [], [], []
        for value in values:
            chosen = [i for i in indices if plan.points[i][column] == value]
            if not chosen:
                continue
            summary = score_summary(result.final_returns[chosen].reshape(-1), reps=reps, seed=plan.seed)
            xs.append(positions[value])
            means.append(summary["mean"])
            lows.append(summary["mean_ci_low"])
            highs.append(summary["mean_ci_high"])
        label = (
            "all other settings pooled"
            if pooled
            else (", ".join(f"{c}={_short(v)}" for c, v in zip(others, key)) or None)
        )
        (line,) = ax.plot(xs, means, marker="o", label=label)
        ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.2, linewidth=0)
    if categorical:
        ax.set_xticks(range(len(values)), [str(v) for v in values], rotation=20, ha="right", fontsize=8)
    elif all(v > 0 for v in values) and max(values) / min(values) >= 10:
        ax.set_xscale("log")
    ax.set_xlabel(column)
    ax.set_ylabel("final return")
    ax.set_title(f"{plan.env}: sensitivity to {column} ({plan.num_seeds} seeds, mean ± 95% CI)", fontsize=10)
    ax.grid(alpha=0.3)
    if any(not line.get_label().startswith("_") for line in ax.get_lines()):
        ax.legend(fontsize=7, loc="best")
    return save_figure(fig, path)


def sensitivity_columns(plan: SweepPlan) -> list[str]:
    """Parameters that get a sensitivity plot: every swept one; a drift axis whose drifts differ in
    named parameters (α, β, ...) is plotted through those instead of by label."""
    derived = [c for c in plan.columns if c not in plan.definition.axes]
    return [c for c in plan.columns if not (c == DRIFT_AXIS and derived)]


def _short(value) -> str:
    return value if isinstance(value, str) else f"{value:.3g}"
