"""The one interface every drift function shares.

A drift is a pair of pure functions bound to static options:

    init(key) -> params                                                   (a pytree)
    apply(params, ratio, advantage, progress, log_ratio=None) -> drift    (elementwise)

``ratio`` and ``advantage`` have any common shape ``S``; ``progress`` is a
scalar (or broadcastable to ``S``) in ``[0, 1]``; the result has shape ``S``.
``log_ratio`` is ``log(ratio)``, handed over by a caller that has it (the
policy loss forms ``ratio = exp(log_ratio)``); every drift takes ``log r`` from
it, never from ``ratio``, so ``log r`` stays exact and finite where ``ratio``
rounds to 0. Left out (``None``), it is ``log(ratio)``: the four positional
arguments alone remain a complete call.

Values that a user may want to sweep or meta-learn (ε, α, β, network weights)
live in ``params`` so that they ``vmap``; choices that change shapes live in
``options``.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Params = Any
InitFn = Callable[[jax.Array], Params]
ApplyFn = Callable[..., jax.Array]  # (params, ratio, advantage, progress, log_ratio=None) -> drift


def log_ratio_or_log(ratio: jax.Array, log_ratio: jax.Array | None) -> jax.Array:
    """``log r``: ``log_ratio`` when the caller gave it, else ``log(ratio)``."""
    return jnp.log(ratio) if log_ratio is None else log_ratio


@dataclasses.dataclass(frozen=True)
class Drift:
    """A registered drift family with its static options bound.

    Attributes:
      name: registry name of the family (``ppo_clip``, ``dpo``, ``lpo``, ...).
      options: the keyword arguments it was made with (JSON-serialisable).
      init: ``key -> params``.
      apply: ``(params, ratio, advantage, progress, log_ratio=None) -> drift``,
        elementwise. An ``apply`` written without ``log_ratio`` (a wrapper that
        only passes the four positional arguments on) is adapted on
        construction to accept and ignore it, so every ``Drift`` takes it.
    """

    name: str
    options: dict[str, Any]
    init: InitFn
    apply: ApplyFn

    def __post_init__(self):
        if not _takes_log_ratio(self.apply):
            object.__setattr__(self, "apply", _ignoring_log_ratio(self.apply))

    @property
    def spec(self) -> str:
        """``name:key=value,...`` — the string that :func:`drift_functions.parse_spec` reads."""
        if not self.options:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))

    def __hash__(self) -> int:  # options is a dict; hash by its spec so jit can key on it
        return hash(self.spec)


def _takes_log_ratio(apply: Callable) -> bool:
    try:
        parameters = inspect.signature(apply).parameters.values()
    except (TypeError, ValueError):  # no signature to read: leave it as given
        return True
    return any(p.name == "log_ratio" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _ignoring_log_ratio(apply: Callable) -> ApplyFn:
    def adapted(params, ratio, advantage, progress, log_ratio=None):
        del log_ratio  # ``apply`` takes log r from ``ratio`` itself
        return apply(params, ratio, advantage, progress)

    return adapted
