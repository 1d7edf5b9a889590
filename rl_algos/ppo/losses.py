"""Module-level pure losses of the PPO-family learner (bound with ``functools.partial``)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

DRIFT_ACTIVE_THRESHOLD = 1e-6
# |log r| beyond which the policy loss holds the log-ratio fixed (see drift_policy_loss).
LOG_RATIO_LIMIT = 20.0


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


def normalize_advantages(advantages: jax.Array, eps: float = 1e-8, axis_name: str | None = None) -> jax.Array:
    """``(Â − mean Â) / (std Â + eps)`` over the whole (mini)batch.

    ``axis_name``: the minibatch is split in equal shards over that mapped axis;
    mean and std are then those of the whole minibatch.
    """
    if axis_name is None:
        return (advantages - advantages.mean()) / (advantages.std() + eps)
    mean = jax.lax.pmean(advantages.mean(), axis_name)
    std = jnp.sqrt(jax.lax.pmean(jnp.mean((advantages - mean) ** 2), axis_name))
    return (advantages - mean) / (std + eps)


def drift_policy_loss(
    drift_fn: Callable,
    log_prob: jax.Array,
    old_log_prob: jax.Array,
    advantages: jax.Array,
    progress: jax.Array,
    regime=None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Mirror-Learning policy loss ``L_π = −mean(r·Â − drift(r, Â))``.

        ℓ = clip(log π_new − log π_old, −20, 20),   r = exp(ℓ)

    ``drift_fn(r, Â, progress, log_ratio=ℓ[, regime=regime])`` is the drift with
    its parameters bound; it takes ``log r`` from ``ℓ``, never from ``r``;
    ``regime`` (a :class:`drift_functions.Regime`) is passed on when given.
    Shapes: ``[B]`` each, ``progress`` scalar.

    The clamp (``LOG_RATIO_LIMIT``) keeps every term finite, with finite
    gradients, for any finite log-ratio: unclamped, ``r = exp(ℓ)`` overflows
    float32 at ``ℓ > 88.7`` (PPO-clip and DPO give inf/NaN), underflows to 0
    at ``ℓ < −87`` or so (``log r = −inf`` in DPO), and powers of ``r`` inside
    the drifts overflow sooner (dpo_poly's ``((r−1)Â)³`` at ``ℓ ≈ 28``, LPO's
    ``Â(r−1)²`` at ``ℓ ≈ 44``, for ``|Â| = 5``). It changes nothing in the
    normal range: for ``|ℓ| ≤ 20`` the clip is the identity (value and
    gradient), so ``r`` is bit-identical to ``exp(log π_new − log π_old)`` as
    before, and the drift's ``log r`` is ``ℓ`` itself instead of the former
    ``log(exp(ℓ))``, which differs from it only by rounding (PPO-clip, which
    uses ``r`` alone, is bit-identical). ``|ℓ| = 20`` is a ratio of 4.9e8 (or
    2.1e-9); PPO-family updates keep ``r`` within a few ε of 1, and a sample
    beyond ``[e⁻²⁰, e²⁰]`` only stops contributing a gradient (as a clipped
    PPO sample does). ``r`` and ``ℓ`` are clamped together, so the drift
    always sees a consistent pair ``r = exp(ℓ)``.

    Returns the loss and diagnostics: approximate KL (``mean((r−1) − log r)``),
    the fraction of samples where the drift is active (``drift > 1e-6``: a
    threshold, because closed forms such as DPO's are differences of nearly
    equal numbers near ``r = 1``, whose sign there is rounding noise), and the
    mean drift.
    """
    log_ratio = jnp.clip(log_prob - old_log_prob, -LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    ratio = jnp.exp(log_ratio)
    extra = {} if regime is None else {"regime": regime}
    drift = drift_fn(ratio, advantages, progress, log_ratio=log_ratio, **extra)
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
