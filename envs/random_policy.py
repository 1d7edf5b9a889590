"""The return of a uniform-random policy: the zero point of normalised scores.

Scores across tasks are normalised as ``(R − R_random) / (R_ref − R_random)``;
dividing by ``R_ref`` alone ranks drifts the wrong way on tasks whose returns
are negative (Acrobot) and explodes where ``R_ref`` is near zero.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from envs.base import Discrete, Environment


def random_action(env: Environment, key: jax.Array) -> jax.Array:
    """One uniform action: an index of ``Discrete(n)``, or a point of the ``Box``."""
    space = env.action_space
    if isinstance(space, Discrete):
        return jax.random.randint(key, (), 0, space.num_actions)
    return jax.random.uniform(key, space.shape, minval=jnp.asarray(space.low), maxval=jnp.asarray(space.high))


def random_policy_return(env: Environment, key: jax.Array, num_envs: int, num_steps: int) -> tuple[jax.Array, jax.Array]:
    """``(mean return, episodes)`` of the episodes a uniform-random policy finishes.

    Runs ``num_envs`` environments for ``num_steps`` steps each (auto-reset), and
    averages the undiscounted return of every episode that ends in that window;
    the mean is NaN if none ends. Pure and jittable.
    """
    params = env.default_params
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), params)
    del obs

    def step(carry, key):
        state, total, count = carry
        key_action, key_step = jax.random.split(key)
        actions = jax.vmap(lambda k: random_action(env, k))(jax.random.split(key_action, num_envs))
        _, state, _, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(key_step, num_envs), state, actions, params
        )
        done = jnp.logical_or(terminated, truncated)
        return (state, total + jnp.sum(jnp.where(done, info["episode_return"], 0.0)), count + jnp.sum(done)), None

    init = (state, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
    (_, total, count), _ = jax.lax.scan(step, init, jax.random.split(jax.random.fold_in(key, 1), num_steps))
    return jnp.where(count > 0, total / jnp.maximum(count, 1), jnp.nan), count
