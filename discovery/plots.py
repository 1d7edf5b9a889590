"""Learning-curve plots (matplotlib, headless), written atomically as PNG."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from discovery.outputs import atomic_write_bytes  # noqa: E402
from discovery.stats import curve_band, fill_forward  # noqa: E402


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
    """One line per entry of ``curves`` (``label -> [seeds, num_updates]``), mean ± 95% CI band."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, curve in curves.items():
        mean, low, high = curve_band(fill_forward(curve))
        (line,) = ax.plot(env_steps, mean, label=f"{label} (n={np.asarray(curve).shape[0]})", linewidth=1.6)
        ax.fill_between(env_steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("environment steps")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return save_figure(fig, path)


def plot_fitness_curve(rows: list[dict], path: str | Path, title: str) -> Path:
    """Meta-training progress: population mean, max and best-so-far fitness per generation."""
    generations = np.array([row["generation"] + 1 for row in rows])

    def column(name):
        return np.array([np.nan if row[name] is None else row[name] for row in rows], dtype=np.float64)

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    mean, low, high = column("fitness_mean"), column("fitness_min"), column("fitness_max")
    (line,) = ax.plot(generations, mean, label="population mean", linewidth=1.6)
    ax.fill_between(generations, low, high, color=line.get_color(), alpha=0.15, linewidth=0, label="population min–max")
    ax.plot(generations, column("best_fitness"), label="best so far", linewidth=1.2, linestyle="--")
    validated = [(row["generation"] + 1, row["validation"]["score"]) for row in rows
                 if row.get("validation") and row["validation"]["score"] is not None]
    if validated:
        axv = ax.twinx()
        x, y = zip(*validated)
        axv.plot(x, y, "o-", color="black", linewidth=1.2, markersize=3, label="ES mean on fresh seeds (PPO = 1)")
        axv.axhline(1.0, color="black", linestyle=":", linewidth=0.8)
        axv.set_ylabel("validation score (PPO = 1)")
        axv.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return save_figure(fig, path)
