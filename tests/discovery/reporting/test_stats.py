"""The statistics every results table rests on, against values computed by hand on 8 and 12 seeds.

With 2 seeds the IQM equals the mean and a bootstrap has 3 distinct resamples, so nothing is
tested there; here the IQM, median and mean all differ, and the bootstrap intervals are checked
against an independent stratified percentile bootstrap written from the definition.
"""

import numpy as np
import pytest

from discovery.reporting.stats import aggregate_scores, mean_ci, paired_difference, score_summary

# 8 seeds, shuffled: sorted 0 1 2 4 | 8 16 32 1000 -> IQM = mean(2, 4, 8, 16) = 7.5, median = (4 + 8) / 2 = 6
EIGHT = np.array([16.0, 0.0, 1000.0, 4.0, 2.0, 32.0, 8.0, 1.0])
EIGHT_MEAN, EIGHT_MEDIAN, EIGHT_IQM = 1063.0 / 8, 6.0, 7.5
# 12 seeds: sorted -50 1 2 | 3 4 5 6 7 20 | 30 40 100; a 25% trimmed mean drops 3 from each end
# -> IQM = mean(3, 4, 5, 6, 7, 20) = 7.5, median = (5 + 6) / 2 = 5.5, mean = 168 / 12 = 14
TWELVE = np.array([7.0, 1.0, 100.0, 5.0, 30.0, 2.0, 20.0, 3.0, 6.0, -50.0, 4.0, 40.0])
TWELVE_MEAN, TWELVE_MEDIAN, TWELVE_IQM = 14.0, 5.5, 7.5
T_975 = {7: 2.364624251592785, 11: 2.200985160082949}  # Student t quantiles, from tables


def iqm(values):
    """25% trimmed mean over every entry (rliable's definition), by sorting."""
    flat = np.sort(np.asarray(values, float).reshape(-1))
    cut = int(0.25 * flat.size)
    return flat[cut : flat.size - cut].mean()


def stratified_bootstrap(scores, statistic, reps, rng):
    """Percentile 95% CI of ``statistic`` with runs resampled independently within each task (column)."""
    scores = np.asarray(scores, float)
    runs, tasks = scores.shape
    draws = np.empty(reps)
    for r in range(reps):
        index = rng.integers(0, runs, (runs, tasks))
        draws[r] = statistic(np.take_along_axis(scores, index, axis=0))
    return np.percentile(draws, 2.5), np.percentile(draws, 97.5)


def test_hand_computed_points_on_8_and_12_seeds():
    assert iqm(EIGHT) == EIGHT_IQM and np.median(EIGHT) == EIGHT_MEDIAN  # the hand values themselves
    assert iqm(TWELVE) == TWELVE_IQM and np.median(TWELVE) == TWELVE_MEDIAN and TWELVE.mean() == TWELVE_MEAN
    for values, mean, median, iqm_ in (
        (EIGHT, EIGHT_MEAN, EIGHT_MEDIAN, EIGHT_IQM),
        (TWELVE, TWELVE_MEAN, TWELVE_MEDIAN, TWELVE_IQM),
    ):
        summary = score_summary(values, reps=200)
        assert summary["n"] == values.size
        assert summary["mean"] == pytest.approx(mean, rel=1e-12)
        assert summary["median"] == pytest.approx(median, rel=1e-12)
        assert summary["iqm"] == pytest.approx(iqm_, rel=1e-12)
        assert len({summary["mean"], summary["median"], summary["iqm"]}) == 3  # the three are distinct here


def test_nan_seeds_are_left_out_of_every_summary():
    summary = score_summary(np.concatenate([EIGHT, [np.nan, np.nan]]), reps=200)
    assert (
        summary["n"] == 8
        and summary["iqm"] == pytest.approx(EIGHT_IQM)
        and summary["mean"] == pytest.approx(EIGHT_MEAN)
    )


