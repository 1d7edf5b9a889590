"""Tests of meta/: evolution strategies over pytrees (maximising, on evosax)."""

import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import meta
from meta import ESConfig, evaluate_population, make_strategy, run_generation, sanitize_fitness

REPO_ROOT = Path(__file__).resolve().parents[2]

# A drift-network-shaped solution (no biases), small enough for a fast CPU test.
TEMPLATE = {"w_hidden": jnp.zeros((8, 16)), "w_out": jnp.zeros((16, 1))}
TARGET = {
    "w_hidden": 0.3 * jax.random.normal(jax.random.key(1), (8, 16)),
    "w_out": 0.3 * jax.random.normal(jax.random.key(2), (16, 1)),
}
SMALL_TEMPLATE = {"w": jnp.zeros((4, 3)), "b": jnp.zeros((3,))}
SMALL_TARGET = {"w": jnp.full((4, 3), 0.2), "b": jnp.full((3,), -0.2)}


def squared_distance(member, target=TARGET):
    """‖member − target‖² summed over every leaf."""
    diffs = jax.tree.map(lambda a, b: jnp.sum((a - b) ** 2), member, target)
    return sum(jax.tree.leaves(diffs))


def toy_fitness(key, member):
    """−‖x − target‖² (maximised at the target); the key is unused."""
    del key
    return -squared_distance(member)


def small_fitness(key, member):
    """Toy fitness on the small template, plus key-dependent noise."""
    return -squared_distance(member, SMALL_TARGET) + 0.01 * jax.random.normal(key)


def noisy_fitness(key, member):
    """Toy fitness plus key-dependent noise (exercises key handling)."""
    return toy_fitness(key, member) + 0.01 * jax.random.normal(key)


@functools.cache
def cached_strategy(config, template_name="drift"):
    """One strategy per (config, template) for the whole module: evosax jit-compiles
    per algorithm instance, so sharing instances keeps this file fast."""
    template = {"drift": TEMPLATE, "small": SMALL_TEMPLATE}[template_name]
    return make_strategy(config, template)


def run(strategy, state, key, num_generations, fitness_fn=toy_fitness, **kwargs):
    stats = None
    for k in jax.random.split(key, num_generations):
        state, stats = run_generation(strategy, state, k, fitness_fn, **kwargs)
    return state, stats


def assert_state_finite(state):
    for leaf in jax.tree.leaves(state):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            assert not jnp.any(jnp.isnan(leaf)), "ES state holds NaN"
    assert jnp.all(jnp.isfinite(state.mean if hasattr(state, "mean") else state.population))


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


# --- learning ---------------------------------------------------------------------


def test_open_es_converges_on_toy_objective():
    config = ESConfig(algorithm="Open_ES", population_size=32, learning_rate_decay=0.99)
    strategy = make_strategy(config, TEMPLATE)
    state = strategy.init(jax.random.key(0), TEMPLATE)
    initial_loss = squared_distance(strategy.mean(state))
    state, stats = run(strategy, state, jax.random.key(3), 80)
    final_loss = squared_distance(strategy.mean(state))
    assert final_loss < 0.1 * initial_loss, (initial_loss, final_loss)
    best_solution, best_fitness = strategy.best(state)
    assert jnp.isclose(best_fitness, toy_fitness(None, best_solution))
    assert best_fitness >= stats.fitness_max
    assert_state_finite(state)


