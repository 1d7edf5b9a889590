"""The one interface every drift function shares.

A drift is a pair of pure functions bound to static options:

    init(key) -> params                                   (a pytree)
    apply(params, ratio, advantage, progress) -> drift    (elementwise)

``ratio`` and ``advantage`` have any common shape ``S``; ``progress`` is a
scalar (or broadcastable to ``S``) in ``[0, 1]``; the result has shape ``S``.
Values that a user may want to sweep or meta-learn (ε, α, β, network weights)
live in ``params`` so that they ``vmap``; choices that change shapes live in
``options``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax

Params = Any
InitFn = Callable[[jax.Array], Params]
ApplyFn = Callable[[Params, jax.Array, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Drift:
    """A registered drift family with its static options bound.

    Attributes:
      name: registry name of the family (``ppo_clip``, ``dpo``, ``lpo``, ...).
      options: the keyword arguments it was made with (JSON-serialisable).
      init: ``key -> params``.
      apply: ``(params, ratio, advantage, progress) -> drift``, elementwise.
    """

    name: str
    options: dict[str, Any]
    init: InitFn
    apply: ApplyFn

    @property
    def spec(self) -> str:
        """``name:key=value,...`` — the string that :func:`drift_functions.parse_spec` reads."""
        if not self.options:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))

    def __hash__(self) -> int:  # options is a dict; hash by its spec so jit can key on it
        return hash(self.spec)
