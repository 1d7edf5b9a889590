"""The functional environment interface shared by gymnax and Brax environments.

    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

``step`` resets automatically: when an episode ends, the returned ``obs`` is
the first observation of the next episode while ``info["final_observation"]``
holds the true last observation of the one that ended (equal to ``obs``
otherwise), so a learner can bootstrap a value through a time-limit
truncation. ``terminated`` (the MDP reached a terminal state) and
``truncated`` (the time limit cut the episode short) are never both true:
termination takes precedence.

``info`` always has ``final_observation``, ``episode_return`` and
``episode_length``: the undiscounted return and length of the episode that
ended at this step (zero when none ended), so learners report real returns
however they scale rewards.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@dataclasses.dataclass(frozen=True)
class Discrete:
    """``num_actions`` integer actions ``0 .. num_actions-1``."""

    num_actions: int


@dataclasses.dataclass(frozen=True)
class Box:
    """A real-valued action vector of ``shape`` bounded elementwise by ``low``/``high``
    (one number for every dimension, or a tuple with one bound per dimension)."""

    low: float | tuple[float, ...]
    high: float | tuple[float, ...]
    shape: tuple[int, ...]


@struct.dataclass
class EpisodeState:
    """Environment state plus the running statistics of the current episode."""

    inner: Any
    episode_return: jax.Array
    episode_length: jax.Array


class Environment:
    """Base class: subclasses implement ``_reset`` and ``_step`` on their inner state.

    ``_step(key, inner, action, params)`` must return
    ``(obs, inner, reward, terminated, truncated, final_obs)`` after auto-reset;
    this class adds the episode statistics and the ``info`` dict.
    """

    name: str
    family: str  # "classic_control", "minatar", "bsuite", "misc" or "brax"
    observation_shape: tuple[int, ...]
    action_space: Discrete | Box
    default_params: Any

    def _reset(self, key, params):
        raise NotImplementedError

    def _step(self, key, inner, action, params):
        raise NotImplementedError

    def reset(self, key: jax.Array, params: Any = None):
        params = self.default_params if params is None else params
        obs, inner = self._reset(key, params)
        zero = jnp.zeros((), jnp.float32)
        return obs, EpisodeState(inner, zero, jnp.zeros((), jnp.int32))

    def step(self, key: jax.Array, state: EpisodeState, action: jax.Array, params: Any = None):
        params = self.default_params if params is None else params
        obs, inner, reward, terminated, truncated, final_obs = self._step(key, state.inner, action, params)
        terminated = jnp.asarray(terminated, bool)
        truncated = jnp.logical_and(jnp.asarray(truncated, bool), jnp.logical_not(terminated))
        done = jnp.logical_or(terminated, truncated)
        reward = jnp.asarray(reward, jnp.float32)
        episode_return = state.episode_return + reward
        episode_length = state.episode_length + 1
        info = {
            "final_observation": final_obs,
            "episode_return": jnp.where(done, episode_return, 0.0),
            "episode_length": jnp.where(done, episode_length, 0),
        }
        next_state = EpisodeState(
            inner,
            jnp.where(done, 0.0, episode_return),
            jnp.where(done, 0, episode_length),
        )
        return obs, next_state, reward, terminated, truncated, info

    @property
    def is_discrete(self) -> bool:
        return isinstance(self.action_space, Discrete)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, obs={self.observation_shape}, actions={self.action_space})"
