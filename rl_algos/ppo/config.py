"""Typed PPO settings.

:class:`PPOConfig` holds the static choices (sizes, counts, switches) that
shape the compiled program; :class:`HParams` holds the real-valued
hyper-parameters as arrays, so that a sweep can ``vmap`` over them.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import struct

ACTIVATIONS = ("tanh", "relu", "swish", "elu")
_HPARAM = {"hparam": True}


def _hparam(default: float):
    """A real-valued :class:`PPOConfig` field that is also an :class:`HParams` array (so sweeps can vmap it)."""
    return dataclasses.field(default=default, metadata=_HPARAM)


CONTINUOUS_DISTRIBUTIONS = ("gaussian", "tanh_gaussian")


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """Everything that defines one PPO training run (besides env and drift).

    One *update* collects ``rollouts_per_update`` unrolls of ``num_steps``
    steps in each of ``num_envs`` environments, computes GAE per unroll, then
    runs ``update_epochs`` passes of ``num_minibatches`` minibatches over the
    shuffled transitions. (Brax's ``batch_size × num_minibatches`` sequences per
    update corresponds to ``rollouts_per_update = batch_size × num_minibatches / num_envs``.)
    """

    total_timesteps: int = 500_000
    num_envs: int = 4
    num_steps: int = 128
    rollouts_per_update: int = 1
    update_epochs: int = 4
    num_minibatches: int = 4
    learning_rate: float = _hparam(2.5e-4)
    anneal_lr: bool = True
    gamma: float = _hparam(0.99)
    gae_lambda: float = _hparam(0.95)
    ent_coef: float = _hparam(0.01)
    vf_coef: float = _hparam(0.5)
    max_grad_norm: float = _hparam(0.5)
    adam_eps: float = 1e-5
    reward_scale: float = _hparam(1.0)
    normalize_obs: bool = False
    normalize_advantages: bool = True
    actor_hidden: tuple[int, ...] = (64, 64)
    critic_hidden: tuple[int, ...] = (64, 64)
    activation: str = "tanh"
    continuous_distribution: str = "gaussian"
    final_return_window: float = 0.05

    # ---- derived values (never stored) ----
    @property
    def batch_size(self) -> int:
        """Transitions per update."""
        return self.num_envs * self.num_steps * self.rollouts_per_update

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size

    @property
    def env_steps(self) -> int:
        """Environment steps actually taken (``total_timesteps`` rounded down to whole updates)."""
        return self.num_updates * self.batch_size

    def validate(self) -> PPOConfig:
        """Raise ``ValueError`` with one readable line for any inconsistent value."""
        positive_ints = (
            "total_timesteps",
            "num_envs",
            "num_steps",
            "rollouts_per_update",
            "update_epochs",
            "num_minibatches",
        )
        for name in positive_ints:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("ent_coef", "vf_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        if not self.reward_scale > 0:
            raise ValueError(f"reward_scale must be > 0, got {self.reward_scale}")
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"the batch of {self.batch_size} transitions per update (num_envs {self.num_envs} × num_steps "
                f"{self.num_steps} × rollouts_per_update {self.rollouts_per_update}) does not divide into "
                f"num_minibatches={self.num_minibatches}"
            )
        if self.num_updates < 1:
            raise ValueError(
                f"total_timesteps={self.total_timesteps} is less than one update of {self.batch_size} transitions; "
                "raise total_timesteps or lower num_envs / num_steps / rollouts_per_update"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; valid: {', '.join(ACTIVATIONS)}")
        if self.continuous_distribution not in CONTINUOUS_DISTRIBUTIONS:
            raise ValueError(
                f"unknown continuous_distribution {self.continuous_distribution!r}; valid: "
                f"{', '.join(CONTINUOUS_DISTRIBUTIONS)}"
            )
        if not 0.0 < self.final_return_window <= 1.0:
            raise ValueError(f"final_return_window must be in (0, 1], got {self.final_return_window}")
        if any(h < 1 for h in self.actor_hidden + self.critic_hidden):
            raise ValueError("hidden layer sizes must be positive")
        return self


class _HParamsMethods:
    @classmethod
    def from_config(cls, config: PPOConfig) -> HParams:
        return cls(**{name: jnp.asarray(getattr(config, name), jnp.float32) for name in cls.names()})

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))


# The PPOConfig fields declared with `_hparam`, as float32 arrays: one source of truth for their names and defaults.
HParams = struct.dataclass(
    type(
        "HParams",
        (_HParamsMethods,),
        {
            "__module__": __name__,
            "__doc__": "Real-valued hyper-parameters, as arrays so that sweeps can ``vmap`` over them (the "
            "``PPOConfig`` fields declared with ``_hparam``).",
            "__annotations__": {f.name: jax.Array for f in dataclasses.fields(PPOConfig) if f.metadata.get("hparam")},
        },
    )
)
