"""Pure drift functions and their registry.

    >>> import drift_functions
    >>> drift = drift_functions.make("dpo", alpha=1.5)
    >>> params = drift.init(key)
    >>> drift.apply(params, ratio, advantage, progress)                        # log r = log(ratio)
    >>> drift.apply(params, jnp.exp(log_ratio), advantage, progress, log_ratio)  # log r exact

Every drift is non-negative, exactly zero at ``ratio = 1`` and flat there, for
any parameters (``tests/test_drift_functions.py`` checks this on grids).
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable
from typing import Any

import numpy as np

from drift_functions.base import DEFAULT_REGIME, Drift, Regime, regime_inputs
from drift_functions.closed_form import dpo_drift, make_dpo, make_dpo_ra, make_ppo_clip, ppo_clip_drift
from drift_functions.learned import lpo_features, make_lpo, make_ra_lpo, make_ta_lpo
from drift_functions.polynomial import dpo_poly_drift, make_dpo_poly

_REGISTRY: dict[str, Callable[..., Drift]] = {
    "ppo_clip": make_ppo_clip,
    "dpo": make_dpo,
    "dpo_poly": make_dpo_poly,
    "dpo_ra": make_dpo_ra,
    "lpo": make_lpo,
    "ta_lpo": make_ta_lpo,
    "ra_lpo": make_ra_lpo,
}
# Friendly spellings users type; they resolve to a registered family.
_ALIASES = {"ppo": "ppo_clip", "talpo": "ta_lpo", "ta-lpo": "ta_lpo", "ralpo": "ra_lpo", "ra-lpo": "ra_lpo"}


class UnknownDriftError(ValueError):
    """An unregistered drift name; the message lists the valid names."""


def registered() -> list[str]:
    """Names accepted by :func:`make`."""
    return sorted(_REGISTRY)


def register(name: str, factory: Callable[..., Drift]) -> None:
    """Add a drift family (``factory(**options) -> Drift``) to the registry."""
    if name in _REGISTRY:
        raise ValueError(f"drift {name!r} is already registered")
    _REGISTRY[name] = factory


def factory(name: str) -> Callable[..., Drift]:
    """The registered ``factory(**options) -> Drift`` for ``name`` (or an alias)."""
    canonical = _ALIASES.get(name, name)
    if canonical not in _REGISTRY:
        raise UnknownDriftError(
            f"unknown drift {name!r}; valid drifts: {', '.join(registered())} "
            f"(aliases: {', '.join(f'{a}->{c}' for a, c in sorted(_ALIASES.items()))}), "
            "or a path to a saved drift artifact (.npz)"
        )
    return _REGISTRY[canonical]


def option_types(name: str) -> dict[str, type]:
    """``{option: type}`` of a drift family's factory (its keyword arguments)."""
    return {k: v for k, v in typing.get_type_hints(factory(name)).items() if k != "return"}


def _describe(types_: dict[str, type]) -> str:
    return ", ".join(f"{k} ({getattr(t, '__name__', t)})" for k, t in types_.items()) or "none"


def _check_option(family: str, key: str, value: Any, expected: type, types_: dict[str, type]) -> Any:
    """``value`` as ``expected`` (bool, int or float; floats finite), else a ValueError naming the option."""
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    ok = True
    if expected is bool:
        ok = isinstance(value, (bool, np.bool_))
    elif expected is int:
        ok = number and math.isfinite(value) and float(value) == int(value)
        value = int(value) if ok else value
    elif expected is float:
        ok = number and math.isfinite(value)
        value = float(value) if ok else value
    if not ok:
        kind = {bool: "true or false (bool)", int: "an integer (int)", float: "a finite number (float)"}.get(
            expected, getattr(expected, "__name__", expected)
        )
        raise ValueError(
            f"bad option for drift {family!r}: {key} must be {kind}, got {value!r}; valid options: {_describe(types_)}"
        )
    return value


def make(name: str, **options: Any) -> Drift:
    """Build a registered drift with its options bound.

    Options are checked against the factory's signature first: an unknown
    option or a value of the wrong type (or a non-finite float) raises a
    ``ValueError`` naming the option, the expected type and the valid options.
    """
    build = factory(name)
    family = _ALIASES.get(name, name)
    types_ = option_types(name)
    unknown = sorted(set(options) - set(types_))
    if unknown:
        raise ValueError(
            f"bad option for drift {family!r}: unknown option {', '.join(unknown)}; valid options: {_describe(types_)}"
        )
    options = {k: _check_option(family, k, v, types_[k], types_) for k, v in options.items()}
    try:
        return build(**options)
    except TypeError as error:
        raise ValueError(f"bad option for drift {family!r}: {error}; valid options: {_describe(types_)}") from None


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``name:key=value,key=value`` into a name and typed options.

    Values are read as int, float or bool where they look like one.
    """
    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    if rest:
        for item in rest.split(","):
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise ValueError(f"malformed drift override {item!r} in {spec!r}; expected name:key=value[,key=value]")
            options[key.strip()] = _parse_scalar(value.strip())
    return name.strip(), options


def _parse_scalar(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


__all__ = [
    "DEFAULT_REGIME",
    "Drift",
    "Regime",
    "UnknownDriftError",
    "dpo_drift",
    "dpo_poly_drift",
    "factory",
    "lpo_features",
    "make",
    "option_types",
    "parse_spec",
    "ppo_clip_drift",
    "regime_inputs",
    "register",
    "registered",
]
