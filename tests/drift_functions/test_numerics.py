"""Numerics of drifts in the policy loss: finite for any finite log-ratio, unchanged in the normal range.

Every registered drift (read from the registry, so a new one is covered without
touching this file) is swept over log r ∈ [−100, 100] × Â ∈ [−5, 5] with its
default, randomly initialised and large random parameters.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drift_functions as df
from drift_functions.testing import random_params
from rl_algos.ppo import drift_policy_loss
from rl_algos.ppo.losses import LOG_RATIO_LIMIT

# Options tested besides each family's defaults.
EXTRA_OPTIONS = {"lpo": [{"ppo_init": True}], "ta_lpo": [{"ppo_init": True}]}
CASES = [(name, options) for name in df.registered() for options in [{}, *EXTRA_OPTIONS.get(name, [])]]

# ±100 in steps of 0.5, plus where float32 exp overflows (88.73) and underflows (−87.34, −103.98).
LOG_RATIOS = jnp.concatenate([jnp.linspace(-100.0, 100.0, 401), jnp.array([-103.98, -87.34, 88.73])])
ADVANTAGES = jnp.linspace(-5.0, 5.0, 21)
SWEEP_L, SWEEP_A = (x.reshape(-1) for x in jnp.meshgrid(LOG_RATIOS, ADVANTAGES, indexing="ij"))


def _param_sets(drift):
    """Defaults, a second init key, and large random parameters at two scales."""
    sets = [drift.init(jax.random.PRNGKey(0)), drift.init(jax.random.PRNGKey(1))]
    for seed, scale in enumerate([3.0, 3.0, 30.0]):
        sets.append(random_params(drift, jax.random.PRNGKey(200 + seed), scale=scale))
    return sets


def _per_sample_loss_and_grad(drift):
    """``(params, log π_new, Â, progress) -> (L, ∂L/∂log π_new)`` for each sample on its own (a batch of one)."""

    def one(params, log_prob, advantage, progress):
        loss = lambda lp: drift_policy_loss(
            functools.partial(drift.apply, params), lp[None], jnp.zeros((1,)), advantage[None], progress
        )[0]
        return jax.value_and_grad(loss)(log_prob)

    return jax.jit(jax.vmap(one, in_axes=(None, 0, 0, None)))


@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}{o or ''}" for n, o in CASES])
def test_policy_loss_and_gradient_are_finite_for_any_log_ratio(name, options):
    drift = df.make(name, **options)
    loss_and_grad = _per_sample_loss_and_grad(drift)
    for i, params in enumerate(_param_sets(drift)):
        for progress in (0.0, 0.5, 1.0):
            loss, grad = loss_and_grad(params, SWEEP_L, SWEEP_A, jnp.float32(progress))
            for what, values in (("loss", loss), ("gradient", grad)):
                bad = ~np.isfinite(np.asarray(values))
                assert not bad.any(), (
                    f"{drift.spec} params #{i} progress {progress}: non-finite {what} at "
                    f"(log r, Â) = {list(zip(np.asarray(SWEEP_L)[bad][:5], np.asarray(SWEEP_A)[bad][:5]))}"
                )


def test_the_sweep_reaches_where_the_unguarded_loss_broke():
    # Before the guard, r = exp(log r) overflowed or underflowed here: DPO's loss was inf/NaN.
    r = jnp.exp(LOG_RATIOS)
    assert bool(jnp.any(r == 0.0)) and bool(jnp.any(jnp.isinf(r)))
    dpo = df.make("dpo")
    unguarded = -(r * -1.0 - dpo.apply(dpo.init(None), r, -jnp.ones_like(r), 0.0))
    assert not bool(jnp.all(jnp.isfinite(unguarded)))


@pytest.mark.parametrize("name,options", CASES, ids=[f"{n}{o or ''}" for n, o in CASES])
def test_log_ratio_argument_changes_nothing_in_the_normal_range(name, options):
    # Handing over log r exactly agrees, to float32 rounding, with log(ratio) computed from ratio.
    drift = df.make(name, **options)
    log_ratio = jnp.linspace(-3.0, 3.0, 61)[:, None] * jnp.ones((1, 21))
    ratio = jnp.exp(log_ratio)
    adv = jnp.broadcast_to(ADVANTAGES, ratio.shape)
    for params in _param_sets(drift)[:4]:
        for progress in (0.0, 1.0):
            given = drift.apply(params, ratio, adv, progress, log_ratio=log_ratio)
            derived = drift.apply(params, ratio, adv, progress)
            np.testing.assert_allclose(given, derived, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(derived)) + 1.0))
            positional = drift.apply(params, ratio, adv, progress, log_ratio)
            np.testing.assert_array_equal(given, positional)


@pytest.mark.parametrize("name", df.registered())
def test_policy_loss_is_unchanged_in_the_normal_range(name):
    # The former loss: r = exp(log π_new − log π_old) unclamped, drift(r, Â) taking log r = log(r).
    drift = df.make(name)
    params = random_params(drift, jax.random.PRNGKey(7), scale=1.0) if name != "ppo_clip" else drift.init(None)
    rng = np.random.default_rng(3)
    log_prob = jnp.asarray(rng.normal(size=256) * 2.0, jnp.float32)  # |log r| up to ~10, all inside the clamp
    old = jnp.asarray(rng.normal(size=256) * 2.0, jnp.float32)
    adv = jnp.asarray(rng.normal(size=256), jnp.float32)
    assert float(jnp.max(jnp.abs(log_prob - old))) < LOG_RATIO_LIMIT

    def former(lp):
        r = jnp.exp(lp - old)
        return -jnp.mean(r * adv - drift.apply(params, r, adv, 0.4))

    new = lambda lp: drift_policy_loss(functools.partial(drift.apply, params), lp, old, adv, 0.4)[0]
    if name == "ppo_clip":  # uses r alone: bit-identical
        assert float(new(log_prob)) == float(former(log_prob))
        np.testing.assert_array_equal(jax.grad(new)(log_prob), jax.grad(former)(log_prob))
    else:
        np.testing.assert_allclose(new(log_prob), former(log_prob), rtol=1e-5)
        np.testing.assert_allclose(jax.grad(new)(log_prob), jax.grad(former)(log_prob), rtol=1e-4, atol=1e-6)


def test_a_drift_written_without_log_ratio_still_works_in_the_loss():
    # Wrappers elsewhere (e.g. a recording drift) define apply(params, ratio, advantage, progress) only.
    inner = df.make("dpo")
    wrapped = df.Drift(inner.name, dict(inner.options), inner.init, lambda p, r, a, t: inner.apply(p, r, a, t))
    params = inner.init(None)
    log_prob = jnp.linspace(-100.0, 100.0, 41)
    adv = jnp.linspace(-2.0, 2.0, 41)
    loss, _ = drift_policy_loss(functools.partial(wrapped.apply, params), log_prob, jnp.zeros(41), adv, 0.0)
    reference, _ = drift_policy_loss(functools.partial(inner.apply, params), log_prob, jnp.zeros(41), adv, 0.0)
    np.testing.assert_allclose(loss, reference, rtol=1e-5)
    assert wrapped.apply(params, jnp.array(2.0), jnp.array(1.0), 0.0) == inner.apply(
        params, jnp.array(2.0), jnp.array(1.0), 0.0
    )
