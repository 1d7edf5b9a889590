"""Heatmaps of drift(r, Â) and ∂drift/∂r for several drifts on shared axes and colour scales.

One figure, two rows of panels (values on top, r-derivatives below), one
column per drift; or, for drifts drawn at several regimes or progress values
(RA-LPO, TA-LPO), one such pair of rows per drift and one column per setting,
so two drifts compare setting by setting. Every value panel shares one colour scale (0 to the 99th
percentile of all values, so a single large corner does not wash out the
rest; the colour bar is marked as extended), and every derivative panel
shares one symmetric scale around 0. The derivative is exact: ``jax.grad`` of
the drift in ``r``, ``vmap``-ed over the grid.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.colors import Normalize, TwoSlopeNorm

from discovery.io.drift_registry import ResolvedDrift, resolve_drift
from discovery.reporting.drift_grid import (
    ADVANTAGE_RANGE,
    RATIO_RANGE,
    REGIME_POINTS,
    depends_on_progress,
    depends_on_regime,
)
from discovery.reporting.plots import plt, save_figure  # pyplot on the headless backend
from drift_functions import DEFAULT_REGIME, Regime


@dataclasses.dataclass(frozen=True)
class Panel:
    label: str
    resolved: ResolvedDrift
    progress: float = 0.0
    regime: Regime | None = None  # None: DEFAULT_REGIME
    setting: str = ""  # the regime or progress part of the label, the column title in a grid of drifts


def drift_and_slope(
    resolved: ResolvedDrift, ratio: np.ndarray, advantage: np.ndarray, progress: float, regime: Regime | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``drift(r, Â, p, regime)`` and ``∂drift/∂r`` on arrays of the same shape."""

    def value(r, a):
        return resolved.drift.apply(resolved.params, r, a, jnp.float32(progress), regime=regime)

    slope = jax.vmap(jax.grad(value))
    r = jnp.asarray(ratio, jnp.float32).reshape(-1)
    a = jnp.asarray(advantage, jnp.float32).reshape(-1)
    over_grid = jax.vmap(value)  # a grid of drift values, not learners
    values = jax.jit(over_grid)(r, a)
    slopes = jax.jit(slope)(r, a)
    return np.asarray(values).reshape(ratio.shape), np.asarray(slopes).reshape(ratio.shape)


def reference_panels() -> list[Panel]:
    """DPO(2, 0.6) and PPO-clip (ε = 0.2), drawn beside every drift for comparison."""
    return [
        Panel("DPO (α=2, β=0.6)", resolve_drift("dpo:alpha=2.0,beta=0.6")),
        Panel("PPO-clip (ε=0.2)", resolve_drift("ppo_clip:epsilon=0.2")),
    ]