# The algorithms the README names run in the default suite; every other one `meta.ESConfig` accepts, with -m slow.
NAMED_ALGORITHMS = ["ARS", "CMA_ES", "PGPE", "SNES", "xNES"]
# Measured on this toy (15 generations, P = 8; mean distance² 0.60 at the start): the iAMaLGaM pair moves its
# mean *away* from the optimum (to 10.6 and 15.6), NoiseReuseES and Rm_ES hardly move it (0.45, 0.44).
# Every other algorithm ends at 0.03-0.18. Strict xfails, so that a fix shows up.
KNOWN_NOT_IMPROVING = {
    "iAMaLGaM_Full": "its mean moves away from the optimum on the toy objective",
    "iAMaLGaM_Univariate": "its mean moves away from the optimum on the toy objective",
    "NoiseReuseES": "hardly moves its mean in 15 generations",
    "Rm_ES": "hardly moves its mean in 15 generations",
}
ALGORITHM_CASES = [
    pytest.param(
        name,
        marks=()
        if name in NAMED_ALGORITHMS
        else (
            pytest.mark.slow,
            *(
                [pytest.mark.xfail(strict=True, reason=KNOWN_NOT_IMPROVING[name])]
                if name in KNOWN_NOT_IMPROVING
                else []
            ),
        ),
    )
    for name in meta.es.ALGORITHMS
    if name != "Open_ES"  # Open_ES: test_open_es_converges_on_toy_objective
]


@pytest.mark.parametrize("algorithm", ALGORITHM_CASES)
def test_other_algorithms_move_their_mean_towards_the_optimum(algorithm):
    """The ES *mean* (what meta-training saves as drift.npz) gets closer to the optimum, not just the best member
    seen."""
    strategy = cached_strategy(ESConfig(algorithm=algorithm, population_size=8), "small")
    state = strategy.init(jax.random.key(0), SMALL_TEMPLATE)
    initial = float(squared_distance(strategy.mean(state), SMALL_TARGET))
    state, stats = run(strategy, state, jax.random.key(1), 15, small_fitness)
    assert_state_finite(state)
    final = float(squared_distance(strategy.mean(state), SMALL_TARGET))
    assert final < 0.5 * initial, (initial, final)
    assert jnp.all(jnp.isfinite(stats.fitness))
    assert jax.tree.structure(strategy.mean(state)) == jax.tree.structure(SMALL_TEMPLATE)


@pytest.mark.parametrize("antithetic", [True, False])
def test_antithetic_members_mirror_each_other_about_the_mean(antithetic):
    """pop[i] − mean == −(pop[i + P/2] − mean) with antithetic sampling; not so without it."""
    config = ESConfig(population_size=8, sigma=0.1, antithetic=antithetic)
    strategy = cached_strategy(config)
    mean = jax.tree.map(lambda x: x + 0.5, TEMPLATE)  # away from 0, so that a sign error cannot hide
    state = strategy.init(jax.random.key(0), mean)
    population, _ = strategy.ask(jax.random.key(1), state)
    for leaf, centre in zip(jax.tree.leaves(population), jax.tree.leaves(strategy.mean(state))):
        noise = np.asarray(leaf - centre)
        assert noise.shape[0] == 8 and np.all(np.abs(noise).reshape(8, -1).max(axis=1) > 1e-3)
        mirrored = np.allclose(noise[:4], -noise[4:], atol=1e-6)
        assert mirrored == antithetic
        assert 0.05 < noise.std() < 0.2  # σ = 0.1


# --- conventions --------------------------------------------------------------------


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_higher_fitness_is_preferred(direction):
    """Linear fitness f(x) = direction · x[w_out][0, 0]: that coordinate of the mean must
    move in +direction."""
    strategy = cached_strategy(ESConfig(population_size=8))
    state = strategy.init(jax.random.key(0), TEMPLATE)

    def linear_fitness(key, member):
        return direction * member["w_out"][0, 0]

    state, stats = run(strategy, state, jax.random.key(1), 10, linear_fitness)
    assert direction * strategy.mean(state)["w_out"][0, 0] > 0.1  # Adam: ≈ lr = 0.03 a step
    assert strategy.best(state)[1] >= jnp.max(stats.fitness)


def test_open_es_sigma_follows_schedule():
    """evosax's Open_ES default σ is a constant 1.0: ours must be config.sigma, decaying."""
    config = ESConfig(sigma=0.1, sigma_decay=0.5, sigma_floor=0.02, population_size=4)
    strategy = make_strategy(config, TEMPLATE)
    state = strategy.init(jax.random.key(0), TEMPLATE)
    assert jnp.isclose(strategy.sigma(state), 0.1)
    state, _ = run(strategy, state, jax.random.key(1), 6)
    assert jnp.isclose(strategy.sigma(state), 0.02)


