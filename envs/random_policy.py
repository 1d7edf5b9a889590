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


def random_policy_return(
    env: Environment, key: jax.Array, num_envs: int, max_steps: int
) -> tuple[jax.Array, jax.Array]:
    """``(mean return, episodes)``: the first episode of each of ``num_envs`` envs under a uniform-random policy.

    Every env runs until its first episode ends, so long episodes count as
    much as short ones (a fixed window would average only the episodes short
    enough to end in it). The loop stops once every env has finished one, or
    after ``max_steps`` steps; pass at least the env's episode limit (its time
    limit), and every env finishes. The mean is over the envs that finished,
    NaN if none did. Pure and jittable.
    """
    params = env.default_params
    _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), params)

    def unfinished(carry):
        _, _, finished, step, _ = carry
        return jnp.logical_and(step < max_steps, jnp.logical_not(jnp.all(finished)))

    def step(carry):
        state, first_return, finished, count, key = carry
        key, key_action, key_step = jax.random.split(key, 3)
        actions = jax.vmap(lambda k: random_action(env, k))(jax.random.split(key_action, num_envs))
        _, state, _, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(key_step, num_envs), state, actions, params
        )
        ends_now = jnp.logical_and(jnp.logical_or(terminated, truncated), jnp.logical_not(finished))
        first_return = jnp.where(ends_now, info["episode_return"].astype(jnp.float32), first_return)
        return state, first_return, jnp.logical_or(finished, ends_now), count + 1, key

    init = (
        state,
        jnp.zeros((num_envs,), jnp.float32),
        jnp.zeros((num_envs,), bool),
        jnp.zeros((), jnp.int32),
        jax.random.fold_in(key, 1),
    )
    _, first_return, finished, _, _ = jax.lax.while_loop(unfinished, step, init)
    episodes = jnp.sum(finished)
    mean = jnp.sum(jnp.where(finished, first_return, 0.0)) / jnp.maximum(episodes, 1)
    return jnp.where(episodes > 0, mean, jnp.nan), episodes
