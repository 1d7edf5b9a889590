"""The measurements of one case: env-only limit, SGD-only learner floor, our learner, and populations."""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import drift_functions
import meta
from discovery.io import configs
from discovery.runtime import devices as host_devices
from discovery.runtime.learners import compile_learners, plan_learners, seed_keys
from discovery.runtime.progress import status
from discovery.workflows.bench.presets import CoresCase, PopulationCase
from discovery.workflows.bench.timing import MemoryWatch, Timed, cpu_seconds, jit_compile, learners_compile, summarise
from discovery.workflows.fitness import make_fitness_fn
from rl_algos.ppo import MEMBERS, SEEDS, HParams, PPOConfig
from rl_algos.ppo.policy import Policy
from rl_algos.ppo.train import Batch, make_optimizer, sgd_epochs


def make_limit(env, num_envs: int, num_steps: int) -> Callable[[jax.Array], jax.Array]:
    """Env-only stepping: ``num_steps`` scanned steps of ``vmap(env.step)`` with uniform random actions."""
    space = env.action_space
    params = env.default_params

    def random_action(key):
        if env.is_discrete:
            return jax.random.randint(key, (num_envs,), 0, space.num_actions)
        return jax.random.uniform(key, (num_envs,) + tuple(space.shape), minval=space.low, maxval=space.high)

    def limit(key):
        key, key_reset = jax.random.split(key)
        _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key_reset, num_envs), params)

        def step(carry, _):
            state, key = carry
            key, key_action, key_step = jax.random.split(key, 3)
            _, state, reward, _, _, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(key_step, num_envs), state, random_action(key_action), params
            )
            return (state, key), jnp.sum(reward)

        (state, _), rewards = jax.lax.scan(step, (state, key), None, num_steps)
        return state, jnp.sum(rewards)  # the whole final state, so no part of the physics is dead code

    return limit


def limit_timer(env, config: PPOConfig) -> Timed:
    steps = config.env_steps // config.num_envs
    return Timed(
        "limit",
        jit_compile(make_limit(env, config.num_envs, steps)),
        lambda r: (jax.random.PRNGKey(r),),
        steps * config.num_envs,
    )


def make_learner_floor(env, config: PPOConfig, drift) -> Callable[[jax.Array, Any], Any]:
    """Our learner's SGD alone: ``num_updates`` calls of :func:`sgd_epochs` on a fixed random batch, no env, no rollout.

    The same code, shapes, networks and optimizer as ``ours`` (``batch_size``
    rows, ``update_epochs`` × ``num_minibatches`` Adam steps per update), so
    ``limit + learner`` is the time of the two parts of a training run that no
    implementation at these settings can skip: stepping the simulator and the
    minibatch gradient steps.
    """
    policy = Policy(config, env)
    hparams = HParams.from_config(config)
    optimizer = make_optimizer(config, hparams)
    rows = config.batch_size
    action_shape = () if env.is_discrete else tuple(env.action_space.shape)

    def learner(key, drift_params):
        key_params, key_obs, key_action, key_adv, key_target, key = jax.random.split(key, 6)
        params = policy.init(key_params)
        if env.is_discrete:
            action = jax.random.randint(key_action, (rows,), 0, env.action_space.num_actions)
        else:
            action = jax.random.normal(key_action, (rows,) + action_shape)
        obs = jax.random.normal(key_obs, (rows,) + tuple(env.observation_shape))
        batch = Batch(
            obs=obs,
            action=action,
            log_prob=policy.log_prob_entropy(params, obs, action)[0],  # the behaviour policy = the initial one
            advantage=jax.random.normal(key_adv, (rows,)),
            target=jax.random.normal(key_target, (rows,)),
        )

        def update(carry, update_key):
            params, opt_state = carry
            params, opt_state, aux = sgd_epochs(
                params,
                opt_state,
                batch,
                update_key,
                config=config,
                policy=policy,
                optimizer=optimizer,
                drift_fn=functools.partial(drift.apply, drift_params),
                hparams=hparams,
                learning_rate=hparams.learning_rate,
                progress=jnp.float32(0.0),
            )
            return (params, opt_state), aux["policy_loss"].mean()

        (params, _), losses = jax.lax.scan(
            update, (params, optimizer.init(params)), jax.random.split(key, config.num_updates)
        )
        return params, losses

    return learner


def learner_timer(env, config: PPOConfig) -> Timed:
    drift = drift_functions.make("ppo_clip")
    params = drift.init(None)
    return Timed(
        "learner",
        jit_compile(make_learner_floor(env, config, drift)),
        lambda r: (jax.random.PRNGKey(r), params),
        config.env_steps,
    )


