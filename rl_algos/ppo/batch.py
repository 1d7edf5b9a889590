"""Train a batch of learners in one program: the one runner every workflow uses.

A batch is ``B`` learners given as keys × drift parameters × hyper-parameters,
each either batched (a leading axis of size ``B``) or shared by all learners:
seeds of one drift, an ES population, sweep points (× seeds, flattened). The
result is pure, so the caller decides how to compile it and over which devices
to spread the batch axis.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
from flax import struct

from envs.base import Environment
from rl_algos.ppo.config import HParams, PPOConfig
from rl_algos.ppo.train import final_return, make_train


class BatchAxes(NamedTuple):
    """``vmap`` ``in_axes`` of ``(keys, drift_params, hparams)``: ``0`` = one per learner, ``None`` = shared."""

    keys: int | None = 0
    drift_params: int | None = None
    hparams: int | None = None


SEEDS = BatchAxes(keys=0, drift_params=None, hparams=None)  # the seeds of one drift
MEMBERS = BatchAxes(keys=0, drift_params=0, hparams=None)  # one drift (and key) per learner
POINTS = BatchAxes(keys=0, drift_params=0, hparams=0)  # sweep points × seeds, flattened


@struct.dataclass
class BatchOutput:
    params: Any  # final actor/critic parameters, leaves [B, ...] (one learner: [...])
    metrics: dict  # name -> [B, num_updates] (see make_train)
    final_returns: jax.Array  # [B], see final_return


def make_learner(
    config: PPOConfig,
    env: Environment,
    drift,
    progress_callback: Callable[[Any], None] | None = None,
    env_axis: tuple[str, int] | None = None,
) -> Callable[[jax.Array, Any, HParams | None], BatchOutput]:
    """``learner(key, drift_params, hparams=None) -> BatchOutput`` for *one* learner (no batch axis).

    :func:`make_train` with its output reduced to what callers keep: the final
    actor/critic parameters, the per-update metrics and the final return.
    ``env_axis`` is passed to :func:`make_train` (a learner split over devices).
    """
    train = make_train(config, env, drift, progress_callback=progress_callback, env_axis=env_axis)

    def learner(key: jax.Array, drift_params, hparams: HParams | None = None) -> BatchOutput:
        state, metrics = train(key, drift_params, hparams)
        return BatchOutput(state.params, metrics, final_return(metrics, config.final_return_window))

    return learner


def make_train_batch(
    config: PPOConfig,
    env: Environment,
    drift,
    axes: BatchAxes = SEEDS,
    progress_callback: Callable[[Any], None] | None = None,
) -> Callable[[jax.Array, Any, HParams | None], BatchOutput]:
    """``train_batch(keys, drift_params, hparams=None) -> BatchOutput``: ``vmap`` of :func:`make_learner` over ``axes``.

    ``hparams=None`` (with ``axes.hparams = None``) uses the config's values.
    The progress callback receives the ``[B]`` update indices of the batch.
    """
    batched = jax.vmap(make_learner(config, env, drift, progress_callback), in_axes=tuple(axes))

    def train_batch(keys: jax.Array, drift_params, hparams: HParams | None = None) -> BatchOutput:
        return batched(keys, drift_params, hparams)

    return train_batch
