"""Running observation statistics (parallel Welford merge), as a vmappable pytree."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

OBS_CLIP = 10.0
VAR_EPS = 1e-8


@struct.dataclass
class RunningStats:
    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def create(cls, shape: tuple[int, ...]) -> RunningStats:
        return cls(jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32), jnp.zeros((), jnp.float32))


def update_stats(stats: RunningStats, batch: jax.Array, axis_name: str | None = None) -> RunningStats:
    """Merge a batch ``[..., *obs_shape]`` into the running mean/variance (Chan et al.).

    ``axis_name``: the batch is split in equal shards over that mapped axis
    (one learner's envs over devices); the merged statistics are those of the whole batch.
    """
    obs_ndim = stats.mean.ndim
    flat = batch.reshape((-1,) + batch.shape[batch.ndim - obs_ndim :])
    batch_count = flat.shape[0]
    batch_mean = flat.mean(axis=0)
    batch_var = flat.var(axis=0)
    if axis_name is not None:
        shards = jax.lax.psum(1, axis_name)
        global_mean = jax.lax.pmean(batch_mean, axis_name)
        batch_var = jax.lax.pmean(batch_var + (batch_mean - global_mean) ** 2, axis_name)
        batch_mean, batch_count = global_mean, batch_count * shards
    total = stats.count + batch_count
    delta = batch_mean - stats.mean
    mean = stats.mean + delta * batch_count / total
    # The first merge replaces the placeholder variance of 1.
    prior_m2 = jnp.where(stats.count > 0, stats.var * stats.count, 0.0)
    m2 = prior_m2 + batch_var * batch_count + delta**2 * stats.count * batch_count / total
    return RunningStats(mean, m2 / total, total)


def normalize(stats: RunningStats, obs: jax.Array) -> jax.Array:
    """``clip((obs − mean) / sqrt(var + 1e-8), ±10)``."""
    return jnp.clip((obs - stats.mean) / jnp.sqrt(stats.var + VAR_EPS), -OBS_CLIP, OBS_CLIP)
