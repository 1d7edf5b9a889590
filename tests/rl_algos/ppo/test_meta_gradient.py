"""Meta-gradients through the learner: against finite differences of the same objective, finite, staggered."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drift_functions as df
import envs
from rl_algos.ppo import HParams, PPOConfig
from rl_algos.ppo.meta_gradient import make_meta_gradient

# A learning rate 40× PPO's usual makes each update, and so the drift's effect on J, large enough to measure.
TINY = PPOConfig(
    learning_rate=1e-2,
    total_timesteps=4 * 8 * 6,
    num_envs=4,
    num_steps=8,
    num_minibatches=2,
    update_epochs=2,
    actor_hidden=(8,),
    critic_hidden=(8,),
)


def _to_float64(tree):
    return jax.tree.map(lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def _random_ra_lpo(key):
    """RA-LPO with a random (non-zero) output layer, so the drift's second derivatives are all in play."""
    drift = df.make("ra_lpo", hidden_size=8)
    params = drift.init(key)
    params = jax.tree.map(lambda x: 0.3 * jax.random.normal(jax.random.fold_in(key, x.size), x.shape), params)
    return drift, params


@pytest.mark.parametrize("unroll", [2])
def test_meta_gradient_matches_finite_differences_of_the_same_objective(unroll):
    """∂J/∂θ · v against (J(θ + hv) − J(θ − hv)) / 2h, in float64, with the window's own data held fixed."""
    with jax.enable_x64(True):
        drift, params = _random_ra_lpo(jax.random.PRNGKey(3))
        params = _to_float64(params)
        mg = make_meta_gradient(TINY, envs.make("CartPole-v1"), drift, unroll=unroll, entropy_coef=0.01)
        agent = jax.tree.map(lambda x: x[0], mg.init_agents(jax.random.PRNGKey(0), 1))
        learner = agent.learner  # the env keeps its own dtypes; the learner computes in float64
        learner = learner.replace(
            params=_to_float64(learner.params),
            opt_state=_to_float64(learner.opt_state),
            obs_stats=_to_float64(learner.obs_stats),
        )
        agent = agent.replace(learner=learner)
        hparams = _to_float64(HParams.from_config(TINY))

        # One pass collects the window's data and differentiates J; the replay of that data is J as a function
        # of θ alone, whose central differences the gradient must match.
        window = jax.jit(jax.value_and_grad(lambda p: mg.window(p, agent, hparams), has_aux=True))
        (value, (_, data, _)), gradient = window(params)
        replay = jax.jit(lambda p: mg.window(p, agent, hparams, data)[0])
        np.testing.assert_allclose(float(replay(params)), float(value), rtol=1e-12)

        leaves, treedef = jax.tree.flatten(params)
        directions = jax.tree.unflatten(
            treedef, [jax.random.normal(jax.random.PRNGKey(i), x.shape, jnp.float64) for i, x in enumerate(leaves)]
        )
        analytic = sum(jnp.vdot(g, v) for g, v in zip(jax.tree.leaves(gradient), jax.tree.leaves(directions)))
        h = 1e-5
        shifted = [jax.tree.map(lambda p, v, s=s: p + s * h * v, params, directions) for s in (1.0, -1.0)]
        numeric = (replay(shifted[0]) - replay(shifted[1])) / (2 * h)
        print(f"directional derivative {float(analytic):.6e}, central difference {float(numeric):.6e}")
        assert abs(float(analytic)) > 1e-4  # the drift really moves the objective
        np.testing.assert_allclose(float(analytic), float(numeric), rtol=1e-4)


def test_meta_gradient_is_finite_and_agents_are_staggered_and_restart():
    """PPO-init (zero output layer) and large weights: the log-ratio guards and Adam's eps_root keep the
    meta-gradient finite; the agents' windows start at staggered ages and restart at the end of their life."""
    drift = df.make("ra_lpo", hidden_size=8)
    mg = make_meta_gradient(TINY, envs.make("CartPole-v1"), drift, unroll=2)
    assert mg.lifetime == 6  # 6 updates, 3 windows of 2
    agents = mg.init_agents(jax.random.PRNGKey(0), 3)
    np.testing.assert_array_equal(np.asarray(agents.age), [0, 2, 4])
    hparams = HParams.from_config(TINY)
    grad_fn = jax.jit(jax.value_and_grad(mg.objective, has_aux=True))
    ppo_init = drift.init(jax.random.PRNGKey(1))
    large = jax.tree.map(lambda x: 20.0 * jnp.ones_like(x), ppo_init)
    results = {}
    for name, params in (("ppo_init", ppo_init), ("large", large)):
        (value, (_, metrics)), grads = grad_fn(params, agents, hparams)
        assert np.isfinite(float(value))
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
        results[name] = (float(sum(jnp.abs(g).sum() for g in jax.tree.leaves(grads))), metrics)
    assert results["large"][0] > 0
    # At PPO-init the drift is relu(net + drift_PPO − 1e-4) with net = 0: while no sample has left PPO's trust
    # region (drift_active = 0) the relu is closed everywhere, so the meta-gradient is exactly zero. It can only
    # reshape the drift where PPO's is already active (docs/DISCOVERY.md, ES against meta-gradients).
    assert float(np.max(results["ppo_init"][1]["drift_active"])) == 0.0
    assert results["ppo_init"][0] == 0.0

    ages = []
    for _ in range(3):
        (_, (agents, metrics)), _ = grad_fn(ppo_init, agents, hparams)
        ages.append(np.asarray(metrics["age"]).tolist())
    # Each agent's window starts at its age; the one at 4 finishes its life and restarts at 0.
    assert ages == [[0, 2, 4], [2, 4, 0], [4, 0, 2]]


def test_unroll_outside_the_lifetime_is_refused():
    with pytest.raises(ValueError, match="unroll"):
        make_meta_gradient(TINY, envs.make("CartPole-v1"), df.make("ppo_clip"), unroll=7)
