"""Suite statistics: random-normalised scores, per-role aggregates, probability of improvement.

Scores are ``(R − R_random) / (R_ref − R_random)`` per task (0 = uniform-random
policy, 1 = the reference drift's mean return on that task, PPO-clip by
default), so tasks with negative returns rank correctly and tasks of any scale
can be aggregated. Aggregates are rliable's IQM with stratified-bootstrap CIs
over ``[seeds, tasks]`` score matrices, computed separately for the suite's
``train`` and ``held_out`` tasks; the probability of improvement compares each
drift with the reference on the same (paired) seeds.
"""

from __future__ import annotations

import numpy as np

from discovery.reporting.stats import aggregate_scores


def normalized_scores(returns, random_return: float, reference_mean: float) -> np.ndarray:
    """``(R − R_random) / (R_ref − R_random)`` elementwise; NaN where the denominator is 0."""
    returns = np.asarray(returns, np.float64)
    span = reference_mean - random_return
    if not np.isfinite(span) or abs(span) < 1e-12:
        return np.full_like(returns, np.nan)
    return (returns - random_return) / span


def probability_of_improvement(
    x: np.ndarray, y: np.ndarray, reps: int = 2000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float, float]:
    """P(X > Y) averaged over tasks (rliable), with a stratified-bootstrap CI.

    ``x``, ``y``: ``[runs, tasks]`` scores of two algorithms on the same tasks.
    Returns ``(point, low, high)``; 0.5 means no difference.
    """
    from rliable import library as rly
    from rliable import metrics as rly_metrics

    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        points, intervals = rly.get_interval_estimates(
            {"pair": [np.asarray(x, np.float64), np.asarray(y, np.float64)]},
            lambda a, b: np.array([rly_metrics.probability_of_improvement(a, b)]),
            reps=reps,
            confidence_interval_size=confidence,
        )
    finally:
        np.random.set_state(saved)
    return float(points["pair"][0]), float(intervals["pair"][0, 0]), float(intervals["pair"][1, 0])


def role_statistics(
    scores: dict[str, dict[str, np.ndarray]],
    tasks_by_role: dict[str, list[str]],
    reference: str,
    reps: int = 2000,
    seed: int = 0,
) -> dict[str, dict]:
    """Per role: each drift's aggregate (IQM, mean, median with CIs) and P(improvement over ``reference``).

    ``scores``: drift label -> task label -> normalised scores ``[seeds]`` (paired
    seeds across drifts). Tasks where any drift has a non-finite seed are
    dropped from that role's aggregate and listed under ``dropped``.
    """
    out: dict[str, dict] = {}
    drifts = list(scores)
    for role, labels in tasks_by_role.items():
        usable = [t for t in labels if all(t in scores[d] and np.all(np.isfinite(scores[d][t])) for d in drifts)]
        dropped = [t for t in labels if t not in usable]
        if not usable:
            out[role] = {"tasks": [], "dropped": dropped, "aggregate": {}, "improvement": {}}
            continue
        matrices = {d: np.stack([scores[d][t] for t in usable], axis=1) for d in drifts}
        aggregate = aggregate_scores(matrices, reps=reps, seed=seed)
        improvement = {}
        if reference in matrices:
            for d in drifts:
                if d != reference:
                    improvement[d] = probability_of_improvement(matrices[d], matrices[reference], reps=reps, seed=seed)
        out[role] = {"tasks": usable, "dropped": dropped, "aggregate": aggregate, "improvement": improvement}
    return out
