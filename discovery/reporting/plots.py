"""Learning-curve plots (matplotlib, headless), written atomically as PNG."""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from discovery.io.outputs import atomic_write_bytes  # noqa: E402
from discovery.reporting.stats import fill_forward  # noqa: E402

BAND_REPS = 1000  # bootstrap resamples per learning-curve band
BAND_CAPTION = "line: mean over seeds; band: 95% bootstrap CI of that mean, within the seeds' min–max"


def bootstrap_band(curves, reps: int = BAND_REPS, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per point of ``curves`` ``[seeds, T]``: the mean over seeds and the 95% percentile-bootstrap
    interval of that mean (seeds resampled with replacement), clipped to the seeds' observed range.

    NaN entries (no episode ended yet) are left out of each point; a point with one finite seed
    gets a zero-width band, one with none is NaN. Unlike a Student-t interval, the band can never
    leave the range of the returns actually seen (with 2-4 seeds a t-band spans thousands).
    """
    curves = np.asarray(curves, dtype=np.float64)
    seeds = curves.shape[0]
    finite = np.isfinite(curves)
    values = np.where(finite, curves, 0.0)
    count = finite.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, values.sum(axis=0) / np.maximum(count, 1), np.nan)
        # A resample is a multinomial count per seed; its mean over the finite seeds it drew.
        draws = (
            np.random.default_rng(seed).multinomial(seeds, np.full(seeds, 1.0 / seeds), size=reps).astype(np.float64)
        )
        sums, drawn = draws @ values, draws @ finite
        resampled = np.where(drawn > 0, sums / np.maximum(drawn, 1), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # columns with no finite value
        low, high = np.nanpercentile(resampled, [2.5, 97.5], axis=0)
        lowest, highest = (
            np.nanmin(np.where(finite, curves, np.inf), axis=0),
            np.nanmax(np.where(finite, curves, -np.inf), axis=0),
        )
    low, high = np.clip(low, lowest, highest), np.clip(high, lowest, highest)
    low, high = np.where(count > 0, low, np.nan), np.where(count > 0, high, np.nan)
    return mean, low, high


def save_figure(fig, path: str | Path) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def plot_learning_curves(
    curves: Mapping[str, np.ndarray],
    env_steps: np.ndarray,
    path: str | Path,
    title: str,
    ylabel: str = "episode return",
) -> Path:
    """One line per entry of ``curves`` (``label -> [seeds, num_updates]``): the mean over seeds and a
    band of its 95% bootstrap CI, never outside the seeds' observed range (:func:`bootstrap_band`);
    the caption under the axes says so."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, curve in curves.items():
        mean, low, high = bootstrap_band(fill_forward(curve))
        (line,) = ax.plot(env_steps, mean, label=f"{label} (n={np.asarray(curve).shape[0]})", linewidth=1.6)
        ax.fill_between(env_steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4), useMathText=True)
    fig.text(0.5, -0.02, BAND_CAPTION, ha="center", va="top", fontsize=8, color="dimgray")
    return save_figure(fig, path)