@pytest.mark.parametrize("values", [EIGHT, TWELVE], ids=["8 seeds", "12 seeds"])
def test_bootstrap_intervals_match_an_independent_stratified_bootstrap(values):
    reps = 4000
    summary = score_summary(values, reps=reps, seed=3)
    rng = np.random.default_rng(11)
    spread = np.ptp(values)
    for name, statistic in (("iqm", iqm), ("median", np.median), ("mean", np.mean)):
        low, high = stratified_bootstrap(values[:, None], statistic, reps, rng)
        assert summary[f"{name}_ci_low"] <= summary[name] <= summary[f"{name}_ci_high"], name
        # two Monte Carlo estimates of the same percentiles: equal to within a few percent of the data's range
        assert summary[f"{name}_ci_low"] == pytest.approx(low, abs=0.03 * spread), name
        assert summary[f"{name}_ci_high"] == pytest.approx(high, abs=0.03 * spread), name
    # the IQM's interval is robust to the outliers that widen the mean's
    assert summary["iqm_ci_high"] - summary["iqm_ci_low"] < summary["mean_ci_high"] - summary["mean_ci_low"]


def test_constant_scores_give_a_zero_width_interval():
    summary = score_summary(np.full(8, 3.25), reps=200)
    for name in ("mean", "median", "iqm"):
        assert summary[name] == summary[f"{name}_ci_low"] == summary[f"{name}_ci_high"] == 3.25


def test_aggregate_over_tasks_is_the_iqm_of_all_runs_with_runs_resampled_within_tasks():
    # [8 runs, 2 tasks]: the IQM of all 16 numbers drops 4 from each end
    scores = np.stack([EIGHT, TWELVE[:8]], axis=1)
    assert iqm(scores) == pytest.approx(np.mean(sorted(scores.reshape(-1))[4:12]))
    result = aggregate_scores({"a": scores, "b": scores + 1.0}, reps=4000, seed=5)
    assert result["a"]["n"] == 16
    assert result["a"]["iqm"] == pytest.approx(iqm(scores), rel=1e-12)
    assert result["a"]["mean"] == pytest.approx(scores.mean(), rel=1e-12)
    # across tasks the median is rliable's: the median of the per-task means (here of 2 tasks: their average)
    assert result["a"]["median"] == pytest.approx(np.median(scores.mean(axis=0)), rel=1e-12)
    assert result["b"]["iqm"] == pytest.approx(iqm(scores) + 1.0, rel=1e-12)
    low, high = stratified_bootstrap(scores, iqm, 4000, np.random.default_rng(12))
    assert result["a"]["iqm_ci_low"] == pytest.approx(low, abs=0.03 * np.ptp(scores))
    assert result["a"]["iqm_ci_high"] == pytest.approx(high, abs=0.03 * np.ptp(scores))


def test_mean_ci_is_the_student_t_interval():
    for values in (EIGHT, TWELVE):
        n = values.size
        half = T_975[n - 1] * values.std(ddof=1) / np.sqrt(n)
        mean, low, high = mean_ci(values)
        assert mean == pytest.approx(values.mean(), rel=1e-12)
        assert (low, high) == pytest.approx((values.mean() - half, values.mean() + half), rel=1e-9)
    assert mean_ci([np.nan, 2.0, np.nan]) == (2.0, 2.0, 2.0)


def test_paired_difference_on_10_paired_seeds():
    rng = np.random.default_rng(0)
    y = rng.normal(100.0, 30.0, 10)
    x = y + np.array([5.0, 7.0, 3.0, 6.0, 4.0, 8.0, 5.0, 6.0, 2.0, 4.0])  # every seed better by 2..8 (mean 5)
    x_with_nan = np.concatenate([x, [np.nan]])
    mean, low, high = paired_difference(x_with_nan, np.concatenate([y, [0.0]]), reps=4000)
    assert mean == pytest.approx(5.0, rel=1e-12)
    diffs = (x - y)[:, None]
    ref_low, ref_high = stratified_bootstrap(diffs, np.mean, 4000, np.random.default_rng(1))
    assert low == pytest.approx(ref_low, abs=0.2) and high == pytest.approx(ref_high, abs=0.2)
    assert 2.0 < low < 5.0 < high < 8.0
    # unpaired, the seed-to-seed spread of 30 would swamp a difference of 5; paired, the interval excludes 0
    assert low > 0
