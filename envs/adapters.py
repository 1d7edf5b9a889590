"""Adapters from gymnax and Brax to :class:`envs.base.Environment`."""

from __future__ import annotations

import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs.base import Box, Discrete, Environment

MINATAR = ("Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar", "Seaquest-MinAtar", "SpaceInvaders-MinAtar")
CLASSIC_CONTROL = ("CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0")


# gymnax families whose every env counts ``state.time`` from 0 at reset, adds 1 per step and
# truncates only through gymnax's base ``is_truncated`` (``time >= max_steps_in_episode``);
# checked in the gymnax 1.0.1 sources.
TIME_LIMITED_FAMILIES = ("classic_control", "minatar")


def gymnax_family(name: str) -> str:
    if name in CLASSIC_CONTROL:
        return "classic_control"
    if name.endswith("-MinAtar"):
        return "minatar"
    return name.rsplit("-", 1)[-1] if "-" in name else "gymnax"


class GymnaxEnvironment(Environment):
    """A gymnax environment; gymnax 1.0 already auto-resets and reports ``final_observation``.

    ``time_limit``: with the default params, an episode is truncated only after
    this many steps since its reset (``None`` where that is not known), so a
    learner can bound how many truncations a window of steps holds.
    """

    def __init__(self, name: str, gymnax_env: tuple[Any, Any] | None = None, **env_kwargs: Any):
        import gymnax

        self.name = name
        if gymnax_env is None:
            self.family = gymnax_family(name)
            self._env, self.default_params = gymnax.make(name, **env_kwargs)
        else:  # a user's own environment (envs.custom): ``(env, params)``; its time limit is not known
            self.family = "gymnax"
            self._env, self.default_params = gymnax_env
        space = self._env.action_space(self.default_params)
        if hasattr(space, "n"):
            self.action_space = Discrete(int(space.n))
        else:
            shape = tuple(space.shape)
            low, high = (np.broadcast_to(np.asarray(b, np.float64), shape).reshape(-1) for b in (space.low, space.high))
            same = np.all(low == low[0]) and np.all(high == high[0])
            # Keep per-dimension bounds: collapsing them to (min, max) would let an action leave its own range.
            self.action_space = (
                Box(float(low[0]), float(high[0]), shape)
                if same
                else Box(tuple(low.tolist()), tuple(high.tolist()), shape)
            )
        obs_space = self._env.observation_space(self.default_params)
        self.observation_shape = tuple(obs_space.shape)
        self.time_limit = None
        limit = getattr(self.default_params, "max_steps_in_episode", None)
        base_truncation = type(self._env).is_truncated is gymnax.environments.environment.Environment.is_truncated
        if self.family in TIME_LIMITED_FAMILIES and base_truncation and limit is not None:
            self.time_limit = int(limit)

    def _reset(self, key, params):
        obs, state = self._env.reset(key, params)
        return obs.astype(jnp.float32), state

    def _step(self, key, inner, action, params):
        obs, state, reward, terminated, truncated, info = self._env.step(key, inner, action, params)
        final_obs = info["final_observation"].astype(jnp.float32)
        return obs.astype(jnp.float32), state, reward, terminated, truncated, final_obs


@struct.dataclass
class BraxInner:
    state: Any  # brax.envs.base.State of the running episode
    first: Any  # the state every episode of this env restarts from (as brax's AutoResetWrapper)
    steps: jax.Array


# Brax envs built for some backends only (brax 0.14: swimmer's model is `generalized`-only); the
# first one listed is the env's default. Every other env defaults to `positional`, the fastest on a CPU.
BRAX_ONLY_BACKENDS = {"swimmer": ("generalized",)}


def default_backend(name: str) -> str:
    return BRAX_ONLY_BACKENDS.get(name, ("positional",))[0]


class BraxEnvironment(Environment):
    """A Brax 0.14 environment with a time limit and automatic reset.

    Like Brax's own ``AutoResetWrapper``, a finished episode restarts from the
    initial state drawn at ``reset`` (one per parallel environment), so a
    step never pays for a fresh physics initialisation.

    ``time_limit``: the fewest agent steps between two truncations of one env
    (``ceil(episode_length / action_repeat)``).
    """

    family = "brax"

    def __init__(
        self,
        name: str,
        backend: str | None = None,
        episode_length: int = 1000,
        action_repeat: int = 1,
        brax_env: Any = None,
        **env_kwargs: Any,
    ):
        if episode_length < 1 or action_repeat < 1:
            raise ValueError("episode_length and action_repeat must be >= 1")
        self.name = name
        self.episode_length = int(episode_length)
        self.action_repeat = int(action_repeat)
        self.time_limit = -(-self.episode_length // self.action_repeat)
        self.default_params = None
        if brax_env is not None:  # a user's own environment (envs.custom), already built
            self._env = brax_env
            self.backend = backend or str(getattr(brax_env, "backend", "unknown"))
            self._set_spaces()
            return
        brax_envs = _import_brax_envs()
        backend = backend or default_backend(name)
        if backend not in BRAX_BACKENDS:
            raise ValueError(f"unknown brax backend {backend!r}; valid backends: {', '.join(BRAX_BACKENDS)}")
        supported = BRAX_ONLY_BACKENDS.get(name)
        if supported and backend not in supported:
            raise ValueError(f"brax {name} supports only the {' / '.join(supported)} backend, not {backend!r}")
        self.backend = backend
        with warnings.catch_warnings():  # brax warns on every env build that it is unmaintained
            warnings.simplefilter("ignore")
            self._env = brax_envs.get_environment(name, backend=backend, **env_kwargs)
        self._set_spaces()

    def _set_spaces(self) -> None:
        size = self._env.observation_size
        if not isinstance(size, (int, np.integer)):
            raise ValueError(f"{self.name}: observations must be one flat vector, got observation_size {size}")
        self.observation_shape = (int(size),)
        self.action_space = Box(-1.0, 1.0, (int(self._env.action_size),))

    @property
    def brax_env(self):
        """The underlying Brax environment (for side-by-side benchmarks with Brax's PPO)."""
        return self._env

    def _reset(self, key, params):
        state = self._env.reset(key)
        return state.obs, BraxInner(state, state, jnp.zeros((), jnp.int32))

    def _step(self, key, inner, action, params):
        del key, params  # Brax dynamics are deterministic given the state
        state = inner.state
        reward = jnp.zeros((), jnp.float32)
        terminated = jnp.zeros((), bool)
        for _ in range(self.action_repeat):
            state = self._env.step(state, action)
            reward = reward + state.reward
            terminated = jnp.logical_or(terminated, state.done > 0.5)
        steps = inner.steps + self.action_repeat
        truncated = steps >= self.episode_length
        done = jnp.logical_or(terminated, truncated)
        final_obs = state.obs
        next_state = jax.tree.map(lambda first, cur: jnp.where(done, first, cur), inner.first, state)
        next_steps = jnp.where(done, 0, steps)
        return next_state.obs, BraxInner(next_state, inner.first, next_steps), reward, terminated, truncated, final_obs


BRAX_BACKENDS = ("positional", "spring", "generalized", "mjx")


def _import_brax_envs():
    """Import ``brax.envs`` without the "Failed to import warp" lines that MuJoCo prints
    to stdout when the optional GPU-only ``warp`` package is absent."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from brax import envs as brax_envs
    return brax_envs
