"""A PPO-family learner whose policy loss takes a drift function as input.

``make_train(config, env, drift)`` returns ``train(key, drift_params, hparams=None)``,
one pure function: the whole run (rollouts, GAE, minibatch epochs) is a
``lax.scan`` over updates, so it ``jit``s, and ``vmap``s over keys (seeds),
over drift parameters (an ES population) and over :class:`HParams` (sweeps).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from envs.base import Environment
from rl_algos.ppo import losses
from rl_algos.ppo.config import HParams, PPOConfig
from rl_algos.ppo.normalization import RunningStats, normalize, update_stats
from rl_algos.ppo.policy import Policy
from rl_algos.ppo.update import (  # noqa: F401  (re-exported: the learner's public pieces stay importable here)
    DIFFERENTIABLE_EPS_ROOT,
    Batch,
    make_optimizer,
    ppo_loss,
    sgd_epochs,
)

METRIC_NAMES = (
    "episode_return",
    "episodes",
    "policy_loss",
    "value_loss",
    "entropy",
    "approx_kl",
    "drift_active",
    "drift_mean",
    "learning_rate",
)


# Fewest env steps (per learner) between two progress callbacks by default; see progress_interval.
PROGRESS_MIN_STEPS = 16_384


@struct.dataclass
class TrainState:
    params: Any  # {"actor": ..., "critic": ...}
    opt_state: Any
    obs_stats: RunningStats
    env_state: Any
    obs: jax.Array  # [num_envs, *obs_shape], raw
    key: jax.Array


@struct.dataclass
class Transition:
    obs: jax.Array  # raw observation the action was taken from
    action: jax.Array  # discrete action, or the *pre-squash/pre-clip* Gaussian sample
    log_prob: jax.Array
    reward: jax.Array  # scaled
    terminated: jax.Array
    done: jax.Array
    final_obs: jax.Array  # raw observation that followed the action, before any reset
    episode_return: jax.Array
    episode_length: jax.Array


def unroll_values(
    policy: Policy,
    params,
    norm_obs: jax.Array,
    traj: Transition,
    normalize_fn: Callable[[jax.Array], jax.Array],
    truncation_rows: int | None,
) -> tuple[jax.Array, jax.Array]:
    """``V(s_t)`` and ``V(s'_t)`` for one unroll, ``[T, N]`` each.

    ``norm_obs`` is ``[T, N, *obs]`` (already normalised); ``s'_t`` is
    ``traj.final_obs[t]``, the observation that followed step ``t`` before any
    reset, put through ``normalize_fn``. The policy and normaliser are frozen
    during an unroll, so every value comes from one batched critic pass.

    ``s'_t = s_{t+1}`` unless the episode ended at ``t``, and a terminated
    step's bootstrap is multiplied by 0, so only the last step and the
    *truncated* steps need rows of their own. ``truncation_rows`` bounds the
    truncated steps per env among the first ``T−1`` (``ceil((T−1)/L)`` for an
    env with time limit ``L``); ``None`` sends every ``final_obs`` through the
    critic. On terminated steps (``t < T−1``) the second output is then
    ``V(s_{t+1})``, which GAE multiplies by 0.

    An env that truncates more often than its declared time limit would leave
    truncated steps without a row; rather than bootstrapping those from the
    next episode's first observation (silently wrong), the whole second output
    is then NaN, so the run's losses turn non-finite and it is reported as failed.
    """
    steps, num_envs = norm_obs.shape[:2]
    obs_shape = norm_obs.shape[2:]
    flat_obs = norm_obs.reshape((steps * num_envs,) + obs_shape)
    if truncation_rows is None:
        rows = jnp.concatenate([flat_obs, normalize_fn(traj.final_obs).reshape(flat_obs.shape)])
        out = policy.value(params, rows)
        return out[: steps * num_envs].reshape(steps, num_envs), out[steps * num_envs :].reshape(steps, num_envs)
    extra = truncation_rows * num_envs
    truncated = jnp.logical_and(traj.done[:-1], jnp.logical_not(traj.terminated[:-1])).reshape(-1)
    # Out-of-range fill: padded slots gather a clipped row and are dropped by the scatter below.
    index = jnp.nonzero(truncated, size=extra, fill_value=truncated.shape[0])[0]
    truncated_obs = jnp.take(traj.final_obs[:-1].reshape((-1,) + obs_shape), index, axis=0, mode="clip")
    rows = jnp.concatenate([flat_obs, normalize_fn(traj.final_obs[-1]), normalize_fn(truncated_obs)])
    out = policy.value(params, rows)
    values = out[: steps * num_envs].reshape(steps, num_envs)
    last = out[steps * num_envs : (steps + 1) * num_envs]
    inner = values[1:].reshape(-1).at[index].set(out[(steps + 1) * num_envs :], mode="drop")
    next_values = jnp.concatenate([inner.reshape(steps - 1, num_envs), last[None]])
    overflow = jnp.sum(truncated) > extra  # more truncations than the time limit allows: some bootstrap has no row
    return values, jnp.where(overflow, jnp.nan, next_values)


def progress_interval(config: PPOConfig) -> int:
    """Updates between two progress callbacks: about 100 per run, at least :data:`PROGRESS_MIN_STEPS` env steps apart.

    Each callback stalls the compiled loop for a host round trip (see docs/PERFORMANCE.md).
    """
    return max(1, config.num_updates // 100, -(-PROGRESS_MIN_STEPS // config.batch_size))


@dataclasses.dataclass(frozen=True)
class LearnerSteps:
    """One PPO learner as separate pure steps, for callers that drive the updates themselves.

    :func:`make_train` scans ``collect`` then ``learn`` over ``num_updates``;
    the meta-gradient outer loop (:mod:`rl_algos.ppo.meta_gradient`) runs a few
    of them at a time and differentiates ``learn`` with respect to the drift.

    - ``init(key) -> TrainState``
    - ``collect(state, hparams) -> (state, batch, return_sum, episodes, raw_obs)``: one update's rollouts with
      the frozen policy, and their GAE; ``batch`` leaves are ``[batch_size, ...]``.
    - ``learn(state, batch, raw_obs, update_index, drift_params, hparams) -> (state, aux)``: the SGD epochs on
      ``batch`` at progress ``update_index / num_updates`` and the normaliser update; ``aux`` holds every
      :func:`ppo_loss` diagnostic averaged over the minibatches, and the learning rate.
    """

    config: PPOConfig
    policy: Policy
    init: Callable
    collect: Callable
    learn: Callable


def make_learner_steps(
    config: PPOConfig,
    env: Environment,
    drift,
    env_axis: tuple[str, int] | None = None,
    differentiable: bool = False,
) -> LearnerSteps:
    """The steps of one learner (see :class:`LearnerSteps`; ``env_axis`` as in :func:`make_train`).

    ``differentiable`` puts :data:`DIFFERENTIABLE_EPS_ROOT` under Adam's square root, so ``learn`` has finite
    derivatives with respect to the drift's parameters everywhere.
    """
    eps_root = DIFFERENTIABLE_EPS_ROOT if differentiable else 0.0
    config.validate()
    axis_name, shards = env_axis if env_axis is not None else (None, 1)
    if config.num_envs % shards or config.minibatch_size % shards:
        raise ValueError(
            f"cannot split a learner over {shards} devices: num_envs {config.num_envs} and the minibatch of "
            f"{config.minibatch_size} transitions must both divide by {shards}"
        )
    num_envs = config.num_envs // shards  # envs of this device
    policy = Policy(config, env)
    num_updates = config.num_updates
    env_params = env.default_params
    time_limit = getattr(env, "time_limit", None)  # lets unroll_values bound its truncation rows statically
    truncation_rows = None if time_limit is None else -(-(config.num_steps - 1) // int(time_limit))
    vmapped_reset = jax.vmap(env.reset, in_axes=(0, None))
    vmapped_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def init(key: jax.Array) -> TrainState:
        key, key_params, key_reset = jax.random.split(key, 3)
        params = policy.init(key_params)  # the same on every device of a split learner
        if axis_name is not None:
            device = jax.lax.axis_index(axis_name)
            key, key_reset = jax.random.fold_in(key, device), jax.random.fold_in(key_reset, device)
        obs, env_state = vmapped_reset(jax.random.split(key_reset, num_envs), env_params)
        obs_stats = RunningStats.create(tuple(env.observation_shape))
        # Adam's state does not depend on the hyper-parameters, so any HParams builds it.
        opt_state = make_optimizer(config, HParams.from_config(config), eps_root).init(params)
        return TrainState(params, opt_state, obs_stats, env_state, obs, key)

    def collect(state: TrainState, hparams: HParams):
        def env_step(state: TrainState, _):
            """One step of every env with the (frozen) policy; returns the transition."""
            key, key_action, key_step = jax.random.split(state.key, 3)
            norm_obs = normalize(state.obs_stats, state.obs) if config.normalize_obs else state.obs
            action, env_action, log_prob = policy.sample(state.params, norm_obs, key_action)
            next_obs, env_state, reward, terminated, truncated, info = vmapped_step(
                jax.random.split(key_step, num_envs), state.env_state, env_action, env_params
            )
            transition = Transition(
                obs=state.obs,
                action=action,
                log_prob=log_prob,
                reward=reward * hparams.reward_scale,
                terminated=terminated,
                done=jnp.logical_or(terminated, truncated),
                final_obs=info["final_observation"],
                episode_return=info["episode_return"],
                episode_length=info["episode_length"],
            )
            return state.replace(env_state=env_state, obs=next_obs, key=key), transition

        def collect_unroll(state: TrainState, _):
            """``num_steps`` env steps, then values and GAE for them: one unroll's slice of the batch."""
            state, traj = jax.lax.scan(env_step, state, None, config.num_steps)
            normalize_fn = functools.partial(normalize, state.obs_stats) if config.normalize_obs else (lambda x: x)
            norm_obs = normalize_fn(traj.obs)
            values, next_values = unroll_values(policy, state.params, norm_obs, traj, normalize_fn, truncation_rows)
            advantages, targets = losses.compute_gae(
                traj.reward, values, next_values, traj.terminated, traj.done, hparams.gamma, hparams.gae_lambda
            )
            batch = Batch(norm_obs, traj.action, traj.log_prob, advantages, targets)
            episode_stats = (jnp.sum(traj.episode_return), jnp.sum(traj.episode_length > 0))
            return state, (batch, episode_stats, traj.obs)

        state, (batch, (return_sum, episodes), raw_obs) = jax.lax.scan(
            collect_unroll, state, None, config.rollouts_per_update
        )
        batch = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[3:]), batch)
        return state, batch, jnp.sum(return_sum), jnp.sum(episodes), raw_obs

    def learn(state: TrainState, batch: Batch, raw_obs, update_index, drift_params, hparams: HParams):
        progress = update_index / num_updates
        lr = hparams.learning_rate * (1.0 - progress if config.anneal_lr else 1.0)
        key, key_epochs = jax.random.split(state.key)
        params, opt_state, aux = sgd_epochs(
            state.params,
            state.opt_state,
            batch,
            key_epochs,
            config=config,
            policy=policy,
            optimizer=make_optimizer(config, hparams, eps_root),
            drift_fn=functools.partial(drift.apply, drift_params),
            hparams=hparams,
            learning_rate=lr,
            progress=progress,
            axis_name=axis_name,
        )
        obs_stats = update_stats(state.obs_stats, raw_obs, axis_name) if config.normalize_obs else state.obs_stats
        state = state.replace(params=params, opt_state=opt_state, obs_stats=obs_stats, key=key)
        metrics = {name: value.mean() for name, value in aux.items()}
        metrics["learning_rate"] = lr
        return state, metrics

    return LearnerSteps(config, policy, init, collect, learn)