def test_same_key_same_result():
    strategy = cached_strategy(ESConfig(population_size=8))
    results = []
    for _ in range(2):
        state = strategy.init(jax.random.key(0), TEMPLATE)
        state, stats = run(strategy, state, jax.random.key(5), 3, noisy_fitness)
        results.append((state, stats))
    assert_trees_equal(results[0], results[1])


@pytest.mark.parametrize("shaping", ["z_score", "raw"])
def test_other_fitness_shapings_learn(shaping):
    config = ESConfig(population_size=8, fitness_shaping=shaping)
    strategy = make_strategy(config, TEMPLATE)
    state = strategy.init(jax.random.key(0), TEMPLATE)
    state, _ = run(strategy, state, jax.random.key(1), 10)
    assert squared_distance(strategy.mean(state)) < squared_distance(TEMPLATE)


# --- failures -----------------------------------------------------------------------


def test_sanitize_fitness_replaces_nonfinite_by_worst_minus_one():
    fitness = jnp.array([1.0, jnp.nan, 3.0, jnp.inf, -jnp.inf, -2.0])
    clean, num_nonfinite = sanitize_fitness(fitness)
    np.testing.assert_array_equal(clean, [1.0, -3.0, 3.0, -3.0, -3.0, -2.0])
    assert num_nonfinite == 3


def test_sanitize_fitness_all_nonfinite():
    clean, num_nonfinite = sanitize_fitness(jnp.array([jnp.nan, jnp.inf, -jnp.inf, jnp.nan]))
    assert num_nonfinite == 4
    assert jnp.all(jnp.isfinite(clean)) and jnp.all(clean == clean[0])


def test_nonfinite_members_keep_es_state_finite():
    """Members with w_out[0, 0] > 0 fail (NaN or inf); the ES still learns and counts them."""

    def flaky_fitness(key, member):
        fitness = toy_fitness(key, member)
        w = member["w_out"][0, 0]
        return jnp.where(w > 0.02, jnp.nan, jnp.where(w > 0, jnp.inf, fitness))

    strategy = cached_strategy(ESConfig(population_size=8))
    state = strategy.init(jax.random.key(0), TEMPLATE)
    total_nonfinite = 0
    for k in jax.random.split(jax.random.key(1), 8):
        state, stats = run_generation(strategy, state, k, flaky_fitness)
        total_nonfinite += int(stats.num_nonfinite)
        assert stats.num_nonfinite == jnp.sum(~jnp.isfinite(stats.fitness))
        assert jnp.isfinite(stats.fitness_mean) and jnp.isfinite(stats.best_fitness)
    assert total_nonfinite > 0
    assert_state_finite(state)


def test_all_members_failing_leaves_state_unchanged():
    strategy = cached_strategy(ESConfig(population_size=8))
    state = strategy.init(jax.random.key(0), TEMPLATE)
    state, _ = run(strategy, state, jax.random.key(1), 2)
    population, asked = strategy.ask(jax.random.key(2), state)
    told = strategy.tell(jax.random.key(3), population, jnp.full((8,), jnp.nan), asked)
    assert_trees_equal(told, asked)


def test_odd_population_with_antithetic_raises():
    with pytest.raises(ValueError, match="antithetic.*even"):
        ESConfig(population_size=33, antithetic=True)
    ESConfig(population_size=33, antithetic=False, algorithm="CMA_ES")  # fine


def test_unknown_algorithm_lists_valid_names():
    with pytest.raises(ValueError, match="Open_ES.*") as info:
        ESConfig(algorithm="Closed_ES")
    assert "CMA_ES" in str(info.value) and "SNES" in str(info.value)
    with pytest.raises(ValueError, match="unknown fitness_shaping"):
        ESConfig(fitness_shaping="rank")


# --- evaluation: chunks and devices -------------------------------------------------


