"""The (r, Â) domain on which drifts are drawn and fitted, and a drift evaluated on it (host arrays)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from discovery.io.drift_registry import ResolvedDrift
from drift_functions import DEFAULT_REGIME, Regime

RATIO_RANGE = (0.05, 3.0)  # r = π_new / π_old
ADVANTAGE_RANGE = (-3.0, 3.0)  # normalised advantages
# (epoch progress k/K, epochs K) at which regime-aware drifts are drawn and distilled: the first and last epoch of
# 1, 4 and 16 epochs per batch (the lifetime stays at DEFAULT_REGIME's).
REGIME_POINTS = ((0.0, 1.0), (0.0, 4.0), (0.75, 4.0), (0.0, 16.0), (0.9375, 16.0))


def regime_array(regime: Regime | None, size: int) -> np.ndarray:
    """``[size, 3]``: ``regime`` (default :data:`DEFAULT_REGIME`) as rows of (epoch progress, epochs, updates)."""
    regime = DEFAULT_REGIME if regime is None else regime
    return np.tile(np.asarray(tuple(regime), np.float32), (size, 1))


def drift_values(resolved: ResolvedDrift, ratio, advantage, progress, regime=None) -> np.ndarray:
    """The drift at every sample; ``regime`` is ``[N, 3]`` rows of (k/K, K, N) (see :func:`regime_array`)."""
    ratio = jnp.asarray(ratio, jnp.float32)
    regime = regime_array(None, ratio.shape[0]) if regime is None else regime
    apply = jax.jit(lambda r, a, p, g: resolved.drift.apply(resolved.params, r, a, p, regime=Regime(*g.T)))
    return np.asarray(
        apply(
            ratio,
            jnp.asarray(advantage, jnp.float32),
            jnp.asarray(progress, jnp.float32),
            jnp.asarray(regime, jnp.float32),
        )
    )


def depends_on_regime(resolved: ResolvedDrift, num_ratio: int = 40, num_advantage: int = 21) -> bool:
    """Whether the drift reads the epoch or the epoch count (RA-LPO, DPO-RA), not only ``(r, Â, p)``."""
    ratio, advantage = grid_points(num_ratio, num_advantage)
    progress = np.full_like(ratio, 0.5)
    base = drift_values(resolved, ratio, advantage, progress)
    for epoch_progress, epochs in REGIME_POINTS:
        other = regime_array(Regime(epoch_progress, epochs, DEFAULT_REGIME.num_updates), ratio.size)
        if not np.allclose(drift_values(resolved, ratio, advantage, progress, other), base, rtol=0, atol=1e-7):
            return True
    return False


def depends_on_progress(resolved: ResolvedDrift, num_ratio: int = 40, num_advantage: int = 21) -> bool:
    ratio, advantage = grid_points(num_ratio, num_advantage)
    at0 = drift_values(resolved, ratio, advantage, np.zeros_like(ratio))
    at1 = drift_values(resolved, ratio, advantage, np.ones_like(ratio))
    return not np.allclose(at0, at1, rtol=0, atol=1e-7)


def grid_points(num_ratio: int, num_advantage: int) -> tuple[np.ndarray, np.ndarray]:
    ratio, advantage = np.meshgrid(
        np.linspace(*RATIO_RANGE, num_ratio), np.linspace(*ADVANTAGE_RANGE, num_advantage), indexing="ij"
    )
    return ratio.reshape(-1).astype(np.float32), advantage.reshape(-1).astype(np.float32)