def plot_fitness_curve(
    rows: list[dict], path: str | Path, title: str, normalized: bool = False, outer: str = "es"
) -> Path:
    """Meta-training progress per generation: the ES mean (the drift ``drift.npz`` holds) on fresh
    seeds where it was validated, drawn boldest; the population's fitness (mean and min–max of the
    members sampled around it); and the best single member so far (one evaluation each, so optimistic).

    ``normalized``: fitness is already a random-normalised score (random = 0, PPO = 1), the unit of
    validation, so both share one axis; otherwise validation gets its own axis on the right.

    ``outer="meta_gradient"``: there is no population; the band is the agents' window returns (every age, so an
    online measure) and the bold line the drift the outer loop holds.
    """
    by_gradient = outer == "meta_gradient"
    held = "the drift (drift.npz)" if by_gradient else "ES mean (drift.npz)"
    crowd = "agents: window returns" if by_gradient else "population"
    generations = np.array([row["generation"] + 1 for row in rows])

    def column(name):
        return np.array([np.nan if row[name] is None else row[name] for row in rows], dtype=np.float64)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    mean, low, high = column("fitness_mean"), column("fitness_min"), column("fitness_max")
    ax.fill_between(
        generations,
        low,
        high,
        color="tab:blue",
        alpha=0.12,
        linewidth=0,
        label=f"{crowd}: min–max" if by_gradient else "population: min–max of members",
    )
    ax.plot(
        generations,
        mean,
        color="tab:blue",
        linewidth=1.4,
        label=f"{crowd}: mean" if by_gradient else "population: mean of members",
    )
    ax.plot(
        generations,
        column("best_fitness"),
        color="tab:orange",
        linewidth=1.0,
        linestyle="--",
        label="best generation mean so far" if by_gradient else "best single member so far (optimistic)",
    )
    validated = [
        (row["generation"] + 1, row["validation"]["score"])
        for row in rows
        if row.get("validation") and row["validation"]["score"] is not None
    ]
    handles, labels = ax.get_legend_handles_labels()
    if validated:
        axv = ax if normalized else ax.twinx()
        x, y = zip(*validated)
        (es_line,) = axv.plot(
            x, y, "o-", color="black", linewidth=2.6, markersize=5, zorder=5, label=f"{held} on fresh seeds"
        )
        axv.axhline(1.0, color="black", linestyle=":", linewidth=0.8)
        if not normalized:
            axv.set_ylabel(f"{held}: validation score (random = 0, PPO = 1)")
        handles, labels = [es_line] + handles, [es_line.get_label()] + labels
        caption = (
            "the drift the meta-gradient steps, which this run returns; dotted line: PPO = 1"
            if by_gradient
            else "ES mean = the search distribution's centre, the drift this run returns; dotted line: PPO = 1"
        )
    else:
        caption = f"{held} not scored in this run (validate_every: 0)"
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness (random = 0, PPO = 1)" if normalized else "fitness (mean final return)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(handles, labels, loc="best", fontsize=8)
    fig.text(0.5, -0.02, caption, ha="center", va="top", fontsize=8, color="dimgray")
    return save_figure(fig, path)


def plot_validation_curves(runs: Mapping[str, list[dict]], path: str | Path, title: str, window: int = 5) -> Path:
    """Validation score (random = 0, PPO = 1) of several meta-training runs against the env steps (left) and the
    CPU hours (right) they had spent when it was measured: one colour per run, so outer loops (ES, meta-gradients) or
    ablations compare at equal cost. Each validation is a faint point; the line is the mean of the last ``window``
    validations, since one validation on a few seeds is noisy. The env-steps axis is logarithmic when the runs'
    spans differ by more than 3x. ``runs`` maps a label to its ``metrics.jsonl`` rows."""
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.0), sharey=True)
    spans = []
    for index, (label, rows) in enumerate(runs.items()):
        points = [
            (row["env_steps_total"], row["cpu_seconds_total"] / 3600.0, row["validation"]["score"])
            for row in rows
            if row.get("validation") and row["validation"]["score"] is not None
        ]
        steps, hours, scores = (np.array(values, dtype=np.float64) for values in zip(*points))
        trailing = np.array([scores[max(0, i - window + 1) : i + 1].mean() for i in range(len(scores))])
        spans.append(steps.max())
        for ax, x in zip(axes, (steps, hours)):
            ax.plot(x, scores, "o", color=f"C{index}", markersize=3.5, alpha=0.35)
            ax.plot(x, trailing, "-", color=f"C{index}", linewidth=2.0, label=label)
    if max(spans) > 3 * min(spans):
        axes[0].set_xscale("log")
    for ax, name in zip(axes, ("env steps", "CPU hours")):
        ax.axhline(1.0, color="black", linestyle=":", linewidth=0.8)
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation score (random = 0, PPO = 1)")
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(title)
    fig.text(
        0.5, -0.02, f"points: each validation of the run's drift on its fresh seeds; lines: mean of the last {window}; "
        "dotted: PPO = 1", ha="center", va="top", fontsize=8, color="dimgray",
    )  # fmt: skip
    return save_figure(fig, path)
