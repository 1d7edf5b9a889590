"""The environment contract: reset/step signatures, auto-reset, truncation vs termination."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from discovery.io import configs
from envs.adapters import GymnaxEnvironment, default_backend
from envs.base import Box, Discrete, Environment
from rl_algos.ppo import PPOConfig
from rl_algos.ppo.policy import Policy


class CountingEnv(Environment):
    """obs = [t]; reward 1 per step; action 1 terminates; the time limit truncates after `limit` steps."""

    name = "counting"
    family = "stub"
    observation_shape = (1,)
    action_space = Discrete(2)
    default_params = None

    def __init__(self, limit=3):
        self.limit = limit

    def _reset(self, key, params):
        return jnp.zeros((1,)), jnp.zeros((), jnp.int32)

    def _step(self, key, t, action, params):
        t = t + 1
        terminated = action == 1
        truncated = t >= self.limit  # may coincide with termination: termination wins
        done = terminated | truncated
        final_obs = jnp.array([t], jnp.float32)
        obs = jnp.where(done, jnp.zeros((1,)), final_obs)
        return obs, jnp.where(done, 0, t), 1.0, terminated, truncated, final_obs


def _run(env, actions):
    obs, state = env.reset(jax.random.PRNGKey(0))
    rows = []
    for a in actions:
        obs, state, reward, term, trunc, info = env.step(jax.random.PRNGKey(1), state, jnp.asarray(a))
        rows.append(
            (
                float(obs[0]),
                bool(term),
                bool(trunc),
                float(info["final_observation"][0]),
                float(info["episode_return"]),
                int(info["episode_length"]),
            )
        )
    return rows


def test_truncation_and_termination_are_distinct_on_stub():
    rows = _run(CountingEnv(limit=3), [0, 0, 0, 0, 1, 0, 0, 1])
    # steps 1-3: truncated at t=3 (final obs 3, next obs reset to 0)
    assert rows[2] == (0.0, False, True, 3.0, 3.0, 3)
    assert rows[0][1:3] == (False, False) and rows[0][4] == 0.0
    # step 5: action 1 terminates at t=2
    assert rows[4] == (0.0, True, False, 2.0, 2.0, 2)
    # step 8: action 1 at t=3 both terminates and hits the limit: termination wins
    assert rows[7] == (0.0, True, False, 3.0, 3.0, 3)


def _contract(env, num_steps, action_fn):
    params = env.default_params
    obs, state = jax.jit(env.reset)(jax.random.PRNGKey(0), params)
    assert obs.shape == env.observation_shape and obs.dtype == jnp.float32
    step = jax.jit(env.step)
    saw_done = False
    for t in range(num_steps):
        out = step(jax.random.PRNGKey(t), state, action_fn(t), params)
        assert len(out) == 6
        obs, state, reward, terminated, truncated, info = out
        assert obs.shape == env.observation_shape
        assert reward.shape == () and terminated.dtype == bool and truncated.dtype == bool
        assert not (bool(terminated) and bool(truncated))
        assert info["final_observation"].shape == env.observation_shape
        if bool(terminated) or bool(truncated):
            saw_done = True
            assert float(info["episode_length"]) > 0
            assert not np.allclose(info["final_observation"], obs)
        else:
            np.testing.assert_array_equal(info["final_observation"], obs)
    return saw_done


def test_gymnax_cartpole_contract():
    env = envs.make("CartPole-v1")
    assert env.is_discrete and env.action_space.num_actions == 2 and env.family == "classic_control"
    assert _contract(env, 60, lambda t: jnp.asarray(1))  # always pushing right falls within 60 steps


def test_gymnax_time_limit_is_truncation():
    env = envs.make("CartPole-v1")
    params = env.default_params.replace(max_steps_in_episode=5)
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    flags = []
    for t in range(5):
        obs, state, _, term, trunc, info = env.step(jax.random.PRNGKey(t), state, jnp.asarray(t % 2), params)
        flags.append((bool(term), bool(trunc)))
    assert flags[-1] == (False, True) and not any(any(f) for f in flags[:-1])
    assert float(info["episode_return"]) == 5.0


def test_brax_contract_and_truncation():
    env = envs.make("inverted_pendulum", backend="positional", episode_length=7)
    assert not env.is_discrete and env.action_space.shape == (1,) and env.family == "brax"
    flags = []

    def action(t):
        return jnp.zeros((1,))

    params = env.default_params
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    step = jax.jit(env.step)
    for t in range(7):
        obs, state, reward, term, trunc, info = step(jax.random.PRNGKey(t), state, action(t), params)
        flags.append((bool(term), bool(trunc)))
    assert flags[-1] == (False, True)
    assert float(info["episode_length"]) == 7.0
    assert not np.allclose(info["final_observation"], obs)  # reset happened; final obs kept
    assert _contract(env, 10, action)


def test_brax_termination_is_termination_not_truncation():
    """inverted_pendulum ends when |pole angle| = |obs[1]| > 0.2: pushing the cart one way topples the pole
    long before the time limit, and that step is terminated (no bootstrap), never truncated."""
    env = envs.make("inverted_pendulum", backend="positional", episode_length=1000)

    def push(key):
        obs, state = env.reset(key)

        def step(state, key):
            obs, state, reward, terminated, truncated, info = env.step(key, state, jnp.ones(env.action_space.shape))
            return state, (obs, terminated, truncated, info["final_observation"], info["episode_length"])

        return obs, jax.lax.scan(step, state, jax.random.split(key, 200))[1]

    first_obs, (obs, terminated, truncated, final_obs, length) = jax.jit(push)(jax.random.PRNGKey(0))
    terminated, truncated = np.asarray(terminated), np.asarray(truncated)
    assert terminated.any() and not truncated.any()
    t = int(np.argmax(terminated))
    assert 1 < t + 1 < 1000 and int(length[t]) == t + 1
    assert abs(float(final_obs[t][1])) > 0.2  # the toppled pole is the observation the episode ended on
    assert np.all(np.abs(np.asarray(final_obs[:t])[:, 1]) <= 0.2)  # and nothing ended before it
    assert abs(float(obs[t][1])) < 0.2 and not np.allclose(obs[t], final_obs[t])  # auto-reset to a fresh upright pole
    assert abs(float(first_obs[1])) < 0.2


def test_every_listed_name_is_registered_and_unknown_lists_names():
    names = envs.registered()
    for name in [
        "CartPole-v1",
        "Acrobot-v1",
        "Pendulum-v1",
        "MountainCar-v0",
        "Breakout-MinAtar",
        "SpaceInvaders-MinAtar",
        "ant",
        "hopper",
        "humanoid",
        "humanoidstandup",
        "inverted_double_pendulum",
        "pusher",
        "reacher",
        "swimmer",
        "walker2d",
    ]:
        assert name in names
    with pytest.raises(envs.UnknownEnvironmentError, match="CartPole-v1.*hopper"):
        envs.make("NoSuchEnv")
    with pytest.raises(ValueError, match="positional"):
        envs.make("hopper", backend="warp-drive")


@pytest.mark.parametrize("name", ["Acrobot-v1", "Pendulum-v1", "Breakout-MinAtar"])
def test_other_gymnax_families_step(name):
    env = envs.make(name)
    action = (lambda t: jnp.asarray(0)) if env.is_discrete else (lambda t: jnp.zeros(env.action_space.shape))
    _contract(env, 3, action)


# ---- every Brax env by name, on a backend it supports; device-sized configs ---------------------------------------

# Jitted in the default run: reacher (generalized-only, action repeat 4); swimmer too with -m slow (30 s each).
BRAX_STEPPED = (pytest.param("swimmer", marks=pytest.mark.slow), "reacher")


def _one_jitted_step(env, **options):
    """reset + one step with a zero action, compiled once."""

    def reset_and_step(key):
        obs, state = env.reset(key)
        return obs, env.step(key, state, jnp.zeros(env.action_space.shape))

    obs, (next_obs, _, reward, terminated, truncated, info) = jax.jit(reset_and_step)(jax.random.PRNGKey(0))
    assert obs.shape == next_obs.shape == env.observation_shape
    assert np.all(np.isfinite(np.asarray(next_obs))) and np.isfinite(float(reward))
    assert not bool(truncated)


@pytest.mark.slow  # ~30 s; reacher and swimmer take a jitted step by name in the default run
def test_every_brax_env_builds_by_name_on_a_backend_it_supports():
    from envs.adapters import BRAX_ONLY_BACKENDS

    for name in envs.BRAX_ENVS:
        env = envs.make(name)
        assert env.backend == envs.default_backend(name) == BRAX_ONLY_BACKENDS.get(name, ("positional",))[0], name
        assert env.backend != "mjx"  # 10-100x slower than the others on a CPU
        assert len(env.observation_shape) == 1 and env.observation_shape[0] > 0 and env.action_space.shape[0] > 0


@pytest.mark.parametrize("name", BRAX_STEPPED)
def test_brax_env_takes_a_step_by_name(name):
    _one_jitted_step(envs.make(name, **({"action_repeat": 4} if name == "reacher" else {})))


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in envs.BRAX_ENVS if n not in BRAX_STEPPED])
def test_every_other_brax_env_takes_a_step_by_name(name):
    _one_jitted_step(envs.make(name))


def test_every_brax_config_has_a_cpu_profile_that_changes_only_sizes():

    sizing = {"total_timesteps", "num_envs", "num_steps", "rollouts_per_update", "num_minibatches"}
    for name in envs.BRAX_ENVS:
        cpu, _ = configs.load_train_spec(name, {"profile": "cpu"})
        published, _ = configs.load_train_spec(name, {"profile": "accelerator"})
        assert cpu.profile == "cpu" and published.profile == "accelerator", name
        assert 16 <= cpu.ppo.num_envs <= 64 and cpu.ppo.num_steps <= 32 and cpu.ppo.batch_size <= 4096, name
        assert configs.load_train_spec(name, {"total_timesteps": 50_000})[0].ppo.num_updates >= 20, (
            name
        )  # auto: cpu here
        changed = {k for k in vars(cpu.ppo) if getattr(cpu.ppo, k) != getattr(published.ppo, k)}
        assert changed <= sizing and cpu.env_options == published.env_options, (name, changed)
        assert published.ppo.num_envs == 2048, name  # the published settings


class _FakeSpace:
    def __init__(self, low, high):
        self.low, self.high, self.shape = np.asarray(low), np.asarray(high), np.asarray(low).shape


def test_swimmer_gets_the_only_backend_it_supports():
    assert default_backend("swimmer") == "generalized" and default_backend("hopper") == "positional"
    assert envs.make("swimmer").backend == "generalized"
    with pytest.raises(ValueError, match="swimmer supports only the generalized backend, not 'positional'"):
        envs.make("swimmer", backend="positional")


def test_gymnax_per_dimension_action_bounds_are_kept(monkeypatch):
    import gymnax

    class FakeEnv:
        is_truncated = gymnax.environments.environment.Environment.is_truncated

        def action_space(self, params):
            return _FakeSpace([-1.0, 0.0], [1.0, 5.0])

        def observation_space(self, params):
            return _FakeSpace(np.zeros(3), np.ones(3))

    monkeypatch.setattr(gymnax, "make", lambda name, **kw: (FakeEnv(), None))
    env = GymnaxEnvironment("Fake-misc")
    assert env.action_space == Box((-1.0, 0.0), (1.0, 5.0), (2,))
    # The policy's squashed actions respect each dimension's own range.
    policy = Policy(PPOConfig(continuous_distribution="tanh_gaussian"), env)
    params = policy.init(jax.random.PRNGKey(0))
    _, actions, _ = policy.sample(params, jnp.zeros((512, 3)), jax.random.PRNGKey(1))
    assert actions.shape == (512, 2)
    assert np.all(actions[:, 0] >= -1) and np.all(actions[:, 0] <= 1)
    assert np.all(actions[:, 1] >= 0) and np.all(actions[:, 1] <= 5) and actions[:, 1].max() > 1.5


def test_same_bounds_stay_scalar():
    assert envs.make("Pendulum-v1").action_space == Box(-2.0, 2.0, (1,))