def panels_for(resolved: ResolvedDrift, label: str | None = None, progress_values=(0.0, 0.5, 1.0)) -> list[Panel]:
    """One panel; one per progress value when the drift depends on training progress (TA-LPO); and for a
    regime-aware drift (RA-LPO, DPO-RA) one per regime of :data:`REGIME_POINTS` (first and last epoch of 1, 4
    and 16 epochs) at the middle progress value, then the other progress values at K = 4's first epoch."""
    label = label or resolved.label
    if depends_on_regime(resolved):
        middle = float(progress_values[len(progress_values) // 2])
        panels = [
            Panel(
                f"{label} (K={k:g}, k/K={e:g}, p={middle:g})",
                resolved,
                middle,
                Regime(e, k, DEFAULT_REGIME.num_updates),
                f"K={k:g}, k/K={e:g}, p={middle:g}",
            )
            for e, k in REGIME_POINTS
        ]
        return panels + [
            Panel(f"{label} (K=4, k/K=0, p={p:g})", resolved, float(p), setting=f"K=4, k/K=0, p={p:g}")
            for p in progress_values
            if p != middle
        ]
    if depends_on_progress(resolved):
        return [Panel(f"{label} (p={p:g})", resolved, float(p), setting=f"p={p:g}") for p in progress_values]
    return [Panel(label, resolved)]


def panel_rows(panels: list[Panel] | list[list[Panel]]) -> list[list[Panel]]:
    """The figure's layout: one list of panels per pair of rows. Groups of one panel each share one row."""
    groups = [list(group) for group in panels] if panels and isinstance(panels[0], list) else [list(panels)]
    if all(len(group) == 1 for group in groups):
        return [[group[0] for group in groups]]
    return groups


def plot_drift_panels(
    panels: list[Panel] | list[list[Panel]],
    path: str | Path,
    title: str | None = None,
    num_ratio: int = 150,
    num_advantage: int = 121,
    percentile: float = 99.0,
) -> Path:
    """Draw ``panels`` (module docstring) and write a PNG to ``path``. A list of groups (one per drift, e.g.
    :func:`panels_for` of each) is drawn as one pair of rows per group when some group has several panels, else
    as one row of columns."""
    groups = panel_rows(panels)
    ratios = np.linspace(*RATIO_RANGE, num_ratio)
    advantages = np.linspace(*ADVANTAGE_RANGE, num_advantage)
    grid_r, grid_a = np.meshgrid(ratios, advantages)  # rows: advantage (y), columns: ratio (x)
    computed = [[drift_and_slope(p.resolved, grid_r, grid_a, p.progress, p.regime) for p in g] for g in groups]
    flat = [pair for group in computed for pair in group]
    all_values = np.concatenate([v[np.isfinite(v)].ravel() for v, _ in flat])
    all_slopes = np.concatenate([np.abs(s[np.isfinite(s)]).ravel() for _, s in flat])
    vmax = float(np.percentile(all_values, percentile)) if all_values.size else 1.0
    smax = float(np.percentile(all_slopes, percentile)) if all_slopes.size else 1.0
    vmax, smax = max(vmax, 1e-6), max(smax, 1e-6)
    value_norm = Normalize(0.0, vmax)
    slope_norm = TwoSlopeNorm(0.0, -smax, smax)

    grid = len(groups) > 1  # a pair of rows per drift, its settings as columns
    columns = max(len(group) for group in groups)
    rows = 2 * len(groups)
    fig, axes = plt.subplots(
        rows, columns, figsize=(2.7 * columns + 1.2, 2.8 * rows), sharex=True, sharey=True, squeeze=False
    )
    extent = (ratios[0], ratios[-1], advantages[0], advantages[-1])
    images: list[Any] = [None, None]
    for index, (group, results) in enumerate(zip(groups, computed)):
        for column in range(len(group), columns):  # a shorter group (the references) leaves its columns empty
            axes[2 * index, column].set_visible(False)
            axes[2 * index + 1, column].set_visible(False)
        for column, (panel, (values, slopes)) in enumerate(zip(group, results)):
            pairs = ((values, value_norm, "viridis"), (slopes, slope_norm, "RdBu_r"))
            for kind, (data, norm, cmap) in enumerate(pairs):
                ax = axes[2 * index + kind, column]
                images[kind] = ax.imshow(
                    data, origin="lower", extent=extent, aspect="auto", norm=norm, cmap=cmap, interpolation="nearest"
                )
                ax.axvline(1.0, color="white" if kind == 0 else "black", linewidth=0.6, linestyle="--", alpha=0.7)
                ax.axhline(0.0, color="white" if kind == 0 else "black", linewidth=0.6, linestyle=":", alpha=0.7)
                if kind == 0:
                    text = panel.setting if grid and panel.setting else panel.label
                    ax.set_title(text, fontsize=9 if len(text) <= 28 else 7)
                if kind == 1 and index == max(i for i, g in enumerate(groups) if len(g) > column):
                    ax.set_xlabel("ratio r")  # under the lowest panel of each column only
                if column == 0:
                    quantity = "drift(r, Â)" if kind == 0 else "∂drift/∂r"
                    name = f"{group[0].resolved.label}\n" if grid and group[0].setting else ""
                    ax.set_ylabel(f"{name}{quantity}\nadvantage Â", fontsize=8 if name else None)
    if grid:  # value and slope rows interleave, so each colour bar gets its own half of the right margin
        fig.subplots_adjust(right=0.9, hspace=0.3)
        value_bar, slope_bar = fig.add_axes((0.92, 0.55, 0.012, 0.33)), fig.add_axes((0.92, 0.12, 0.012, 0.33))
        fig.colorbar(images[0], cax=value_bar, extend="max", label="drift")
        fig.colorbar(images[1], cax=slope_bar, extend="both", label="∂drift/∂r")
    else:
        fig.colorbar(images[0], ax=axes[0, :].tolist(), extend="max", fraction=0.025, pad=0.01, label="drift")
        fig.colorbar(images[1], ax=axes[1, :].tolist(), extend="both", fraction=0.025, pad=0.01, label="∂drift/∂r")
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)
