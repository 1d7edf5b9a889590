"""One functional interface over gymnax and Brax environments.

    >>> import envs
    >>> env = envs.make("CartPole-v1")                    # any gymnax id
    >>> env = envs.make("hopper", backend="positional", episode_length=1000)   # any Brax env
    >>> obs, state = env.reset(key, env.default_params)
    >>> obs, state, reward, terminated, truncated, info = env.step(key, state, action, env.default_params)

See :mod:`envs.base` for the contract (auto-reset, truncation vs termination,
``info["final_observation"]``).
"""

from __future__ import annotations

from typing import Any

from envs.adapters import BRAX_BACKENDS, BraxEnvironment, GymnaxEnvironment
from envs.base import Box, Discrete, Environment, EpisodeState

BRAX_ENVS = (
    "ant",
    "halfcheetah",
    "hopper",
    "humanoid",
    "humanoidstandup",
    "inverted_pendulum",
    "inverted_double_pendulum",
    "pusher",
    "reacher",
    "swimmer",
    "walker2d",
)


class UnknownEnvironmentError(ValueError):
    """An unregistered environment name; the message lists the valid names."""


def gymnax_envs() -> tuple[str, ...]:
    import gymnax

    return tuple(gymnax.registered_envs)


def registered() -> list[str]:
    """Every name :func:`make` accepts."""
    return list(gymnax_envs()) + list(BRAX_ENVS)


def family_of(name: str) -> str:
    """``classic_control``, ``minatar``, ``brax``, ... for a registered name."""
    if name in BRAX_ENVS:
        return "brax"
    check(name)
    from envs.adapters import gymnax_family

    return gymnax_family(name)


def check(name: str) -> None:
    """Raise :class:`UnknownEnvironmentError` (listing valid names) if ``name`` is not registered."""
    if name not in BRAX_ENVS and name not in gymnax_envs():
        raise UnknownEnvironmentError(f"unknown environment {name!r}; valid environments: {', '.join(registered())}")


def make(name: str, **options: Any) -> Environment:
    """Build an environment by name.

    Brax options: ``backend`` (default ``positional``; one of
    ``positional, spring, generalized, mjx``), ``episode_length`` (default 1000),
    ``action_repeat`` (default 1). Gymnax options are passed to ``gymnax.make``.
    """
    check(name)
    if name in BRAX_ENVS:
        return BraxEnvironment(name, **options)
    return GymnaxEnvironment(name, **options)


__all__ = [
    "BRAX_BACKENDS",
    "BRAX_ENVS",
    "Box",
    "Discrete",
    "Environment",
    "EpisodeState",
    "UnknownEnvironmentError",
    "check",
    "family_of",
    "make",
    "registered",
]
