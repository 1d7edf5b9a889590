"""Small summaries of per-seed results (host side, NumPy)."""

from __future__ import annotations

import numpy as np
from scipy import stats as scipy_stats


def mean_ci(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of the mean over seeds: ``(mean, low, high)``.

    NaN entries (seeds where no episode ended in the final window) are ignored;
    with a single finite value the interval collapses to it.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(values.mean())
    if values.size < 2:
        return mean, mean, mean
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, values.size - 1) * values.std(ddof=1) / np.sqrt(values.size))
    return mean, mean - half, mean + half


def curve_band(curves, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-point mean and t-interval across seeds of ``curves`` ``[seeds, T]``, NaN-aware."""
    curves = np.asarray(curves, dtype=np.float64)
    count = np.sum(np.isfinite(curves), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(np.where(count > 0, curves, 0.0), axis=0)
        std = np.nanstd(curves, axis=0, ddof=1) if curves.shape[0] > 1 else np.zeros(curves.shape[1])
        tval = scipy_stats.t.ppf(0.5 + confidence / 2, np.maximum(count - 1, 1))
        half = np.where(count > 1, tval * std / np.sqrt(np.maximum(count, 1)), 0.0)
    mean = np.where(count > 0, mean, np.nan)
    return mean, mean - half, mean + half


def fill_forward(curve) -> np.ndarray:
    """Carry the last finite value over NaN gaps along the last axis (updates with no finished episode)."""
    curve = np.asarray(curve, dtype=np.float64)
    index = np.where(np.isfinite(curve), np.arange(curve.shape[-1]), 0)
    np.maximum.accumulate(index, axis=-1, out=index)
    return np.take_along_axis(curve, index, axis=-1)