@pytest.mark.parametrize("per_member_keys", [False, True])
def test_chunked_evaluation_equals_unchunked(per_member_keys):
    strategy = cached_strategy(ESConfig(population_size=8))
    state = strategy.init(jax.random.key(0), TEMPLATE)
    population, _ = strategy.ask(jax.random.key(1), state)
    key = jax.random.key(2)
    keys = jax.random.split(key, 8) if per_member_keys else key
    whole = evaluate_population(noisy_fitness, population, keys)
    assert whole.shape == (8,)
    for micro_batch in (1, 3, 8, 64):
        chunked = evaluate_population(noisy_fitness, population, keys, micro_batch=micro_batch)
        np.testing.assert_array_equal(chunked, whole)
    np.testing.assert_array_equal(evaluate_population(noisy_fitness, population, keys, devices=jax.devices()), whole)


def test_raw_uint32_keys_match_typed_keys():
    """Legacy `jax.random.PRNGKey` keys work and give the same results as typed keys."""
    strategy = cached_strategy(ESConfig(population_size=8))
    raw_key = jax.random.PRNGKey(7)
    results = []
    for key in (raw_key, jax.random.wrap_key_data(raw_key)):
        state = strategy.init(key, TEMPLATE)
        results.append(run(strategy, state, key, 2, noisy_fitness))
    assert_trees_equal(results[0], results[1])


_DEVICE_SCRIPT = textwrap.dedent(
    """
    import sys
    import jax, jax.flatten_util, jax.numpy as jnp, numpy as np
    import meta

    num_devices, out_path = int(sys.argv[1]), sys.argv[2]
    assert jax.device_count() == num_devices, jax.devices()
    template = {"w_hidden": jnp.zeros((8, 16)), "w_out": jnp.zeros((16, 1))}
    target = jax.tree.map(lambda x: jnp.linspace(-0.5, 0.5, x.size).reshape(x.shape), template)

    def fitness_fn(key, member):
        d = jax.tree.map(lambda a, b: jnp.sum((a - b) ** 2), member, target)
        return -sum(jax.tree.leaves(d)) + 0.01 * jax.random.normal(key)

    strategy = meta.make_strategy(meta.ESConfig(population_size=10), template)  # 10 in micro-batches of 4: 12 computed
    state = strategy.init(jax.random.key(0), template)
    fitness = []
    for k in jax.random.split(jax.random.key(1), 3):
        state, stats = meta.run_generation(strategy, state, k, fitness_fn, micro_batch=4)
        fitness.append(stats.fitness)
    mean = jax.flatten_util.ravel_pytree(strategy.mean(state))[0]
    np.savez(out_path, mean=np.asarray(mean), fitness=np.asarray(jnp.stack(fitness)))
    """
)