def make_train(
    config: PPOConfig,
    env: Environment,
    drift,
    progress_callback: Callable[[Any], None] | None = None,
    progress_every: int | None = None,
    env_axis: tuple[str, int] | None = None,
):
    """Build ``train(key, drift_params, hparams=None) -> (TrainState, metrics)``.

    ``metrics`` maps each name in :data:`METRIC_NAMES` to a ``[num_updates]``
    array: ``episode_return`` is the mean undiscounted return of the episodes
    that ended during that update (NaN if none did) and ``episodes`` their
    count; losses and diagnostics are averaged over the update's minibatches.
    ``hparams=None`` uses the config's values.

    ``progress_callback(update_index)``, if given, is called from inside the
    compiled loop (``jax.debug.callback``) every ``progress_every`` updates
    (default :func:`progress_interval`) and after the last; it is the only
    host interaction, and it is off by default.

    ``env_axis = (axis_name, shards)`` splits one learner over ``shards``
    devices, as Brax's PPO does: ``train`` then runs under ``shard_map`` over
    that axis, each device steps ``num_envs / shards`` envs (its own keys, from
    ``fold_in(key, device)``) and takes its share of every minibatch, and the
    gradients, the observation statistics, the advantage normalisation and
    the metrics are combined over the devices, so the parameters are the same
    on all of them. It is the same algorithm on the same global batch sizes;
    its random draws differ from the unsplit learner's (other keys per env).
    """
    steps = make_learner_steps(config, env, drift, env_axis)
    axis_name = env_axis[0] if env_axis is not None else None
    num_updates = config.num_updates
    every = progress_every or progress_interval(config)

    def train(key: jax.Array, drift_params, hparams: HParams | None = None):
        hparams = HParams.from_config(config) if hparams is None else hparams

        def update_step(state: TrainState, update_index):
            """Collect a batch, run the SGD epochs on it, update the normaliser; per-update metrics out."""
            state, batch, return_sum, episodes, raw_obs = steps.collect(state, hparams)
            state, metrics = steps.learn(state, batch, raw_obs, update_index, drift_params, hparams)
            if axis_name is not None:
                episodes, return_sum = jax.lax.psum((episodes, return_sum), axis_name)
            metrics["episode_return"] = jnp.where(episodes > 0, return_sum / jnp.maximum(episodes, 1), jnp.nan)
            metrics["episodes"] = episodes
            if progress_callback is not None:
                jax.lax.cond(
                    ((update_index + 1) % every == 0) | (update_index + 1 == num_updates),
                    lambda: jax.debug.callback(progress_callback, update_index + 1),
                    lambda: None,
                )
            return state, metrics

        return jax.lax.scan(update_step, steps.init(key), jnp.arange(num_updates))

    return train


