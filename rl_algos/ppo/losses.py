"""Module-level pure losses of the PPO-family learner (bound with ``functools.partial``)."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

DRIFT_ACTIVE_THRESHOLD = 1e-6


def compute_gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    done: jax.Array,
    gamma: jax.Array | float,
    gae_lambda: jax.Array | float,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimation that bootstraps through truncation.

    All inputs are ``[T, ...]`` (time first). ``next_values[t]`` is the value
    of the observation that *followed* action ``t`` before any reset (the
    true last observation of an episode that ended at ``t``); ``terminated``
    cuts the bootstrap, ``done = terminated | truncated`` cuts the trace:

        δ_t = r_t + γ (1 − term_t) V(s'_t) − V(s_t)
        Â_t = δ_t + γ λ (1 − done_t) Â_{t+1},      Â_T = 0

    Returns ``(advantages, value_targets)``, each ``[T, ...]``, with
    ``value_targets = advantages + values``.
    """
    not_terminated = 1.0 - terminated.astype(values.dtype)
    not_done = 1.0 - done.astype(values.dtype)
    deltas = rewards + gamma * not_terminated * next_values - values

    def backward(carry, inputs):
        delta, continues = inputs
        advantage = delta + gamma * gae_lambda * continues * carry
        return advantage, advantage

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(values[0]), (deltas, not_done), reverse=True)
    return advantages, advantages + values


def normalize_advantages(advantages: jax.Array, eps: float = 1e-8) -> jax.Array:
    """``(Â − mean Â) / (std Â + eps)`` over the whole (mini)batch."""
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def drift_policy_loss(
    drift_fn: Callable,
    log_prob: jax.Array,
    old_log_prob: jax.Array,
    advantages: jax.Array,
    progress: jax.Array,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mirror-Learning policy loss ``L_π = −mean(r·Â − drift(r, Â))``.

    ``r = exp(log π_new − log π_old)``; ``drift_fn(r, Â, progress)`` is the drift
    with its parameters bound. Shapes: ``[B]`` each, ``progress`` scalar.
    Returns the loss and diagnostics: approximate KL (``mean((r−1) − log r)``),
    the fraction of samples where the drift is active (``drift > 1e-6``: a
    threshold, because closed forms such as DPO's are differences of nearly
    equal numbers near ``r = 1``, whose sign there is rounding noise), and the
    mean drift.
    """
    log_ratio = log_prob - old_log_prob
    ratio = jnp.exp(log_ratio)
    drift = drift_fn(ratio, advantages, progress)
    loss = -jnp.mean(ratio * advantages - drift)
    aux = {
        "approx_kl": jnp.mean((ratio - 1.0) - log_ratio),
        "drift_active": jnp.mean((drift > DRIFT_ACTIVE_THRESHOLD).astype(jnp.float32)),
        "drift_mean": jnp.mean(drift),
    }
    return loss, aux


def value_loss(values: jax.Array, targets: jax.Array) -> jax.Array:
    """``½ mean((V − target)²)``. ``[B], [B] -> []``."""
    return 0.5 * jnp.mean((values - targets) ** 2)
