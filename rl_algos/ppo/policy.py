"""The actor-critic a PPO learner trains: networks plus the action distribution, as pure methods."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from envs.base import Environment
from rl_algos.ppo.config import PPOConfig
from rl_algos.ppo.networks import (
    Actor,
    Critic,
    categorical_entropy,
    categorical_log_prob,
    gaussian_entropy,
    gaussian_log_prob,
)


class Policy:
    """Actor and critic with the action distribution bound; all methods are pure."""

    def __init__(self, config: PPOConfig, env: Environment):
        self.discrete = env.is_discrete
        self.action_space = env.action_space
        self.distribution = "categorical" if self.discrete else config.continuous_distribution
        action_dim = env.action_space.num_actions if self.discrete else env.action_space.shape[0]
        self.actor = Actor(
            config.actor_hidden, action_dim, self.discrete, config.activation, config.continuous_distribution
        )
        self.critic = Critic(config.critic_hidden, config.activation)
        self.obs_shape = env.observation_shape

    def init(self, key):
        key_actor, key_critic = jax.random.split(key)
        dummy = jnp.zeros((1,) + tuple(self.obs_shape), jnp.float32)
        return {"actor": self.actor.init(key_actor, dummy), "critic": self.critic.init(key_critic, dummy)}

    def value(self, params, obs):
        return self.critic.apply(params["critic"], obs)

    def log_prob_entropy(self, params, obs, action):
        out = self.actor.apply(params["actor"], obs)
        if self.discrete:
            return categorical_log_prob(out, action), categorical_entropy(out)
        mean, log_std = out
        # For tanh_gaussian the squashing Jacobian depends only on the stored
        # pre-squash sample, so it cancels in the ratio and is left out.
        return gaussian_log_prob(mean, log_std, action), gaussian_entropy(log_std)

    def sample(self, params, obs, key):
        """Returns ``(stored_action, env_action, log_prob)``."""
        out = self.actor.apply(params["actor"], obs)
        if self.discrete:
            action = jax.random.categorical(key, out)
            return action, action, categorical_log_prob(out, action)
        mean, log_std = out
        sample = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)
        low, high = jnp.asarray(self.action_space.low), jnp.asarray(self.action_space.high)
        if self.distribution == "tanh_gaussian":
            env_action = low + (jnp.tanh(sample) + 1.0) * 0.5 * (high - low)
        else:
            env_action = jnp.clip(sample, low, high)
        return sample, env_action, gaussian_log_prob(mean, log_std, sample)
