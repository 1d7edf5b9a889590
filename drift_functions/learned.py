"""Learned drifts: LPO, temporally-aware LPO (TA-LPO) and regime-aware LPO (RA-LPO).

The network is bias-free and every input feature is zero at ``r = 1``, so its
output is exactly zero there for any weights; subtracting ``1e-4`` inside the
final relu makes the drift identically zero on a neighbourhood of ``r = 1``,
hence flat (zero derivative in ``r``) there as well.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from drift_functions.base import Drift, Regime, log_ratio_or_log, regime_inputs
from drift_functions.closed_form import ppo_clip_drift

NUM_FEATURES = 8
FLATNESS_MARGIN = 1e-4


def lpo_features(ratio: jax.Array, advantage: jax.Array, log_ratio: jax.Array | None = None) -> jax.Array:
    """The 8 LPO input features, stacked on a new last axis.

        x = [r−1, (r−1)², log r, (log r)², A(r−1), A(r−1)², A·log r, A(log r)²]

    ``log r`` is ``log_ratio`` when given (finite where ``r`` underflows to 0),
    else ``jnp.log(ratio)``. Shapes: ``ratio``, ``advantage``, ``log_ratio``
    ``[...]`` -> ``[..., 8]``.
    """
    centred = ratio - 1.0
    log_ratio = log_ratio_or_log(ratio, log_ratio)
    return jnp.stack(
        [
            centred,
            centred**2,
            log_ratio,
            log_ratio**2,
            advantage * centred,
            advantage * centred**2,
            advantage * log_ratio,
            advantage * log_ratio**2,
        ],
        axis=-1,
    )


def lpo_network(params: dict, features: jax.Array) -> jax.Array:
    """``Dense(H, no bias) → tanh → Dense(1, no bias)``. ``[..., F] -> [...]``."""
    hidden = jnp.tanh(features @ params["w_hidden"])
    return (hidden @ params["w_out"])[..., 0]


def _init_weights(key: jax.Array, num_inputs: int, hidden_size: int, zeros: bool) -> dict:
    if zeros:
        return {
            "w_hidden": jnp.zeros((num_inputs, hidden_size), jnp.float32),
            "w_out": jnp.zeros((hidden_size, 1), jnp.float32),
        }
    key_hidden, key_out = jax.random.split(key)
    init = jax.nn.initializers.lecun_normal()
    return {
        "w_hidden": init(key_hidden, (num_inputs, hidden_size), jnp.float32),
        "w_out": init(key_out, (hidden_size, 1), jnp.float32),
    }


def _learned_drift(net_out, ratio, advantage, ppo_init: bool, epsilon: float):
    if ppo_init:
        net_out = net_out + ppo_clip_drift(ratio, advantage, epsilon)
    return jax.nn.relu(net_out - FLATNESS_MARGIN)


def _check_epsilon(epsilon) -> None:
    if not (isinstance(epsilon, (int, float)) and not isinstance(epsilon, bool) and 0 < epsilon < float("inf")):
        raise ValueError(f"epsilon (PPO-clip's range for ppo_init) must be a finite number > 0, got {epsilon!r}")


def make_lpo(hidden_size: int = 128, ppo_init: bool = False, epsilon: float = 0.2) -> Drift:
    """LPO: ``drift = relu(net(x) [+ drift_ppo_clip] − 1e-4)`` with ``x`` = :func:`lpo_features`.

    With ``ppo_init`` the PPO-clip drift (clip ``epsilon``) is added inside the
    relu and ``init`` returns all-zero weights, so the initial drift *is* PPO.
    """
    hidden_size = int(hidden_size)
    ppo_init = _check_bool(ppo_init)
    _check_epsilon(epsilon)

    def init(key):
        return _init_weights(key, NUM_FEATURES, hidden_size, zeros=ppo_init)

    def apply(params, ratio, advantage, progress, log_ratio=None):
        del progress
        out = lpo_network(params, lpo_features(ratio, advantage, log_ratio))
        return _learned_drift(out, ratio, advantage, ppo_init, epsilon)

    options = {"hidden_size": hidden_size, "ppo_init": ppo_init, "epsilon": float(epsilon)}
    return Drift("lpo", options, init, apply)


def make_ta_lpo(hidden_size: int = 128, ppo_init: bool = False, epsilon: float = 0.2) -> Drift:
    """TA-LPO: LPO whose 8 features are also multiplied by training progress ``p``.

    x = [f(r, A), p · f(r, A)]   (16 inputs),   p = update / num_updates ∈ [0, 1]
    """
    hidden_size = int(hidden_size)
    ppo_init = _check_bool(ppo_init)
    _check_epsilon(epsilon)

    def init(key):
        return _init_weights(key, 2 * NUM_FEATURES, hidden_size, zeros=ppo_init)

    def apply(params, ratio, advantage, progress, log_ratio=None):
        features = lpo_features(ratio, advantage, log_ratio)
        progress = jnp.broadcast_to(jnp.asarray(progress, features.dtype), features.shape[:-1])
        features = jnp.concatenate([features, features * progress[..., None]], axis=-1)
        out = lpo_network(params, features)
        return _learned_drift(out, ratio, advantage, ppo_init, epsilon)

    options = {"hidden_size": hidden_size, "ppo_init": ppo_init, "epsilon": float(epsilon)}
    return Drift("ta_lpo", options, init, apply)


REGIME_INPUTS = ("epoch_progress", "log_epochs", "log_lifetime")


def regime_gates(progress, regime: Regime | None, epoch_progress: bool, log_epochs: bool, log_lifetime: bool) -> list:
    """RA-LPO's scalar gates (see :func:`drift_functions.base.regime_inputs`), each multiplying the 8 LPO
    features: always ``p``, then as chosen ``e = k/K``, ``κ = log K / log 16`` and ``λ = log N / log 1000``."""
    inputs = regime_inputs(progress, regime)
    chosen = {"epoch_progress": epoch_progress, "log_epochs": log_epochs, "log_lifetime": log_lifetime}
    return [inputs["progress"]] + [inputs[name] for name in REGIME_INPUTS if chosen[name]]


def make_ra_lpo(
    hidden_size: int = 128,
    ppo_init: bool = True,
    epsilon: float = 0.2,
    epoch_progress: bool = True,
    log_epochs: bool = True,
    log_lifetime: bool = False,
) -> Drift:
    """RA-LPO: LPO whose features are also multiplied by each input that says which regime the learner is in.

        x = [f, p·f, e·f, κ·f, λ·f]      f = lpo_features(r, Â)  (8 each)

    with training progress ``p = n/N``, epoch progress ``e = k/K`` (the k-th of
    K epochs on the current batch), ``κ = log K / log 16`` and
    ``λ = log N / log 1000`` (N updates in the lifetime); ``e``, ``κ`` and ``λ``
    are each optional (``epoch_progress``, ``log_epochs``, ``log_lifetime``).
    It extends TA-LPO (``x = [f, p·f]``), which is RA-LPO with all three off.

    Every input is a product with an ``f`` feature, all of which vanish at
    ``r = 1``, so the drift keeps LPO's guarantees for *every* value of the
    regime inputs: zero and flat at ``r = 1``, non-negative everywhere. PPO-
    initialised by default: random hidden weights and a zero output layer, so
    the initial drift is PPO-clip's and a perturbation of it is first-order.
    Shapes: ``ratio``, ``advantage`` ``[...]``; ``progress`` and the
    :class:`~drift_functions.base.Regime` fields scalars (or broadcastable).
    """
    hidden_size = int(hidden_size)
    ppo_init = _check_bool(ppo_init)
    flags = {name: _check_bool(value) for name, value in zip(REGIME_INPUTS, (epoch_progress, log_epochs, log_lifetime))}
    _check_epsilon(epsilon)
    num_gates = 1 + sum(flags.values())

    def init(key):
        weights = _init_weights(key, (1 + num_gates) * NUM_FEATURES, hidden_size, zeros=False)
        if ppo_init:
            # Only the output layer starts at zero (so the drift starts as PPO's exactly). All-zero weights would make
            # every antithetic pair (μ ± ε) the same drift, since tanh is odd: −w·tanh(−Wx) = w·tanh(Wx).
            weights["w_out"] = jnp.zeros_like(weights["w_out"])
        return weights

    def apply(params, ratio, advantage, progress, log_ratio=None, regime=None):
        features = lpo_features(ratio, advantage, log_ratio)
        batch_shape = features.shape[:-1]
        gates = [
            jnp.broadcast_to(jnp.asarray(g, features.dtype), batch_shape)[..., None]
            for g in regime_gates(progress, regime, **flags)
        ]
        out = lpo_network(params, jnp.concatenate([features] + [features * g for g in gates], axis=-1))
        return _learned_drift(out, ratio, advantage, ppo_init, epsilon)

    options = {"hidden_size": hidden_size, "ppo_init": ppo_init, "epsilon": float(epsilon), **flags}
    return Drift("ra_lpo", options, init, apply)


def _check_bool(value) -> bool:
    # Strings are parsed by the caller (discovery's config coercion, drift_functions.parse_spec); bool("false") is True.
    if not isinstance(value, (bool, int)):
        raise ValueError(f"ppo_init must be true or false, got {value!r}")
    return bool(value)
