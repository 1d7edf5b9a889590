"""The (r, Â) domain on which drifts are drawn and fitted, and a drift evaluated on it (host arrays)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from discovery.io.drift_registry import ResolvedDrift

RATIO_RANGE = (0.05, 3.0)  # r = π_new / π_old
ADVANTAGE_RANGE = (-3.0, 3.0)  # normalised advantages


def drift_values(resolved: ResolvedDrift, ratio, advantage, progress) -> np.ndarray:
    apply = jax.jit(lambda r, a, p: resolved.drift.apply(resolved.params, r, a, p))
    return np.asarray(
        apply(jnp.asarray(ratio, jnp.float32), jnp.asarray(advantage, jnp.float32), jnp.asarray(progress, jnp.float32))
    )


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
