"""Separate actor and critic MLPs, and the action distributions they parameterise.

Distributions are written out by hand (a few lines each) so that log-probs
and entropies are plain functions of arrays that tests can reach.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "swish": nn.swish, "elu": nn.elu}
LOG_STD_INIT = 0.0
TANH_MIN_SCALE = 1e-3


class MLP(nn.Module):
    """Hidden layers with orthogonal(√2) init, then a linear head with orthogonal(``head_scale``).

    Input ``[batch, *obs_shape]``: observations with more than one axis (MinAtar's
    ``10×10×C`` grids, bsuite's boards) are flattened to ``[batch, prod(obs_shape)]``.
    """

    hidden: Sequence[int]
    out_dim: int
    activation: str = "tanh"
    head_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        act = _ACTIVATIONS[self.activation]
        if x.ndim > 2:
            x = x.reshape(x.shape[0], -1)
        for width in self.hidden:
            x = act(
                nn.Dense(width, kernel_init=nn.initializers.orthogonal(np.sqrt(2)), bias_init=nn.initializers.zeros)(x)
            )
        return nn.Dense(
            self.out_dim, kernel_init=nn.initializers.orthogonal(self.head_scale), bias_init=nn.initializers.zeros
        )(x)


class Actor(nn.Module):
    """Policy head. Output: logits ``[..., A]`` (discrete) or ``(mean, log_std)`` each ``[..., A]`` (continuous).

    ``gaussian``: state-independent log-std parameter. ``tanh_gaussian``: the
    network outputs mean and a softplus scale (Brax's parameterisation).
    """

    hidden: Sequence[int]
    action_dim: int
    discrete: bool
    activation: str = "tanh"
    distribution: str = "gaussian"

    @nn.compact
    def __call__(self, obs):
        if self.discrete:
            return MLP(self.hidden, self.action_dim, self.activation, head_scale=0.01)(obs)
        if self.distribution == "tanh_gaussian":
            out = MLP(self.hidden, 2 * self.action_dim, self.activation, head_scale=0.01)(obs)
            mean, raw_scale = jnp.split(out, 2, axis=-1)
            return mean, jnp.log(jax.nn.softplus(raw_scale) + TANH_MIN_SCALE)
        mean = MLP(self.hidden, self.action_dim, self.activation, head_scale=0.01)(obs)
        log_std = self.param("log_std", nn.initializers.constant(LOG_STD_INIT), (self.action_dim,))
        return mean, jnp.broadcast_to(log_std, mean.shape)


class Critic(nn.Module):
    hidden: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs):
        return MLP(self.hidden, 1, self.activation, head_scale=1.0)(obs)[..., 0]


# ---- distributions -------------------------------------------------------


def categorical_log_prob(logits: jax.Array, action: jax.Array) -> jax.Array:
    """``log softmax(logits)[action]``. ``[..., A], [...] -> [...]``."""
    log_probs = jax.nn.log_softmax(logits)
    return jnp.take_along_axis(log_probs, action[..., None].astype(jnp.int32), axis=-1)[..., 0]


def categorical_entropy(logits: jax.Array) -> jax.Array:
    """``−Σ p log p``. ``[..., A] -> [...]``."""
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)


def gaussian_log_prob(mean: jax.Array, log_std: jax.Array, sample: jax.Array) -> jax.Array:
    """Diagonal Gaussian log-density summed over the last axis. ``[..., D] x3 -> [...]``."""
    z = (sample - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi), axis=-1)


def gaussian_entropy(log_std: jax.Array) -> jax.Array:
    """``Σ (log σ + ½ log 2πe)``. ``[..., D] -> [...]``."""
    return jnp.sum(log_std + 0.5 * math.log(2 * math.pi * math.e), axis=-1)
