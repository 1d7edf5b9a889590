"""The normalised-score figure of an evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from discovery.plots import plt, save_figure  # pyplot on the headless backend


def plot_normalized_scores(rows, aggregate, reference: str, path: Path) -> Path:
    """Left: per-env normalised mean with its 95% bootstrap CI per drift. Right: rliable aggregate IQM
    and mean over the aggregated envs with stratified-bootstrap CIs."""
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