def final_return(metrics: dict, window_fraction: float) -> jax.Array:
    """Mean return of the episodes that ended in the last ``window_fraction`` of updates.

    Works on ``[..., num_updates]`` metrics (leading seed/population axes
    allowed) and returns ``[...]``. If no episode ended inside the window (long
    episodes, short runs), the mean of the last update in which any ended is
    used instead; NaN only if no episode ended at all.
    """
    returns, episodes = metrics["episode_return"], metrics["episodes"].astype(jnp.float32)
    num_updates = returns.shape[-1]
    window = max(1, int(round(num_updates * window_fraction)))
    in_window = jnp.arange(num_updates) >= num_updates - window
    weights = jnp.where(in_window & (episodes > 0), episodes, 0.0)
    total = jnp.sum(jnp.where(weights > 0, returns * weights, 0.0), axis=-1)
    count = jnp.sum(weights, axis=-1)
    last_index = jnp.max(jnp.where(episodes > 0, jnp.arange(num_updates), -1), axis=-1)
    last = jnp.take_along_axis(returns, jnp.maximum(last_index, 0)[..., None], axis=-1)[..., 0]
    fallback = jnp.where(last_index >= 0, last, jnp.nan)
    return jnp.where(count > 0, total / jnp.maximum(count, 1.0), fallback)
