"""The learner: GAE against a reference, vmap equivalence, determinism, learning thresholds."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import drift_functions as df
import envs
from discovery.io import configs
from envs.base import Discrete, Environment
from rl_algos.ppo import (
    SEEDS,
    HParams,
    PPOConfig,
    compute_gae,
    drift_policy_loss,
    final_return,
    make_train,
    make_train_batch,
)
from rl_algos.ppo.normalization import RunningStats, normalize, update_stats
from rl_algos.ppo.policy import Policy
from rl_algos.ppo.train import Transition, unroll_values

TINY = PPOConfig(total_timesteps=4 * 16 * 6, num_envs=4, num_steps=16, num_minibatches=2, update_epochs=2)


def gae_reference(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Plain Python loop over time for each environment, written from the definition."""
    T, N = rewards.shape
    advantages = np.zeros((T, N))
    for n in range(N):
        running = 0.0
        for t in reversed(range(T)):
            bootstrap = 0.0 if terminated[t, n] else next_values[t, n]
            delta = rewards[t, n] + gamma * bootstrap - values[t, n]
            episode_ended = terminated[t, n] or truncated[t, n]
            running = delta + (0.0 if episode_ended else gamma * lam * running)
            advantages[t, n] = running
    return advantages, advantages + values


def test_gae_scan_matches_python_loop_with_truncation_and_termination():
    rng = np.random.default_rng(0)
    T, N = 37, 5
    rewards, values, next_values = (rng.normal(size=(T, N)) for _ in range(3))
    terminated = rng.random((T, N)) < 0.1
    truncated = (rng.random((T, N)) < 0.1) & ~terminated
    assert terminated.any() and truncated.any()
    expected_adv, expected_targets = gae_reference(rewards, values, next_values, terminated, truncated, 0.97, 0.9)
    adv, targets = compute_gae(
        jnp.asarray(rewards),
        jnp.asarray(values),
        jnp.asarray(next_values),
        jnp.asarray(terminated),
        jnp.asarray(terminated | truncated),
        0.97,
        0.9,
    )
    np.testing.assert_allclose(adv, expected_adv, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(targets, expected_targets, rtol=1e-5, atol=1e-5)


def test_truncation_bootstraps_but_termination_does_not():
    ones = jnp.ones((1, 1))
    zeros = jnp.zeros((1, 1), bool)
    trunc_adv, _ = compute_gae(ones, 0 * ones, 10 * ones, zeros, ~zeros, 0.5, 1.0)
    term_adv, _ = compute_gae(ones, 0 * ones, 10 * ones, ~zeros, ~zeros, 0.5, 1.0)
    assert float(trunc_adv[0, 0]) == pytest.approx(1.0 + 0.5 * 10.0)
    assert float(term_adv[0, 0]) == pytest.approx(1.0)


def test_policy_loss_with_ppo_drift_is_clipped_surrogate():
    rng = np.random.default_rng(1)
    log_prob, old = jnp.asarray(rng.normal(size=64) * 0.3), jnp.asarray(rng.normal(size=64) * 0.3)
    adv = jnp.asarray(rng.normal(size=64))
    drift = df.make("ppo_clip")
    loss, aux = drift_policy_loss(functools.partial(drift.apply, drift.init(None)), log_prob, old, adv, 0.0)
    r = np.exp(np.asarray(log_prob - old))
    expected = -np.mean(np.minimum(r * adv, np.clip(r, 0.8, 1.2) * adv))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert 0.0 < float(aux["drift_active"]) < 1.0


def test_running_stats_match_numpy():
    rng = np.random.default_rng(2)
    batches = [rng.normal(3.0, 2.0, size=(7, 5, 3)) for _ in range(4)]
    stats = RunningStats.create((3,))
    for batch in batches:
        stats = update_stats(stats, jnp.asarray(batch, jnp.float32))
    everything = np.concatenate([b.reshape(-1, 3) for b in batches])
    np.testing.assert_allclose(stats.mean, everything.mean(0), rtol=1e-4)
    np.testing.assert_allclose(stats.var, everything.var(0), rtol=1e-4)


@pytest.mark.parametrize("truncation_rows", [None, 1, 2])
def test_unroll_values_matches_per_step_critic(truncation_rows):
    """One batched critic pass equals V(s_t) and V(s'_t) evaluated step by step, wherever GAE uses them."""
    env = envs.make("CartPole-v1")
    policy = Policy(TINY, env)
    params = policy.init(jax.random.PRNGKey(0))
    steps, num_envs = 7, 3
    key_obs, key_final = jax.random.split(jax.random.PRNGKey(1))
    obs = jax.random.normal(key_obs, (steps, num_envs, 4))
    final_obs = jnp.concatenate([obs[1:], jax.random.normal(key_final, (1, num_envs, 4))])
    # env 0 truncates at t=2 (and t=5 when two rows are allowed), env 1 terminates at t=3, env 2 runs through
    truncated = np.zeros((steps, num_envs), bool)
    truncated[2, 0] = True
    if truncation_rows != 1:
        truncated[5, 0] = True
    terminated = np.zeros((steps, num_envs), bool)
    terminated[3, 1] = True
    ended = truncated | terminated
    final_obs = jnp.where(
        ended[..., None], final_obs + 10.0, final_obs
    )  # s'_t differs from s_{t+1} where an episode ended
    traj = Transition(
        obs=obs,
        action=None,
        log_prob=None,
        reward=None,
        terminated=jnp.asarray(terminated),
        done=jnp.asarray(ended),
        final_obs=final_obs,
        episode_return=None,
        episode_length=None,
    )
    stats = update_stats(RunningStats.create((4,)), obs)
    normalize_fn = functools.partial(normalize, stats)
    norm_obs = normalize_fn(obs)
    values, next_values = jax.jit(unroll_values, static_argnums=(0, 4, 5))(
        policy, params, norm_obs, traj, normalize_fn, truncation_rows
    )
    for t in range(steps):
        np.testing.assert_allclose(values[t], policy.value(params, norm_obs[t]), rtol=1e-5, atol=1e-6)
        used = ~terminated[t] | (t == steps - 1)  # GAE multiplies a terminated step's bootstrap by 0
        reference = policy.value(params, normalize_fn(final_obs[t]))
        np.testing.assert_allclose(np.asarray(next_values[t])[used], np.asarray(reference)[used], rtol=1e-5, atol=1e-6)


class ClockEnv(Environment):
    """A stub with a time limit of 3: obs = [t, noise]; an episode ends by termination (chance 0.2
    per step from the step key) or is truncated at t = 3; reward 1 per step. ``time_limit`` tells
    the learner it may bound its truncation rows statically."""

    name = "clock"
    family = "stub"
    observation_shape = (2,)
    action_space = Discrete(2)
    default_params = None

    def __init__(self, time_limit=3, declare_time_limit=True):
        self.limit = time_limit
        if declare_time_limit:
            self.time_limit = time_limit

    def _reset(self, key, params):
        return jnp.stack([0.0, jax.random.normal(key)]), jnp.zeros((), jnp.int32)

    def _step(self, key, t, action, params):
        key_end, key_obs, key_reset = jax.random.split(key, 3)
        t = t + 1
        terminated = jax.random.uniform(key_end) < 0.2
        truncated = t >= self.limit
        done = terminated | truncated
        final_obs = jnp.stack([t.astype(jnp.float32), jax.random.normal(key_obs) + action])
        reset_obs, _ = self._reset(key_reset, params)
        return jnp.where(done, reset_obs, final_obs), jnp.where(done, 0, t), 1.0, terminated, truncated, final_obs


def _rollout(env, policy, params, num_envs, num_steps, key):
    """``num_steps`` steps of ``num_envs`` stub envs with the policy's actions, as make_train collects them."""
    key_reset, key = jax.random.split(key)
    obs, state = jax.vmap(env.reset)(jax.random.split(key_reset, num_envs))

    def step(carry, key):
        obs, state = carry
        key_action, key_step = jax.random.split(key)
        action, _, _ = policy.sample(params, obs, key_action)
        next_obs, state, _, terminated, truncated, info = jax.vmap(env.step)(
            jax.random.split(key_step, num_envs), state, action
        )
        return (next_obs, state), (obs, terminated, terminated | truncated, info["final_observation"])

    _, (obs, terminated, done, final_obs) = jax.lax.scan(step, (obs, state), jax.random.split(key, num_steps))
    return obs, terminated, done, final_obs


def test_unroll_values_on_a_stub_env_with_time_limit_3_in_16_steps():
    """Every truncation of a 16-step unroll gets V(true last obs), the budget ceil(15/3) = 5 rows per env
    is used up exactly by an env that truncates at t = 2, 5, 8, 11, 14, and the second window starts
    mid-episode; compared with the critic applied step by step."""
    env, num_envs, steps = ClockEnv(), 8, 16
    config = dataclasses.replace(TINY, num_envs=num_envs, num_steps=steps)
    policy = Policy(config, env)
    params = policy.init(jax.random.PRNGKey(0))
    obs, terminated, done, final_obs = jax.jit(_rollout, static_argnums=(0, 1, 3, 4))(
        env, policy, params, num_envs, 2 * steps, jax.random.PRNGKey(1)
    )
    truncation_rows = -(-(steps - 1) // env.time_limit)
    assert truncation_rows == 5
    stats = update_stats(RunningStats.create((2,)), obs)
    normalize_fn = functools.partial(normalize, stats)
    compute = jax.jit(unroll_values, static_argnums=(0, 4, 5))
    per_step_value = jax.jit(policy.value)
    most_truncations = 0
    for window in range(2):
        part = slice(window * steps, (window + 1) * steps)
        term, ended, finals = np.asarray(terminated[part]), np.asarray(done[part]), final_obs[part]
        truncated = ended & ~term
        per_env = truncated[:-1].sum(axis=0)
        most_truncations = max(most_truncations, int(per_env.max()))
        assert per_env.max() <= truncation_rows and term.any()
        assert (
            (per_env >= 2) & term[:-1].any(axis=0)
        ).any()  # an env that truncates twice and terminates in one window
        traj = Transition(
            obs=obs[part],
            action=None,
            log_prob=None,
            reward=None,
            terminated=jnp.asarray(term),
            done=jnp.asarray(ended),
            final_obs=finals,
            episode_return=None,
            episode_length=None,
        )
        norm_obs = normalize_fn(obs[part])
        # the reference: the critic on each step's observations on their own
        step_values = np.stack([per_step_value(params, norm_obs[t]) for t in range(steps)])
        step_next = np.stack([per_step_value(params, normalize_fn(finals[t])) for t in range(steps)])
        # where an episode was truncated, V(s'_t) is the last observation's value, not the reset one's
        assert np.all(np.abs(step_next[:-1] - step_values[1:])[truncated[:-1]] > 1e-4)
        used = ~term
        used[-1] = True  # GAE multiplies a terminated step's bootstrap by 0, except that the last is always read
        for rows in (truncation_rows, None):
            values, next_values = compute(policy, params, norm_obs, traj, normalize_fn, rows)
            np.testing.assert_allclose(values, step_values, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(
                np.asarray(next_values)[used],
                step_next[used],
                rtol=1e-5,
                atol=1e-6,
                err_msg=f"window {window}, truncation rows {rows}",
            )
    assert most_truncations == truncation_rows  # the static bound is reached, not just respected


def test_training_with_a_declared_time_limit_equals_sending_every_final_obs_through_the_critic():
    """make_train bounds the truncation rows from ``env.time_limit``; with the bound or without it
    (every ``final_obs`` through the critic) the learner computes the same run."""
    config = dataclasses.replace(TINY, num_envs=8, num_steps=16, total_timesteps=8 * 16 * 4)
    drift = df.make("ppo_clip")
    outputs = []
    for declared in (True, False):
        env = ClockEnv(declare_time_limit=declared)
        assert (getattr(env, "time_limit", None) == 3) == declared
        state, metrics = jax.jit(make_train(config, env, drift))(jax.random.PRNGKey(0), drift.init(None))
        outputs.append((state.params, metrics))
    (params_a, metrics_a), (params_b, metrics_b) = outputs
    assert float(metrics_a["episodes"].sum()) > 4 * 8 * 4  # episodes of at most 3 steps end all the time
    for name in ("value_loss", "policy_loss", "episode_return"):
        np.testing.assert_allclose(metrics_a[name], metrics_b[name], rtol=1e-5, atol=1e-6, err_msg=name)
    for a, b in zip(jax.tree.leaves(params_a), jax.tree.leaves(params_b)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_train_batch_over_seeds_equals_vmapped_train(cartpole):
    drift = df.make("dpo")
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    output = jax.jit(make_train_batch(TINY, cartpole, drift, SEEDS))(keys, drift.init(None), HParams.from_config(TINY))
    state, metrics = jax.jit(jax.vmap(make_train(TINY, cartpole, drift), in_axes=(0, None, None)))(
        keys, drift.init(None), HParams.from_config(TINY)
    )
    for name in metrics:
        np.testing.assert_array_equal(output.metrics[name], metrics[name])
    jax.tree.map(np.testing.assert_array_equal, output.params, state.params)
    np.testing.assert_array_equal(output.final_returns, final_return(metrics, TINY.final_return_window))


@pytest.fixture(scope="module")
def cartpole():
    return envs.make("CartPole-v1")


def test_vmap_over_seeds_equals_separate_calls_and_is_deterministic(cartpole):
    drift = df.make("dpo")
    params = drift.init(None)
    train = make_train(TINY, cartpole, drift)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    _, batched = jax.jit(jax.vmap(train, in_axes=(0, None)))(keys, params)
    single = jax.jit(train)
    for index in range(2):
        _, alone = single(keys[index], params)
        for name in alone:
            # vmapped matmuls round differently; drift_active counts a threshold crossing, so allow one flip per
            # minibatch
            atol = 2.0 / TINY.minibatch_size if name == "drift_active" else 1e-5
            np.testing.assert_allclose(batched[name][index], alone[name], rtol=1e-4, atol=atol, err_msg=name)
    _, again = single(keys[0], params)
    _, alone = single(keys[0], params)
    for name in alone:
        np.testing.assert_array_equal(again[name], alone[name])
    assert batched["episode_return"].shape == (2, TINY.num_updates)


def test_vmap_over_drift_params_and_hparams(cartpole):
    drift = df.make("lpo", ppo_init=True)
    population = jax.tree.map(lambda x: jnp.stack([x, x + 0.1]), drift.init(jax.random.PRNGKey(0)))
    train = make_train(TINY, cartpole, drift)
    _, metrics = jax.jit(jax.vmap(train, in_axes=(None, 0)))(jax.random.PRNGKey(0), population)
    assert metrics["policy_loss"].shape == (2, TINY.num_updates)
    assert not np.allclose(metrics["policy_loss"][0], metrics["policy_loss"][1])
    hp = HParams.from_config(TINY)
    hps = jax.tree.map(lambda x: jnp.stack([x, x]), hp).replace(learning_rate=jnp.array([1e-4, 1e-3]))
    _, metrics = jax.jit(jax.vmap(train, in_axes=(None, None, 0)))(jax.random.PRNGKey(0), drift.init(None), hps)
    np.testing.assert_allclose(metrics["learning_rate"][:, 0], [1e-4, 1e-3], rtol=1e-6)


def test_the_drift_receives_progress_update_over_num_updates(cartpole):
    """p = update / num_updates in [0, 1) for every minibatch of an update (TA-LPO's extra input):
    a probe drift that returns p makes the logged drift_mean that very value."""
    probe = df.Drift(
        "progress_probe",
        {},
        lambda key: {},
        lambda params, ratio, advantage, progress, log_ratio=None: jnp.broadcast_to(progress, ratio.shape) * 1.0,
    )
    _, metrics = jax.jit(make_train(TINY, cartpole, probe))(jax.random.PRNGKey(0), {})
    assert TINY.num_updates == 6
    np.testing.assert_allclose(metrics["drift_mean"], np.arange(6) / 6, rtol=1e-6, atol=0)


def test_continuous_gymnax_train_runs():
    # (Brax with tanh_gaussian and observation normalisation is covered by test_brax_inverted_pendulum_improves.)
    env = envs.make("Pendulum-v1")
    for extra in ({}, {"normalize_obs": True, "continuous_distribution": "tanh_gaussian"}):
        config = dataclasses.replace(TINY, **extra)
        _, metrics = jax.jit(make_train(config, env, df.make("dpo")))(jax.random.PRNGKey(0), df.make("dpo").init(None))
        assert np.all(np.isfinite(metrics["policy_loss"])) and np.all(np.isfinite(metrics["value_loss"]))


def test_config_validation_messages():
    with pytest.raises(ValueError, match="does not divide"):
        dataclasses.replace(TINY, num_minibatches=3).validate()
    with pytest.raises(ValueError, match="learning_rate"):
        dataclasses.replace(TINY, learning_rate=0.0).validate()
    with pytest.raises(ValueError, match="less than one update"):
        dataclasses.replace(TINY, total_timesteps=10).validate()


def test_final_return_window():
    metrics = {"episode_return": jnp.array([[1.0, jnp.nan, 10.0, 20.0]]), "episodes": jnp.array([[1, 0, 1, 3]])}
    np.testing.assert_allclose(final_return(metrics, 0.5), [(10.0 + 60.0) / 4])
    assert np.isnan(final_return({"episode_return": jnp.array([jnp.nan]), "episodes": jnp.array([0])}, 1.0))
    # no episode ended in the window: fall back to the last update in which one did
    late = {
        "episode_return": jnp.array([[5.0, 7.0, jnp.nan, jnp.nan], [jnp.nan] * 4]),
        "episodes": jnp.array([[1, 2, 0, 0], [0] * 4]),
    }
    result = np.asarray(final_return(late, 0.25))
    assert result[0] == 7.0 and np.isnan(result[1])


# DPO (the discovered drift) in the default run; PPO-clip, which every normalised score divides by, with -m slow.
@pytest.mark.parametrize("drift_name", [pytest.param("ppo_clip", marks=pytest.mark.slow), "dpo"])
def test_cartpole_learns_to_450(drift_name):
    """Acceptance: mean final return >= 450 on CartPole-v1 in 5e5 steps over 4 seeds
    (configs/train/CartPole-v1.yaml)."""
    from discovery.io.drift_registry import resolve_drift
    from discovery.runtime.learners import run_seeds

    spec, _ = configs.load_train_spec("CartPole-v1", {"total_timesteps": 500_000})
    result = run_seeds(spec, resolve_drift(drift_name), 4, show_progress=False)
    assert np.nanmean(result.final_returns) >= 450.0, result.final_returns


# A Brax learning run (50 s on 2 cores): `make test-all`.
@pytest.mark.slow
def test_brax_inverted_pendulum_improves():
    from discovery.io.drift_registry import resolve_drift
    from discovery.runtime.learners import run_seeds

    overrides = dict(
        total_timesteps=60_000,
        num_envs=64,
        num_steps=16,
        rollouts_per_update=1,
        num_minibatches=4,
        update_epochs=4,
        episode_length=200,
    )
    spec, _ = configs.load_train_spec("inverted_pendulum", overrides)
    result = run_seeds(spec, resolve_drift("ppo"), 2, show_progress=False)
    returns = result.metrics["episode_return"]
    early, late = np.nanmean(returns[:, :5]), np.nanmean(result.final_returns)
    assert late > early + 50.0, (early, late)


# ---- one learner split over devices (make_train(env_axis=...)) ------------------------------------------


def test_split_advantage_normalisation_and_obs_stats_equal_the_whole_batch():
    """Under a mapped axis (here vmap with an axis name, as shard_map gives on devices), the per-shard
    normalisation and running statistics are those of the whole batch."""
    from rl_algos.ppo.losses import normalize_advantages
    from rl_algos.ppo.normalization import RunningStats, update_stats

    advantages = jax.random.normal(jax.random.PRNGKey(0), (4, 64)) * 3.0 + 1.0  # 4 shards of 64
    split = jax.vmap(lambda a: normalize_advantages(a, axis_name="d"), axis_name="d")(advantages)
    np.testing.assert_allclose(split.reshape(-1), normalize_advantages(advantages.reshape(-1)), rtol=1e-5, atol=1e-6)

    obs = jax.random.normal(jax.random.PRNGKey(1), (4, 10, 8, 3)) * 2.0 + 0.5  # shards × steps × envs × obs
    stats = update_stats(RunningStats.create((3,)), obs[0])
    whole = update_stats(stats, obs.transpose(1, 0, 2, 3))
    shards = jax.vmap(lambda o: update_stats(stats, o, "d"), axis_name="d")(obs)
    for name in ("mean", "var", "count"):
        np.testing.assert_allclose(getattr(shards, name)[0], getattr(whole, name), rtol=1e-5, atol=1e-6)


def test_a_split_learner_is_deterministic_and_learns():
    """CartPole split over 2 mapped shards (vmap with an axis name stands in for 2 devices)."""
    env = envs.make("CartPole-v1")
    config = PPOConfig(
        total_timesteps=40_960, num_envs=8, num_steps=64, num_minibatches=4, update_epochs=4, learning_rate=2.5e-3
    )
    drift = df.make("ppo_clip")
    train = make_train(config, env, drift, env_axis=("d", 2))
    run = jax.jit(jax.vmap(lambda key: train(key, drift.init(None)), in_axes=None, axis_size=2, axis_name="d"))
    (state, metrics), (state_again, _) = run(jax.random.PRNGKey(0)), run(jax.random.PRNGKey(0))
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(state_again.params)):
        np.testing.assert_array_equal(a, b)
    for leaf in jax.tree.leaves(state.params):  # the two shards hold the same parameters
        np.testing.assert_array_equal(leaf[0], leaf[1])
    returns = np.asarray(metrics["episode_return"][0])
    assert np.nanmean(returns[-5:]) > 3 * np.nanmean(returns[:5]), returns


def _unroll(done, time_limit):
    from rl_algos.ppo.train import Transition, unroll_values

    env = envs.make("CartPole-v1")
    policy = Policy(PPOConfig(), env)
    params = policy.init(jax.random.PRNGKey(0))
    steps, num_envs = done.shape
    obs = jax.random.normal(jax.random.PRNGKey(1), (steps, num_envs, 4))
    # s'_t = s_{t+1} unless the episode ended at t; then the true last observation (random here)
    ended_obs = jax.random.normal(jax.random.PRNGKey(2), (steps, num_envs, 4))
    next_obs = jnp.concatenate([obs[1:], ended_obs[-1:]])
    final_obs = jnp.where(done[..., None], ended_obs, next_obs)
    traj = Transition(
        obs=obs,
        action=None,
        log_prob=None,
        reward=None,
        terminated=jnp.zeros_like(done),
        done=done,
        final_obs=final_obs,
        episode_return=None,
        episode_length=None,
    )
    rows = -(-(steps - 1) // time_limit)
    _, bounded = unroll_values(policy, params, obs, traj, lambda x: x, rows)
    _, exact = unroll_values(policy, params, obs, traj, lambda x: x, None)
    return np.asarray(bounded), np.asarray(exact)


def test_an_env_truncating_within_its_time_limit_gets_every_bootstrap():
    done = jnp.zeros((16, 3), bool).at[7].set(True).at[15].set(True)  # every 8 steps, as declared
    bounded, exact = _unroll(done, time_limit=8)
    np.testing.assert_allclose(bounded, exact, rtol=1e-5, atol=1e-6)  # nothing terminated: every next value is read


def test_an_env_truncating_more_often_than_declared_is_not_silently_wrong():
    done = jnp.ones((16, 3), bool)  # truncates every step, while it declares a time limit of 8
    bounded, exact = _unroll(done, time_limit=8)
    assert np.all(np.isfinite(exact))
    assert np.all(np.isnan(bounded))  # the run's losses turn NaN and it is reported, never a wrong bootstrap
