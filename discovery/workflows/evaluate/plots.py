"""The normalised-score figure of an evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from discovery.reporting.plots import plt, save_figure  # pyplot on the headless backend

IQM_WIDTH, MEAN_WIDTH = 3.0, 1.0  # the aggregate panel's IQM tick is drawn 3x as thick as the mean's line
GROUP_NAMES = {"all": "all tasks", "train": "training tasks", "held_out": "held-out tasks"}


def plot_normalized_scores(rows, aggregates: dict, reference: str, path: Path) -> Path:
    """Left: each task's normalised IQM with its 95% bootstrap CI, per drift (0 = random, 1 = the
    reference). Right: per group (all tasks, or training and held-out tasks), the rliable IQM
    (wide bar: its 95% CI, tick: the point) and mean (thin line, dot) over tasks."""
    groups = [g for g, stats in aggregates.items() if stats["tasks"] and not (g == "all" and len(aggregates) > 1)]
    labels = list(aggregates[groups[0]]["aggregate"])
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    by_cell = {(row["task"], row["drift"]): row for row in rows}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, (left, right) = plt.subplots(
        1,
        2,
        figsize=(12, 0.8 + max(3.0, 0.5 * len(labels) * len(groups))),
        gridspec_kw={"width_ratios": [max(1.5, 0.6 * len(tasks)), 1.8]},
    )
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        stats = [
            (
                by_cell[(t, label)]["normalized_iqm"],
                by_cell[(t, label)]["normalized_iqm_ci_low"],
                by_cell[(t, label)]["normalized_iqm_ci_high"],
            )
            for t in tasks
        ]
        points = np.array([s[0] for s in stats], np.float64)
        errors = np.nan_to_num(
            np.abs(np.array([[s[0] - s[1] for s in stats], [s[2] - s[0] for s in stats]], np.float64))
        )
        positions = np.arange(len(tasks)) + (i - (len(labels) - 1) / 2) * width
        left.bar(positions, points, width, yerr=errors, capsize=2, label=label, color=colors[i % len(colors)])
    left.axhline(1.0, color="black", linewidth=0.8, linestyle="--")
    left.axhline(0.0, color="grey", linewidth=0.6)
    left.set_xticks(
        np.arange(len(tasks)), tasks, rotation=30 if len(tasks) > 3 else 0, ha="right" if len(tasks) > 3 else "center"
    )
    left.set_ylabel(f"normalised score (random = 0, {reference} = 1)")
    left.set_title("per task: IQM over seeds, 95% bootstrap CI")
    left.grid(axis="y", alpha=0.3)
    left.legend(fontsize=8, loc="best")
    ticks, names = [], []
    for g, group in enumerate(groups):
        for i, label in enumerate(labels):
            agg = aggregates[group]["aggregate"][label]
            y = g * (len(labels) + 1) + i
            color = colors[i % len(colors)]
            right.barh(
                y, agg["iqm_ci_high"] - agg["iqm_ci_low"], left=agg["iqm_ci_low"], height=0.7, color=color, alpha=0.5
            )
            right.plot([agg["iqm"], agg["iqm"]], [y - 0.35, y + 0.35], color="black", linewidth=IQM_WIDTH)
            right.plot(
                [agg["mean_ci_low"], agg["mean_ci_high"]], [y + 0.45, y + 0.45], color=color, linewidth=MEAN_WIDTH
            )
            right.plot([agg["mean"]], [y + 0.45], "o", color=color, markersize=3)
            ticks.append(y)
            names.append(f"{label} · {GROUP_NAMES.get(group, group)}" if len(groups) > 1 else label)
    right.axvline(1.0, color="black", linewidth=0.8, linestyle="--")
    right.set_yticks(ticks, names, fontsize=8)
    right.invert_yaxis()
    right.set_xlabel("normalised score")
    right.set_title("aggregate over tasks: IQM (thick) and mean (thin)", fontsize=9)
    from matplotlib.patches import Patch

    key = [
        Patch(facecolor="grey", alpha=0.5, label="IQM 95% CI"),
        plt.Line2D([], [], color="black", linewidth=IQM_WIDTH, label="IQM"),
        plt.Line2D([], [], color="grey", linewidth=MEAN_WIDTH, marker="o", markersize=3, label="mean, 95% CI"),
    ]
    right.legend(handles=key, fontsize=7, loc="best")
    right.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)
