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


def fill_forward(curve) -> np.ndarray:
    """Carry the last finite value over NaN gaps along the last axis (updates with no finished episode)."""
    curve = np.asarray(curve, dtype=np.float64)
    index = np.where(np.isfinite(curve), np.arange(curve.shape[-1]), 0)
    np.maximum.accumulate(index, axis=-1, out=index)
    return np.take_along_axis(curve, index, axis=-1)


# ---- rliable: IQM, stratified bootstrap CIs, aggregates across tasks -----------

SUMMARY_METRICS = ("mean", "median", "iqm")


def _rliable_estimates(
    score_dict: dict[str, np.ndarray], reps: int, seed: int, confidence: float, median_of_runs: bool = False
):
    """Point estimates and stratified-bootstrap CIs of mean, median and IQM (rliable).

    ``score_dict``: label -> ``[runs, tasks]`` finite scores. The median is rliable's
    (the median over tasks of per-task means) unless ``median_of_runs``, where it is
    the median of every score (for one task: of the seeds, not their mean). Returns
    ``{label: {metric: (point, low, high)}}``. rliable draws its resamples
    from NumPy's global generator; it is seeded here and restored afterwards.
    """
    try:
        from rliable import library as rly
        from rliable import metrics as rly_metrics
    except (ImportError, TypeError) as error:  # arch 7.x (rliable's bootstrap) fails to import under pandas 3
        raise RuntimeError(
            f"rliable cannot be imported ({type(error).__name__}: {error}); rliable 1.2 needs arch 7.x, "
            "which needs pandas < 3: install pandas==2.3.3"
        ) from error

    def aggregate(scores):
        return np.array(
            [
                rly_metrics.aggregate_mean(scores),
                np.median(scores) if median_of_runs else rly_metrics.aggregate_median(scores),
                rly_metrics.aggregate_iqm(scores),
            ]
        )

    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        points, intervals = rly.get_interval_estimates(
            score_dict, aggregate, reps=reps, confidence_interval_size=confidence
        )
    finally:
        np.random.set_state(saved)
    return {
        label: {
            name: (float(points[label][i]), float(intervals[label][0, i]), float(intervals[label][1, i]))
            for i, name in enumerate(SUMMARY_METRICS)
        }
        for label in score_dict
    }


def score_summary(values, reps: int = 2000, seed: int = 0, confidence: float = 0.95) -> dict[str, float]:
    """Mean, median and IQM of per-seed scores, each with a 95% bootstrap CI (rliable).

    NaN seeds are left out (``n`` counts the finite ones). Keys: ``mean``,
    ``mean_ci_low``, ``mean_ci_high``, and the same for ``median`` and ``iqm``.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = values[np.isfinite(values)]
    out: dict[str, float] = {"n": int(finite.size)}
    if finite.size == 0:
        for name in SUMMARY_METRICS:
            out |= {name: float("nan"), f"{name}_ci_low": float("nan"), f"{name}_ci_high": float("nan")}
        return out
    estimates = _rliable_estimates({"x": finite[:, None]}, reps, seed, confidence, median_of_runs=True)["x"]
    for name, (point, low, high) in estimates.items():
        out |= {name: point, f"{name}_ci_low": low, f"{name}_ci_high": high}
    return out


def aggregate_scores(
    scores: dict[str, np.ndarray], reps: int = 2000, seed: int = 0, confidence: float = 0.95
) -> dict[str, dict[str, float]]:
    """Across-task aggregates (rliable): ``label -> [runs, tasks]`` scores to mean, median, IQM with
    stratified-bootstrap CIs (runs resampled within each task). Same keys as :func:`score_summary`."""
    estimates = _rliable_estimates({k: np.asarray(v, np.float64) for k, v in scores.items()}, reps, seed, confidence)
    result = {}
    for label, metrics_ in estimates.items():
        row: dict[str, float] = {"n": int(np.asarray(scores[label]).size)}
        for name, (point, low, high) in metrics_.items():
            row |= {name: point, f"{name}_ci_low": low, f"{name}_ci_high": high}
        result[label] = row
    return result


def normalized_score(returns, random_return, reference_return):
    """``(R − R_random) / (R_ref − R_random)``: 0 = a uniform-random policy, 1 = the reference (PPO).

    Unlike ``R / R_ref`` it ranks correctly where returns are negative (Acrobot:
    −70 beats −85 and scores higher) and where ``R_ref`` is near 0. Works on
    NumPy and JAX arrays and broadcasts; callers make sure ``R_ref ≠ R_random``.
    """
    return (returns - random_return) / (reference_return - random_return)


def paired_difference(x, y, reps: int = 2000, seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``x − y`` over paired seeds (same seed index = same environment seed), with a
    percentile-bootstrap CI over seeds. ``x``, ``y``: ``[seeds]``; non-finite pairs are left out."""
    diff = np.asarray(x, np.float64) - np.asarray(y, np.float64)
    diff = diff[np.isfinite(diff)]
    if diff.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, (reps, diff.size))].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    return float(diff.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def reading_of_difference(name: str, reference: str, difference: tuple[float, float, float]) -> str:
    """One line that says what a paired difference and its CI show."""
    mean, low, high = difference
    if not np.isfinite(mean):
        return f"{name} vs {reference}: no finite paired seeds"
    if low > 0:
        return f"{name} beats {reference} by {mean:.1f} [{low:.1f}, {high:.1f}] (paired seeds, 95% CI)"
    if high < 0:
        return f"{name} is worse than {reference} by {-mean:.1f} [{-high:.1f}, {-low:.1f}] (paired seeds, 95% CI)"
    return (
        f"{name} is not yet distinguishable from {reference}: difference {mean:+.1f} [{low:+.1f}, {high:+.1f}] "
        "(paired seeds, 95% CI)"
    )


def finite_or_none(value) -> float | None:
    """``float(value)``, or ``None`` for NaN/inf (JSON has no NaN)."""
    value = float(np.asarray(value))
    return value if np.isfinite(value) else None


# What score_summary-style rows report per group of seeds (sweep points, evaluate cells), in table order.
SEED_SUMMARY_COLUMNS = [
    "seeds",
    "n_finite",
    "mean",
    "mean_ci_low",
    "mean_ci_high",
    "median",
    "median_ci_low",
    "median_ci_high",
    "iqm",
    "iqm_ci_low",
    "iqm_ci_high",
]