def _start_on_devices(num_devices, out_path):
    """Start the script above in a fresh process that sees `num_devices` CPU devices
    (JAX fixes its device count at start-up)."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={num_devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-c", _DEVICE_SCRIPT, str(num_devices), str(out_path)]
    return subprocess.Popen(command, env=env, cwd=REPO_ROOT)


def test_sharded_over_3_and_4_devices_equals_1_device(tmp_path):
    runs = {n: _start_on_devices(n, tmp_path / f"{n}.npz") for n in (1, 3, 4)}
    for process in runs.values():
        assert process.wait(timeout=120) == 0
    one, *others = (np.load(tmp_path / f"{n}.npz") for n in (1, 3, 4))
    for other in others:
        assert np.array_equal(one["fitness"], other["fitness"])
        assert np.array_equal(one["mean"], other["mean"])


# --- checkpoints --------------------------------------------------------------------


@pytest.mark.parametrize("algorithm, template_name", [("Open_ES", "drift"), ("CMA_ES", "small")])
def test_state_round_trip_continues_identically(algorithm, template_name, tmp_path):
    strategy = cached_strategy(ESConfig(algorithm=algorithm, population_size=8), template_name)
    fitness_fn = noisy_fitness if template_name == "drift" else small_fitness
    state = strategy.init(jax.random.key(0), strategy.solution_template)
    state, _ = run(strategy, state, jax.random.key(1), 2, fitness_fn)

    np.savez(tmp_path / "es.npz", **meta.state_to_arrays(state))
    with np.load(tmp_path / "es.npz") as saved:
        restored = meta.state_from_arrays(strategy, dict(saved))
    assert_trees_equal(restored, state)

    continued = run(strategy, state, jax.random.key(2), 2, fitness_fn)
    resumed = run(strategy, restored, jax.random.key(2), 2, fitness_fn)
    assert_trees_equal(continued, resumed)


def test_state_from_arrays_rejects_mismatched_checkpoint():
    strategy = cached_strategy(ESConfig(population_size=8))
    arrays = meta.state_to_arrays(strategy.init(jax.random.key(0), TEMPLATE))
    del arrays["mean"]
    with pytest.raises(ValueError, match="missing.*mean"):
        meta.state_from_arrays(strategy, arrays)


def test_plan_cuts_a_batch_into_fixed_micro_batches():
    from meta import sharding

    layout = sharding.plan(10, 4, jax.devices()[:1])
    assert (layout.micro_batch, layout.per_device, layout.padded) == (4, 3, 12)  # 10 items: 3 micro-batches of 4
    assert sharding.plan(3, 8, jax.devices()[:1]).micro_batch == 3  # never larger than the batch
    assert sharding.plan(1, 1, jax.devices()[:1]).padded == 1
    with pytest.raises(ValueError, match="micro_batch"):
        sharding.plan(4, 0)
    with pytest.raises(ValueError, match="at least one item"):
        sharding.plan(0, 4)


def _toy_strategy():
    import meta

    template = {"w": jnp.zeros((3,), jnp.float32)}
    strategy = meta.make_strategy(meta.ESConfig(population_size=4, learning_rate=0.1, sigma=0.1), template)
    return strategy, strategy.init(jax.random.key(0), template)


def test_an_all_failed_generation_changes_nothing_through_run_generation():
    import meta

    strategy, state = _toy_strategy()
    good = lambda key, member: -jnp.sum((member["w"] - 1.0) ** 2)  # noqa: E731
    state, _ = meta.run_generation(strategy, state, jax.random.key(1), good)  # a finite best to keep
    before = meta.state_to_arrays(state)
    best_before = strategy.best(state)
    state, stats = meta.run_generation(strategy, state, jax.random.key(2), lambda key, member: jnp.nan)
    assert int(stats.num_nonfinite) == 4
    after = meta.state_to_arrays(state)
    assert set(after) == set(before)
    for name in before:  # the mean, σ, Adam's moments, the generation counter behind the schedules, the best
        np.testing.assert_array_equal(after[name], before[name], err_msg=name)
    np.testing.assert_array_equal(strategy.best(state)[0]["w"], best_before[0]["w"])
    assert float(stats.best_fitness) == float(best_before[1]) and np.isfinite(float(stats.best_fitness))
    # and the run goes on from there: the next finite generation moves the mean again
    moved, _ = meta.run_generation(strategy, state, jax.random.key(3), good)
    assert not np.array_equal(np.asarray(strategy.mean(moved)["w"]), np.asarray(strategy.mean(state)["w"]))


def test_a_partly_failed_generation_still_learns_and_never_makes_a_failed_member_best():
    import meta

    strategy, state = _toy_strategy()
    flaky = lambda key, member: jnp.where(member["w"][0] > 0, jnp.inf, -jnp.sum((member["w"] - 1.0) ** 2))  # noqa: E731
    start = np.asarray(strategy.mean(state)["w"]).copy()
    state, stats = meta.run_generation(strategy, state, jax.random.key(1), flaky)
    assert 0 < int(stats.num_nonfinite) < 4
    assert not np.array_equal(np.asarray(strategy.mean(state)["w"]), start)
    best, value = strategy.best(state)
    assert np.asarray(best["w"])[0] <= 0 and np.isfinite(float(value))