def ours_timer(env, config: PPOConfig, progress_callback: Callable | None = None) -> Timed:
    """One learner through the batched runner, exactly as ``discovery train`` runs it."""
    drift = drift_functions.make("ppo_clip")
    params, hparams = drift.init(None), HParams.from_config(config)
    name = "ours" if progress_callback is None else "ours_progress"

    def compile(keys, drift_params, hparams):
        layout = plan_learners(config, 1, allow_split=True)  # as `discovery train` runs one seed
        return compile_learners(config, env, drift, keys, drift_params, hparams, SEEDS, layout, progress_callback)

    return Timed(name, compile, lambda r: (seed_keys(r, 1), params, hparams), config.env_steps)


class ProgressSink:
    """A progress callback that only records what it is given (what a real display pays at minimum)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, update_index):
        self.calls += 1
        int(np.max(np.asarray(update_index)))


# ---- populations ----------------------------------------------------------------------


def population_params(drift, size: int, sigma: float, key: jax.Array):
    """``size`` members around the drift's ``init`` (all-zero for PPO-initialised LPO): ``mean + σ·ε``."""
    mean = drift.init(key)
    leaves, treedef = jax.tree.flatten(mean)
    keys = jax.random.split(key, len(leaves))
    noisy = [m + sigma * jax.random.normal(k, (size,) + m.shape, m.dtype) for m, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, noisy)


def bench_population(case: PopulationCase, repeats: int) -> dict:
    """Vmapped vs sequential populations of each size in ``case.sizes`` (interleaved rounds), then one
    meta-generation."""
    spec, _ = configs.load_train_spec(case.env, dict(case.overrides))
    env, config = spec.make_env(), spec.ppo
    drift = drift_functions.make("lpo", ppo_init=True)
    one_device = jax.devices()[:1]
    largest = max(max(case.sizes), case.meta_size)
    members = population_params(drift, largest, case.sigma, jax.random.PRNGKey(1))
    take = lambda tree, start, stop: jax.tree.map(lambda x: x[start:stop], tree)  # noqa: E731
    member_keys = lambda r, size: jax.random.split(jax.random.PRNGKey(1000 + r), size)  # noqa: E731

    single = Timed(
        "single",
        learners_compile(config, env, drift, MEMBERS, one_device),
        lambda r: (member_keys(r, 1), take(members, 0, 1), None),
        config.env_steps,
        "agent_steps_per_s",
    )
    rows = []
    for size in case.sizes:
        params = take(members, 0, size)
        vmapped = Timed(
            "vmapped",
            learners_compile(config, env, drift, MEMBERS, one_device, micro_batch=size),
            lambda r, size=size, params=params: (member_keys(r, size), params, None),
            size * config.env_steps,
            "agent_steps_per_s",
        )
        runs = size if case.sequential_cap is None else min(size, case.sequential_cap)
        sequential_times, sequential_cpu = [], []
        with MemoryWatch() as memory:
            for r in range(repeats):
                vmapped.run_once()
                keys = member_keys(r + 1, size)
                start, start_cpu = time.perf_counter(), cpu_seconds()
                for index in range(runs):  # the same learners, one after another through the single-learner executable
                    jax.block_until_ready(
                        single.compiled(keys[index : index + 1], take(params, index, index + 1), None)
                    )
                sequential_times.append((time.perf_counter() - start) * size / runs)
                sequential_cpu.append((cpu_seconds() - start_cpu) * size / runs)
        sequential = {
            "compile_s": single.compile_s,
            **summarise(sequential_times, size * config.env_steps, "agent_steps_per_s", sequential_cpu),
            **memory.report(),
        }
        if runs < size:
            sequential["extrapolated_from"] = runs
        row = {"size": size, "vmapped": vmapped.result(), "sequential": sequential}
        row["vmapped_over_sequential"] = row["vmapped"]["agent_steps_per_s"] / sequential["agent_steps_per_s"]
        rows.append(row)
        status(
            f"  population {case.env} P={size}: vmapped {row['vmapped']['agent_steps_per_s']:,.0f}, sequential "
            f"{sequential['agent_steps_per_s']:,.0f} agent-steps/s (×{row['vmapped_over_sequential']:.2f})"
        )

    # One meta-generation as meta-training runs it: its fitness function (one seed per member, one shared key)
    # evaluated over the population by meta.evaluate_population. Its first call compiles, so compile_s includes one run.
    fitness = make_fitness_fn([spec], drift, 1, None)

    def compile_generation(key, population):  # one device, the whole population in one vmap
        meta.evaluate_population(fitness, population, key, devices=one_device)
        return lambda key, population: meta.evaluate_population(fitness, population, key, devices=one_device)

    params = take(members, 0, case.meta_size)
    meta_timer = Timed(
        "meta_generation",
        compile_generation,
        lambda r: (jax.random.PRNGKey(r), params),
        case.meta_size * config.env_steps,
        "agent_steps_per_s",
    )
    for _ in range(repeats):
        meta_timer.run_once()
    meta_result = {"size": case.meta_size, **meta_timer.result()}
    status(f"  meta-generation {case.env} P={case.meta_size}: {meta_result['median_s']:.2f} s")
    return {
        "env": case.env,
        "drift": "lpo:ppo_init=true",
        "sigma": case.sigma,
        "config": dataclasses.asdict(config),
        "env_steps_per_member": config.env_steps,
        "single": {"compile_s": single.compile_s, **single.memory},
        "sizes": rows,
        "meta_generation": meta_result,
    }


