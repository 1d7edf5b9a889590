"""One functional interface over gymnax and Brax environments.

    >>> import envs
    >>> env = envs.make("CartPole-v1")                    # any gymnax id
    >>> env = envs.make("hopper", backend="positional", episode_length=1000)   # any Brax env
    >>> obs, state = env.reset(key, env.default_params)
    >>> obs, state, reward, terminated, truncated, info = env.step(key, state, action, env.default_params)

See :mod:`envs.base` for the contract (auto-reset, truncation vs termination,
``info["final_observation"]``). Your own environment is named by where it lives,
``module:attribute`` or ``path/to/file.py:attribute`` (:mod:`envs.custom`):

    >>> env = envs.make("examples/point_mass.py:make", episode_length=200)
"""

from __future__ import annotations

from typing import Any

from envs import custom
from envs.adapters import BRAX_BACKENDS, BraxEnvironment, GymnaxEnvironment, default_backend
from envs.base import Box, Discrete, Environment, EpisodeState
from envs.custom import CustomEnvironmentError, UnknownEnvironmentError

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


def gymnax_envs() -> tuple[str, ...]:
    import gymnax

    return tuple(gymnax.registered_envs)


def registered() -> list[str]:
    """Every name :func:`make` accepts."""
    return list(gymnax_envs()) + list(BRAX_ENVS)


def family_of(name: str) -> str:
    """``classic_control``, ``minatar``, ``brax``, ... for a registered name; ``brax`` or ``gymnax`` for your own."""
    if name in BRAX_ENVS or _registered_brax(name):
        return "brax"
    if custom.is_custom(name):
        return custom.load(name).kind
    check(name)
    from envs.adapters import gymnax_family

    return gymnax_family(name)


def check(name: str) -> None:
    """Raise :class:`UnknownEnvironmentError` (listing valid names) if ``name`` is not registered.

    A ``module:attribute`` name is imported and built once (:func:`envs.custom.load`);
    a mistake there raises :class:`CustomEnvironmentError` (a subclass) with a one-line message.
    """
    if custom.is_custom(name):
        custom.load(name)
    elif name not in BRAX_ENVS and name not in gymnax_envs() and not _registered_brax(name):
        raise UnknownEnvironmentError(
            f"unknown environment {name!r}; valid environments: {', '.join(registered())}, "
            "or your own as module:attribute or path/to/file.py:attribute"
        )


def make(name: str, **options: Any) -> Environment:
    """Build an environment by name.

    Brax options: ``backend`` (default ``positional``, or the one backend an env
    supports, e.g. ``generalized`` for swimmer; one of
    ``positional, spring, generalized, mjx``), ``episode_length`` (default 1000),
    ``action_repeat`` (default 1). Gymnax options are passed to ``gymnax.make``.
    For your own env (``module:attribute``), ``episode_length`` and
    ``action_repeat`` work as for Brax's envs and every other option (``backend``
    included) is passed to its class or function.
    """
    check(name)
    if custom.is_custom(name):
        loaded = custom.load(name)
        if loaded.kind == "brax":
            wrapper = {k: options.pop(k) for k in ("episode_length", "action_repeat") if k in options}
            return BraxEnvironment(name, brax_env=loaded.make(**options), **wrapper)
        return GymnaxEnvironment(name, gymnax_env=loaded.make(**options))
    if name in BRAX_ENVS or _registered_brax(name):
        return BraxEnvironment(name, **options)
    return GymnaxEnvironment(name, **options)


def _registered_brax(name: str) -> bool:
    """A name registered in this process with ``brax.envs.register_environment`` (Brax already imported)."""
    return name not in BRAX_ENVS and custom.registered_brax(name)


__all__ = [
    "BRAX_BACKENDS",
    "BRAX_ENVS",
    "Box",
    "CustomEnvironmentError",
    "Discrete",
    "Environment",
    "EpisodeState",
    "UnknownEnvironmentError",
    "check",
    "default_backend",
    "family_of",
    "make",
    "registered",
]
