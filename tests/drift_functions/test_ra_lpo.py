"""RA-LPO and DPO-RA keep a drift's guarantees for every value of their regime inputs, and really read them."""

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drift_functions as df
from drift_functions.closed_form import ppo_clip_drift
from drift_functions.testing import random_params

from .test_registry import ADVANTAGES, GRID_A, GRID_R, assert_flat_at_one

# The corners and middle of the inputs' range: epoch progress k/K in [0, 1), K from 1 to 32 (beyond the 16 of the
# training mix), lifetimes of 1 to 10,000 updates, training progress in [0, 1].
REGIMES = [
    df.Regime(e, k, n) for e, k, n in itertools.product((0.0, 0.5, 0.96875), (1.0, 4.0, 16.0, 32.0), (1.0, 10_000.0))
]
FAMILIES = [
    df.make("ra_lpo", hidden_size=16),
    df.make("ra_lpo", hidden_size=16, ppo_init=False, log_lifetime=True),
    df.make("ra_lpo", hidden_size=16, epoch_progress=False, log_epochs=False),
    df.make("dpo_ra"),
]


def _at(drift, regime):
    """``drift`` with its regime inputs bound, as the learner would pass them."""
    return dataclasses.replace(drift, apply=functools.partial(drift.apply, regime=regime))


def _params(drift):
    return [drift.init(jax.random.PRNGKey(0))] + [random_params(drift, jax.random.PRNGKey(s)) for s in (1, 2)]


@pytest.mark.parametrize("drift", FAMILIES, ids=lambda d: d.spec)
def test_valid_over_the_regime_range(drift):
    for params, regime, progress in itertools.product(_params(drift), REGIMES, (0.0, 1.0)):
        values = drift.apply(params, GRID_R, GRID_A, progress, regime=regime)
        assert bool(jnp.all(jnp.isfinite(values))) and float(values.min()) >= 0.0, (regime, progress)
        at_one = drift.apply(params, jnp.ones_like(ADVANTAGES), ADVANTAGES, progress, regime=regime)
        assert float(jnp.max(jnp.abs(at_one))) == 0.0, (regime, progress)


@pytest.mark.parametrize("drift", FAMILIES, ids=lambda d: d.spec)
def test_flat_at_one_over_the_regime_range_by_finite_differences(drift):
    for params, regime in itertools.product(_params(drift), REGIMES[::3]):
        assert_flat_at_one(_at(drift, regime), params, 0.5)


def test_ppo_initialised_ra_lpo_is_ppo_in_every_regime_and_its_antithetic_pairs_differ():
    drift = df.make("ra_lpo", hidden_size=16)
    params = drift.init(jax.random.PRNGKey(3))
    assert float(jnp.abs(params["w_out"]).max()) == 0.0 and float(jnp.abs(params["w_hidden"]).max()) > 0.0
    for regime in REGIMES:
        np.testing.assert_allclose(
            drift.apply(params, GRID_R, GRID_A, 0.3, regime=regime),
            jnp.maximum(ppo_clip_drift(GRID_R, GRID_A, 0.2) - 1e-4, 0.0),
            atol=1e-7,
        )
    # An ES perturbation ±ε of this mean gives two different drifts (not so from all-zero weights: tanh is odd).
    eps = random_params(drift, jax.random.PRNGKey(4), scale=0.05)
    plus = drift.apply(jax.tree.map(jnp.add, params, eps), GRID_R, GRID_A, 0.3)
    minus = drift.apply(jax.tree.map(jnp.subtract, params, eps), GRID_R, GRID_A, 0.3)
    assert float(jnp.max(jnp.abs(plus - minus))) > 1e-3


def test_ra_lpo_reads_each_regime_input_it_is_given():
    drift = df.make("ra_lpo", hidden_size=16, log_lifetime=True)
    params = random_params(drift, jax.random.PRNGKey(5), scale=0.5)
    base = df.Regime(0.0, 4.0, 100.0)
    value = lambda regime, progress=0.5: drift.apply(params, GRID_R, GRID_A, progress, regime=regime)
    for changed in (
        base._replace(epoch_progress=0.75),
        base._replace(num_epochs=16.0),
        base._replace(num_updates=10.0),
    ):
        assert float(jnp.max(jnp.abs(value(changed) - value(base)))) > 1e-3, changed
    assert float(jnp.max(jnp.abs(value(base, 1.0) - value(base, 0.0)))) > 1e-3
    blind = df.make("ra_lpo", hidden_size=16, epoch_progress=False, log_epochs=False)
    blind_params = blind.init(jax.random.PRNGKey(0))
    assert blind_params["w_hidden"].shape == (16, 16)  # [f, p·f]: TA-LPO's inputs
    np.testing.assert_array_equal(
        blind.apply(blind_params, GRID_R, GRID_A, 0.5, regime=base),
        blind.apply(blind_params, GRID_R, GRID_A, 0.5, regime=base._replace(num_epochs=16.0, epoch_progress=0.5)),
    )


def test_the_learner_passes_the_epoch_and_its_schedule():
    """Inside PPO's update the drift sees k/K for k = 0..K−1, K = update_epochs and N = num_updates."""
    import envs
    from rl_algos.ppo import PPOConfig, make_train

    seen = []
    record = lambda e, k, n: seen.append((float(e), float(k), float(n)))

    def apply(params, ratio, advantage, progress, log_ratio=None, regime=None):
        jax.debug.callback(record, regime.epoch_progress, regime.num_epochs, regime.num_updates)
        return ppo_clip_drift(ratio, advantage, 0.2)

    drift = df.Drift("probe", {}, lambda key: {}, apply)
    config = PPOConfig(total_timesteps=256, num_envs=2, num_steps=64, num_minibatches=1, update_epochs=3)
    jax.block_until_ready(make_train(config, envs.make("CartPole-v1"), drift)(jax.random.PRNGKey(0), {}))
    np.testing.assert_allclose(sorted(set(seen)), [(0.0, 3.0, 2.0), (1 / 3, 3.0, 2.0), (2 / 3, 3.0, 2.0)], rtol=1e-6)


def test_dpo_ra_is_dpo_at_zero_slopes_and_scales_alpha_by_its_inputs():
    drift = df.make("dpo_ra", alpha=1.5, beta=0.5)
    params = drift.init(None)
    dpo = df.make("dpo", alpha=1.5, beta=0.5)
    for regime in REGIMES:
        np.testing.assert_array_equal(
            drift.apply(params, GRID_R, GRID_A, 0.7, regime=regime), dpo.apply(dpo.init(None), GRID_R, GRID_A, 0.7)
        )
    # α = α₀·exp(−2κ): at K = 16 (κ = 1) it is DPO with α = 1.5·e⁻², β unchanged.
    params = {**params, "alpha_slopes": jnp.array([0.0, 0.0, -2.0])}
    at_16 = df.make("dpo", alpha=1.5 * float(np.exp(-2.0)), beta=0.5)
    np.testing.assert_allclose(
        drift.apply(params, GRID_R, GRID_A, 0.7, regime=df.Regime(0.0, 16.0, 100.0)),
        at_16.apply(at_16.init(None), GRID_R, GRID_A, 0.7),
        rtol=1e-5,
        atol=1e-6,
    )