# ---- one device vs every device -------------------------------------------------------------


def bench_cores(case: CoresCase, repeats: int) -> dict:
    """``train`` with ``case.seeds`` seeds and one meta-generation, on one device vs every device (interleaved rounds).

    Returns env-steps/s (wall and CPU time) for each, their ratio beside the
    device count, and whether the results were bit-identical.
    """
    devices = jax.devices()
    device_sets = {"one": devices[:1], "all": devices}
    spec, _ = configs.load_train_spec(case.env, dict(case.overrides))
    env, config = spec.make_env(), spec.ppo
    drift = drift_functions.make("ppo_clip")
    params, hparams = drift.init(None), HParams.from_config(config)
    train = {
        name: Timed(
            f"train_{name}",
            learners_compile(config, env, drift, SEEDS, chosen),
            lambda r: (seed_keys(r, case.seeds), params, hparams),
            case.seeds * config.env_steps,
        )
        for name, chosen in device_sets.items()
    }

    meta_spec, _ = configs.load_train_spec(case.env, {**case.overrides, **case.meta_overrides})
    lpo = drift_functions.make("lpo", ppo_init=True)
    members = population_params(lpo, case.meta_size, 0.05, jax.random.PRNGKey(1))
    fitness = make_fitness_fn([meta_spec], lpo, 1, None)
    micro_batch = max(1, host_devices.micro_batch())  # one seed per member: members per micro-batch = learners

    def generation_compiler(chosen):
        def compile_generation(key, population):
            meta.evaluate_population(fitness, population, key, devices=chosen, micro_batch=micro_batch)  # compiles
            return lambda key, population: meta.evaluate_population(
                fitness, population, key, devices=chosen, micro_batch=micro_batch
            )

        return compile_generation

    generation = {
        name: Timed(
            f"generation_{name}",
            generation_compiler(chosen),
            lambda r: (jax.random.PRNGKey(r), members),
            case.meta_size * meta_spec.ppo.env_steps,
        )
        for name, chosen in device_sets.items()
    }
    for _ in range(repeats):
        for timer in (*train.values(), *generation.values()):
            timer.run_once()

    same_train = all(
        np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(
            jax.tree.leaves(
                train["one"]
                .compiled.fetch(train["one"].compiled(seed_keys(0, case.seeds), params, hparams))
                .final_returns
            ),
            jax.tree.leaves(
                train["all"]
                .compiled.fetch(train["all"].compiled(seed_keys(0, case.seeds), params, hparams))
                .final_returns
            ),
        )
    )
    key = jax.random.PRNGKey(0)
    same_generation = bool(
        np.array_equal(
            np.asarray(generation["one"].compiled(key, members)), np.asarray(generation["all"].compiled(key, members))
        )
    )
    result = {
        "env": case.env,
        "devices": len(devices),
        "seeds": case.seeds,
        "meta_size": case.meta_size,
        "train_env_steps": config.env_steps,
        "meta_env_steps_per_member": meta_spec.ppo.env_steps,
    }
    for part, timers in (("train", train), ("meta_generation", generation)):
        one, every = timers["one"].result(), timers["all"].result()
        result[part] = {
            "one_device": one,
            "all_devices": every,
            "speedup": one["median_s"] / every["median_s"],
            "bit_identical": same_train if part == "train" else same_generation,
        }
        status(
            f"  cores {case.env} {part}: 1 device {one['env_steps_per_s']:,.0f}, {len(devices)} devices "
            f"{every['env_steps_per_s']:,.0f} env-steps/s (×{result[part]['speedup']:.2f} of at most ×{len(devices)})"
        )
    return result
