"""The one interface every drift function shares.

A drift is a pair of pure functions bound to static options:

    init(key) -> params                                                               (a pytree)
    apply(params, ratio, advantage, progress, log_ratio=None, regime=None) -> drift   (elementwise)

``ratio`` and ``advantage`` have any common shape ``S``; ``progress`` is a
scalar (or broadcastable to ``S``) in ``[0, 1]``; the result has shape ``S``.
``log_ratio`` is ``log(ratio)``, handed over by a caller that has it (the
policy loss forms ``ratio = exp(log_ratio)``); every drift takes ``log r`` from
it, never from ``ratio``, so ``log r`` stays exact and finite where ``ratio``
rounds to 0. Left out (``None``), it is ``log(ratio)``: the four positional
arguments alone remain a complete call.

``regime`` (a :class:`Regime`) says where in its run the learner is beyond
``progress``: the epoch within the current batch and the run's shape (epochs per
batch, updates in the lifetime). The learner always passes it; a drift that does
not read it need not declare it (it is dropped for it), and ``None`` means
:data:`DEFAULT_REGIME`.

Values that a user may want to sweep or meta-learn (ε, α, β, network weights)
live in ``params`` so that they ``vmap``; choices that change shapes live in
``options``.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Params = Any
InitFn = Callable[[jax.Array], Params]
ApplyFn = Callable[..., jax.Array]  # (params, ratio, advantage, progress, log_ratio=None, regime=None) -> drift


class Regime(NamedTuple):
    """The learner's schedule, as a regime-aware drift sees it (scalars, traced or not).

    ``epoch_progress`` = k / K for the k-th of K epochs on the current batch
    (k = 0 … K−1, so ``[0, 1)``); ``num_epochs`` = K (``update_epochs``);
    ``num_updates`` = N, the lifetime in updates (``total_timesteps / batch_size``).
    """

    epoch_progress: Any = 0.0
    num_epochs: Any = 4.0
    num_updates: Any = 100.0


# What a drift sees without a learner around it (plots, distillation): the first epoch of PPO's usual 4.
DEFAULT_REGIME = Regime()
# The scales of log K and log N in :func:`regime_inputs`: 16 epochs (the most in the mix) and 1000 updates map to 1.
LOG_EPOCHS_SCALE = math.log(16.0)
LOG_UPDATES_SCALE = math.log(1000.0)


def regime_inputs(progress, regime: Regime | None) -> dict[str, jax.Array]:
    """The scalar inputs a regime-aware drift may read, each O(1) over the settings users run:

    progress p = n/N,   epoch_progress e = k/K,   log_epochs κ = log K / log 16,   log_lifetime λ = log N / log 1000
    """
    regime = DEFAULT_REGIME if regime is None else regime
    as_array = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return {
        "progress": as_array(progress),
        "epoch_progress": as_array(regime.epoch_progress),
        "log_epochs": jnp.log(as_array(regime.num_epochs)) / LOG_EPOCHS_SCALE,
        "log_lifetime": jnp.log(as_array(regime.num_updates)) / LOG_UPDATES_SCALE,
    }


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
      apply: ``(params, ratio, advantage, progress, log_ratio=None, regime=None) -> drift``,
        elementwise. An ``apply`` written without ``log_ratio`` or ``regime``
        (a wrapper that only passes the four positional arguments on) is
        adapted on construction to accept and ignore what it lacks, so every
        ``Drift`` takes both.
    """

    name: str
    options: dict[str, Any]
    init: InitFn
    apply: ApplyFn

    def __post_init__(self):
        missing = _missing_keywords(self.apply)
        if missing:
            object.__setattr__(self, "apply", _dropping(self.apply, missing))

    @property
    def spec(self) -> str:
        """``name:key=value,...`` — the string that :func:`drift_functions.parse_spec` reads."""
        if not self.options:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))

    def __hash__(self) -> int:  # options is a dict; hash by its spec so jit can key on it
        return hash(self.spec)


OPTIONAL_INPUTS = ("log_ratio", "regime")  # keyword inputs every Drift.apply accepts


def _missing_keywords(apply: Callable) -> tuple[str, ...]:
    """The optional inputs ``apply`` does not declare (none if it takes ``**kwargs`` or has no signature)."""
    try:
        parameters = inspect.signature(apply).parameters.values()
    except (TypeError, ValueError):  # no signature to read: leave it as given
        return ()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return ()
    names = {p.name for p in parameters}
    return tuple(name for name in OPTIONAL_INPUTS if name not in names)


def _dropping(apply: Callable, missing: tuple[str, ...]) -> ApplyFn:
    def adapted(params, ratio, advantage, progress, log_ratio=None, regime=None):
        given = {"log_ratio": log_ratio, "regime": regime}
        # An ``apply`` without ``log_ratio`` takes log r from ``ratio`` itself; one without ``regime`` ignores it.
        return apply(params, ratio, advantage, progress, **{k: v for k, v in given.items() if k not in missing})

    return adapted
