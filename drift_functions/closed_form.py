"""Closed-form drifts: PPO-clip, DPO, and DPO whose α and β follow the learner's regime (``dpo_ra``).

Both are written as the *drift* of Mirror Learning, so that the policy loss of
every learner is ``L = -mean(r * A - drift(r, A))``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from drift_functions.base import Drift, log_ratio_or_log, regime_inputs

DPO_RA_INPUTS = ("progress", "epoch_progress", "log_epochs")  # what α and β of dpo_ra depend on
_EXPONENT_LIMIT = 9.0  # α, β stay within e^±9 of α₀, β₀: positive and finite for any slopes


def ppo_clip_drift(ratio: jax.Array, advantage: jax.Array, epsilon: jax.Array | float) -> jax.Array:
    """PPO's clipping as a drift.

        drift(r, A) = relu((r - clip(r, 1 - ε, 1 + ε)) · A)

    so that ``r·A - drift == min(r·A, clip(r, 1-ε, 1+ε)·A)``, the clipped
    surrogate, exactly. Shapes: ``ratio``, ``advantage`` ``[...]`` -> ``[...]``.
    """
    clipped = jnp.clip(ratio, 1.0 - epsilon, 1.0 + epsilon)
    return jax.nn.relu((ratio - clipped) * advantage)


def dpo_drift(
    ratio: jax.Array,
    advantage: jax.Array,
    alpha: jax.Array | float,
    beta: jax.Array | float,
    log_ratio: jax.Array | None = None,
) -> jax.Array:
    """Discovered Policy Optimisation's drift (Lu et al., 2022).

        A ≥ 0:  relu((r − 1)·A − α·tanh((r − 1)·A / α))
        A < 0:  relu(log(r)·A − β·tanh(log(r)·A / β))

    ``log(r)`` is ``log_ratio`` when given (finite where ``r`` underflows to 0),
    else ``jnp.log(ratio)``. Shapes: ``ratio``, ``advantage``, ``log_ratio``
    ``[...]`` -> ``[...]``. α, β > 0.
    """
    positive = (ratio - 1.0) * advantage
    negative = log_ratio_or_log(ratio, log_ratio) * advantage
    drift_pos = jax.nn.relu(positive - alpha * jnp.tanh(positive / alpha))
    drift_neg = jax.nn.relu(negative - beta * jnp.tanh(negative / beta))
    return jnp.where(advantage >= 0.0, drift_pos, drift_neg)


def make_ppo_clip(epsilon: float = 0.2) -> Drift:
    if not epsilon > 0:
        raise ValueError(f"ppo_clip: epsilon must be > 0, got {epsilon}")

    def init(key):
        del key
        return {"epsilon": jnp.asarray(epsilon, jnp.float32)}

    def apply(params, ratio, advantage, progress, log_ratio=None):
        del progress, log_ratio  # PPO-clip does not use log r
        return ppo_clip_drift(ratio, advantage, params["epsilon"])

    return Drift("ppo_clip", {"epsilon": float(epsilon)}, init, apply)


def make_dpo(alpha: float = 2.0, beta: float = 0.6) -> Drift:
    if not (alpha > 0 and beta > 0):
        raise ValueError(f"dpo: alpha and beta must be > 0, got alpha={alpha}, beta={beta}")

    def init(key):
        del key
        return {"alpha": jnp.asarray(alpha, jnp.float32), "beta": jnp.asarray(beta, jnp.float32)}

    def apply(params, ratio, advantage, progress, log_ratio=None):
        del progress
        return dpo_drift(ratio, advantage, params["alpha"], params["beta"], log_ratio)

    return Drift("dpo", {"alpha": float(alpha), "beta": float(beta)}, init, apply)


def make_dpo_ra(alpha: float = 2.0, beta: float = 0.6) -> Drift:
    """DPO with regime-dependent scales, the closed form that regime-aware learned drifts distil into.

        α = α₀ · exp(a · z),   β = β₀ · exp(b · z),   z = [p, e, κ]   (p = n/N, e = k/K, κ = log K / log 16)

    then :func:`dpo_drift` with those α, β. The exponents are clipped to ±9, so
    α, β > 0 and the drift keeps DPO's guarantees for any parameters and inputs.
    ``a = b = 0`` (the ``init``) is DPO(α₀, β₀). Params: ``alpha``, ``beta``
    (scalars), ``alpha_slopes``, ``beta_slopes`` (``[3]`` each).
    """
    if not (alpha > 0 and beta > 0):
        raise ValueError(f"dpo_ra: alpha and beta must be > 0, got alpha={alpha}, beta={beta}")

    def init(key):
        del key
        zeros = jnp.zeros((len(DPO_RA_INPUTS),), jnp.float32)
        return {
            "alpha": jnp.asarray(alpha, jnp.float32),
            "beta": jnp.asarray(beta, jnp.float32),
            "alpha_slopes": zeros,
            "beta_slopes": zeros,
        }

    def apply(params, ratio, advantage, progress, log_ratio=None, regime=None):
        inputs = regime_inputs(progress, regime)
        z = jnp.stack([jnp.broadcast_to(inputs[name], jnp.shape(ratio)) for name in DPO_RA_INPUTS], axis=-1)
        scale = lambda base, slopes: base * jnp.exp(jnp.clip(z @ slopes, -_EXPONENT_LIMIT, _EXPONENT_LIMIT))  # noqa: E731
        return dpo_drift(
            ratio,
            advantage,
            scale(params["alpha"], params["alpha_slopes"]),
            scale(params["beta"], params["beta_slopes"]),
            log_ratio,
        )

    return Drift("dpo_ra", {"alpha": float(alpha), "beta": float(beta)}, init, apply)
