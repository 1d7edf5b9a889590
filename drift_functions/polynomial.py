"""``dpo_poly``: DPO plus low-order polynomial terms, a richer closed form to distil learned drifts into.

With ``x = (r − 1)·A`` and ``y = log(r)·A`` (both exactly 0 at ``r = 1``):

    A ≥ 0:  drift = relu( x − α·tanh(x/α) + c⁺·[x², x³, y², y³] )
    A < 0:  drift = relu( y − β·tanh(y/β) + c⁻·[x², x³, y², y³] )

``c⁺`` and ``c⁻`` are 4-vectors (params ``"pos"`` and ``"neg"``). The DPO core
``u − α·tanh(u/α)`` is ``u³/(3α²) + O(u⁵)`` near ``u = 0`` and each polynomial
term starts at degree 2, so the argument of the relu is 0 with zero
r-derivative at ``r = 1`` for *any* parameters: the drift is non-negative
(relu), exactly zero at ``r = 1`` and flat there. α and β enter only through
``|α|`` (clamped to at least 1e-6), so any real values are valid.

With ``c⁺ = c⁻ = 0`` this is exactly DPO(α, β), so a least-squares fit of this
family is at least as good as the DPO fit. Unlike DPO it can also put drift on
moves *against* the advantage (``A > 0, r < 1`` and ``A < 0, r > 1``), where a
learned drift is often non-zero.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from drift_functions.base import Drift, log_ratio_or_log

NUM_TERMS = 4  # x², x³, y², y³
_MIN_SCALE = 1e-6


def poly_terms(ratio: jax.Array, advantage: jax.Array, log_ratio: jax.Array | None = None) -> jax.Array:
    """``[x², x³, y², y³]`` with ``x = (r−1)·A``, ``y = log(r)·A``. ``[...] -> [..., 4]``.

    ``log(r)`` is ``log_ratio`` when given, else ``jnp.log(ratio)``.
    """
    x = (ratio - 1.0) * advantage
    y = log_ratio_or_log(ratio, log_ratio) * advantage
    return jnp.stack([x**2, x**3, y**2, y**3], axis=-1)


def dpo_poly_drift(ratio, advantage, alpha, beta, pos, neg, log_ratio=None) -> jax.Array:
    """The ``dpo_poly`` drift (formula in the module docstring). ``pos``, ``neg``: ``[4]``.

    ``log(r)`` is ``log_ratio`` when given, else ``jnp.log(ratio)``.
    """
    alpha = jnp.maximum(jnp.abs(alpha), _MIN_SCALE)
    beta = jnp.maximum(jnp.abs(beta), _MIN_SCALE)
    log_ratio = log_ratio_or_log(ratio, log_ratio)
    x = (ratio - 1.0) * advantage
    y = log_ratio * advantage
    terms = poly_terms(ratio, advantage, log_ratio)
    inner_pos = x - alpha * jnp.tanh(x / alpha) + terms @ pos
    inner_neg = y - beta * jnp.tanh(y / beta) + terms @ neg
    return jax.nn.relu(jnp.where(advantage >= 0.0, inner_pos, inner_neg))


def make_dpo_poly(alpha: float = 2.0, beta: float = 0.6) -> Drift:
    """``dpo_poly`` whose ``init`` is DPO(α, β) with all polynomial coefficients zero."""
    if not (alpha > 0 and beta > 0):
        raise ValueError(f"dpo_poly: alpha and beta must be > 0, got alpha={alpha}, beta={beta}")

    def init(key):
        del key
        return {
            "alpha": jnp.asarray(alpha, jnp.float32),
            "beta": jnp.asarray(beta, jnp.float32),
            "pos": jnp.zeros((NUM_TERMS,), jnp.float32),
            "neg": jnp.zeros((NUM_TERMS,), jnp.float32),
        }

    def apply(params, ratio, advantage, progress, log_ratio=None):
        del progress
        return dpo_poly_drift(
            ratio, advantage, params["alpha"], params["beta"], params["pos"], params["neg"], log_ratio
        )

    return Drift("dpo_poly", {"alpha": float(alpha), "beta": float(beta)}, init, apply)
