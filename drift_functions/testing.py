"""Helpers for property tests of drifts: random but valid parameters for any registered family."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def random_params(drift, key, scale=3.0):
    """Large random parameters for ``drift``'s family, valid for any family.

    Array leaves (network weights, polynomial coefficients) become ``scale·N(0, 1)``;
    scalar leaves (ε, α, β, which must stay positive) are multiplied by ``exp(N(0, 1))``.
    """
    leaves, treedef = jax.tree.flatten(drift.init(key))
    keys = jax.random.split(key, len(leaves))
    leaves = [
        scale * jax.random.normal(k, leaf.shape, leaf.dtype)
        if leaf.ndim
        else leaf * jnp.exp(jax.random.normal(k, (), leaf.dtype))
        for k, leaf in zip(keys, leaves)
    ]
    return jax.tree.unflatten(treedef, leaves)
