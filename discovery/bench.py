"""Side-by-side throughput benchmark: our PPO vs the env-only limit vs Brax's PPO, and populations.

Everything runs in one process, one measurement after another, so the ratios
(ours/brax, ours/limit, vmapped/sequential) compare like with like even on a
noisy, shared machine. Every figure is the median of ``repeats`` timed
repetitions that follow a separate compile/warm-up; compile time is reported
on its own.

What is measured, per environment case:

* ``limit``: env-only stepping with uniformly random actions: one jitted
  ``lax.scan`` over steps of ``vmap(env.step)`` on the same env, backend and
  ``num_envs`` as the learner, for the same number of env steps. No learner
  can beat it on the same machine.
* ``learner``: our SGD alone (``rl_algos.ppo.train.sgd_epochs``, the code
  ``ours`` runs) for the same number of updates on a fixed random batch of
  the same shape: no env, no rollout. ``limit`` and ``learner`` back to back
  give the *ceiling*: the throughput if everything else were free.
* ``ours``: ``jit(make_train(config, env, ppo_clip))`` on one seed, env-steps/s.
* ``brax``: ``brax.training.agents.ppo.train`` with the same env, backend,
  ``num_envs``, unroll length, batch/minibatch layout, epochs, network sizes,
  activation, observation normalisation, learning rate, γ, λ, entropy cost,
  reward scale, gradient clip and clip ε. Brax compiles inside ``train``, so
  it is run once with ``num_evals = repeats + 2``: that gives ``repeats + 1``
  training epochs of exactly our number of updates each. The first epoch
  (compile + run) is the warm-up; the others are the timed repetitions.
  Epoch times come from Brax's own ``training/walltime`` (a
  ``block_until_ready`` timer around ``training_epoch`` only), so its
  evaluations never enter the figure; with ``brax_eval_envs = 0`` (the
  CPU presets) the evaluator is switched off altogether (``run_evals=False``),
  otherwise each evaluation's time is reported separately.
* ``population``: ``P`` learners (PPO-initialised LPO drifts, perturbed like
  an ES population) trained by one ``jit(vmap(train))`` call vs the same ``P``
  learners run one after another through the single-learner compiled
  function; agent-env-steps/s. A *meta-generation* is one vmapped call over
  the population's drift parameters with one shared key (all members share
  the inner seed, as in the original LPO run), fitness included.

Peak memory: process RSS sampled every 20 ms by a background thread during
each measurement (``psutil``; ``resource.getrusage`` gives the process-wide
high-water mark), and the device's ``peak_bytes_in_use`` where the backend
reports ``memory_stats()`` (GPUs; it is a process-wide running peak).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import resource
import statistics
import threading
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import drift_functions
from discovery import configs
from discovery.progress import status
from rl_algos.ppo import HParams, PPOConfig, final_return, make_train
from rl_algos.ppo.train import Batch, Policy, make_optimizer, sgd_epochs

# ---- presets ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EnvCase:
    """One environment benchmarked as limit / ours / brax at the given settings.

    ``overrides`` are applied on top of ``configs/train/<env>.yaml`` (PPO fields
    and, for Brax, ``backend`` / ``episode_length`` / ``action_repeat``).
    ``progress`` also times ``ours`` with the progress callback switched on.
    """

    env: str
    overrides: dict
    brax: bool = True
    progress: bool = False


@dataclasses.dataclass(frozen=True)
class PopulationCase:
    """``P`` learners vmapped vs sequential for each ``P`` in ``sizes``, and one meta-generation of ``meta_size``.

    ``sequential_cap``: time at most this many sequential runs per repetition
    and scale to ``P`` (reported as ``extrapolated_from``); ``None`` runs all ``P``.
    """

    env: str
    overrides: dict
    sizes: tuple[int, ...]
    meta_size: int
    sigma: float = 0.04
    sequential_cap: int | None = None


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    description: str
    cases: tuple[EnvCase, ...]
    populations: tuple[PopulationCase, ...]
    repeats: int = 3
    brax_eval_envs: int = 0  # 0: Brax's evaluator off (run_evals=False)
    measured: str = ""  # where/whether this preset's numbers have been taken


_CARTPOLE_CASE = dict(total_timesteps=4 * 128 * 200)  # 200 updates of purejaxrl's 4 envs × 128 steps
_CARTPOLE_POPULATION = dict(total_timesteps=4 * 128 * 32)  # 32 updates per member

PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke",
        description="tiny budgets for the test suite: CartPole limit/ours (+progress), a population of 2",
        cases=(EnvCase("CartPole-v1", dict(total_timesteps=4 * 32 * 2, num_steps=32, update_epochs=1, num_minibatches=2),
                       brax=False, progress=True),),
        populations=(PopulationCase("CartPole-v1", dict(total_timesteps=4 * 32 * 2, num_steps=32, update_epochs=1, num_minibatches=2),
                                    sizes=(2,), meta_size=2),),
        repeats=3,
        measured="CPU, every test run",
    ),
    "cpu": Preset(
        name="cpu",
        description="CartPole-v1, inverted_pendulum and hopper (positional) at small budgets; CartPole populations of 1, 8, 32",
        cases=(
            EnvCase("CartPole-v1", dict(_CARTPOLE_CASE), brax=False, progress=True),
            EnvCase("inverted_pendulum", dict(backend="positional", num_envs=128, num_steps=5, rollouts_per_update=4,
                                              num_minibatches=8, total_timesteps=128 * 5 * 4 * 8)),
            EnvCase("hopper", dict(backend="positional", num_envs=128, num_steps=10, rollouts_per_update=1,
                                   num_minibatches=4, total_timesteps=128 * 10 * 8)),
        ),
        populations=(PopulationCase("CartPole-v1", dict(_CARTPOLE_POPULATION), sizes=(1, 8, 32), meta_size=32),),
        repeats=5,  # a shared 2-core host is noisy; 5 paired rounds still finish in about 7 minutes
        measured="2-core CPU (docs/PERFORMANCE.md)",
    ),
    "gpu": Preset(
        name="gpu",
        description="ant, halfcheetah, humanoid (positional) at 2,048 envs with the published layouts; CartPole and "
        "Breakout-MinAtar populations of 64-256",
        cases=(
            EnvCase("ant", dict(backend="positional", total_timesteps=2048 * 5 * 16 * 10)),
            EnvCase("halfcheetah", dict(backend="positional", total_timesteps=2048 * 20 * 8 * 5)),
            EnvCase("humanoid", dict(backend="positional", total_timesteps=2048 * 10 * 16 * 5)),
        ),
        populations=(
            PopulationCase("CartPole-v1", dict(total_timesteps=4 * 128 * 50), sizes=(1, 64, 256), meta_size=256, sequential_cap=16),
            PopulationCase("Breakout-MinAtar", dict(total_timesteps=64 * 128 * 10), sizes=(1, 64), meta_size=64, sequential_cap=8),
        ),
        repeats=3,
        brax_eval_envs=128,
        measured="not yet measured (no GPU was lent to the session that wrote it)",
    ),
}


# ---- measurement helpers ----------------------------------------------------------


class MemoryWatch:
    """Peak process RSS (sampled every ``interval`` s) and device peak bytes over a ``with`` block."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            import psutil

            self._process = psutil.Process()
        except ImportError:  # fall back to the process-wide high-water mark
            self._process = None

    def _rss(self) -> int:
        if self._process is not None:
            return int(self._process.memory_info().rss)
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024

    def _sample(self):
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self._rss())
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak_rss = self._rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, self._rss())

    def report(self) -> dict:
        return {"peak_rss_mb": self.peak_rss / 2**20, "device_peak_mb": device_peak_mb()}


def device_peak_mb() -> float | None:
    """``peak_bytes_in_use`` of the first device in MiB, or ``None`` where the backend has no stats (CPU)."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - some backends raise instead of returning None
        return None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2**20


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads): the work done, whatever else the machine runs."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of ``fn()`` including ``block_until_ready`` on its result."""
    start, start_cpu = time.perf_counter(), cpu_seconds()
    jax.block_until_ready(fn())
    return time.perf_counter() - start, cpu_seconds() - start_cpu


def summarise(times: list[float], work: float, unit: str = "env_steps_per_s", cpu: list[float] | None = None) -> dict:
    """``{median_s, times_s, <unit>[, cpu_median_s, cpu_s]}`` where ``<unit> = work / median``."""
    median = statistics.median(times)
    out = {"median_s": median, "times_s": list(times), unit: work / median}
    if cpu:
        out |= {"cpu_median_s": statistics.median(cpu), "cpu_s": list(cpu)}
    return out


# ---- the three per-environment measurements -------------------------------------


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


class Timed:
    """A compiled function with fixed arguments: compile it (timed), warm it up, then time calls one at a time."""

    def __init__(self, name: str, jitted, args_for: Callable[[int], tuple], work: float, unit: str = "env_steps_per_s"):
        self.name, self.work, self.unit, self.args_for = name, work, unit, args_for
        self.times: list[float] = []
        self.cpu: list[float] = []
        with MemoryWatch() as memory:
            start = time.perf_counter()
            self.compiled = jitted.lower(*args_for(0)).compile()
            self.compile_s = time.perf_counter() - start
            timed(lambda: self.compiled(*args_for(0)))  # warm-up: first-call allocations, thread pools
        self.memory = memory.report()

    def run_once(self) -> float:
        seconds, cpu = timed(lambda: self.compiled(*self.args_for(len(self.times) + 1)))
        self.times.append(seconds)
        self.cpu.append(cpu)
        return seconds

    def result(self, last: int | None = None) -> dict:
        last = len(self.times) if last is None else last
        return {"compile_s": self.compile_s, **summarise(self.times[-last:], self.work, self.unit, self.cpu[-last:]), **self.memory}


def limit_timer(env, config: PPOConfig) -> Timed:
    steps = config.env_steps // config.num_envs
    jitted = jax.jit(make_limit(env, config.num_envs, steps))
    return Timed("limit", jitted, lambda r: (jax.random.PRNGKey(r),), steps * config.num_envs)


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
                params, opt_state, batch, update_key, config=config, policy=policy, optimizer=optimizer,
                drift_fn=functools.partial(drift.apply, drift_params), hparams=hparams,
                learning_rate=hparams.learning_rate, progress=jnp.float32(0.0),
            )
            return (params, opt_state), aux["policy_loss"].mean()

        (params, _), losses = jax.lax.scan(update, (params, optimizer.init(params)), jax.random.split(key, config.num_updates))
        return params, losses

    return learner


def learner_timer(env, config: PPOConfig) -> Timed:
    drift = drift_functions.make("ppo_clip")
    params = drift.init(None)
    jitted = jax.jit(make_learner_floor(env, config, drift))
    return Timed("learner", jitted, lambda r: (jax.random.PRNGKey(r), params), config.env_steps)


def ours_timer(env, config: PPOConfig, progress_callback: Callable | None = None) -> Timed:
    drift = drift_functions.make("ppo_clip")
    params = drift.init(None)
    jitted = jax.jit(make_train(config, env, drift, progress_callback=progress_callback))
    name = "ours" if progress_callback is None else "ours_progress"
    return Timed(name, jitted, lambda r: (jax.random.PRNGKey(r), params), config.env_steps)


class _ProgressSink:
    """A progress callback that only records what it is given (what a real display pays at minimum)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, update_index):
        self.calls += 1
        int(np.max(np.asarray(update_index)))


_ACTIVATIONS = {"tanh": "tanh", "relu": "relu", "swish": "swish", "elu": "elu"}


def brax_kwargs(config: PPOConfig, env) -> dict:
    """``brax.training.agents.ppo.train`` arguments equivalent to our ``config`` on ``env``."""
    import flax.linen as nn
    from brax.training.agents.ppo import networks as ppo_networks

    sequences = config.num_envs * config.rollouts_per_update
    if sequences % config.num_minibatches:
        raise ValueError(
            f"Brax needs num_envs × rollouts_per_update ({sequences}) divisible by num_minibatches ({config.num_minibatches})"
        )
    network_factory = functools.partial(
        ppo_networks.make_ppo_networks,
        policy_hidden_layer_sizes=tuple(config.actor_hidden),
        value_hidden_layer_sizes=tuple(config.critic_hidden),
        activation=getattr(nn, _ACTIVATIONS[config.activation]),
        distribution_type="tanh_normal" if config.continuous_distribution == "tanh_gaussian" else "normal",
    )
    return dict(
        environment=env.brax_env,
        episode_length=env.episode_length,
        action_repeat=env.action_repeat,
        num_envs=config.num_envs,
        unroll_length=config.num_steps,
        batch_size=sequences // config.num_minibatches,
        num_minibatches=config.num_minibatches,
        num_updates_per_batch=config.update_epochs,
        normalize_observations=config.normalize_obs,
        reward_scaling=config.reward_scale,
        learning_rate=config.learning_rate,
        entropy_cost=config.ent_coef,
        discounting=config.gamma,
        gae_lambda=config.gae_lambda,
        clipping_epsilon=0.2,  # drift_functions.make("ppo_clip") default
        max_grad_norm=config.max_grad_norm,
        normalize_advantage=config.normalize_advantages,
        vf_loss_coefficient=config.vf_coef,
        network_factory=network_factory,
    )


BRAX_WARMUP_EPOCHS = 2  # Brax's pmapped training_epoch compiles on its first call and again on its second


def bench_brax(env, config: PPOConfig, repeats: int, eval_envs: int = 0, between_epochs: Callable[[], None] | None = None) -> dict:
    """Brax's PPO at our settings: ``repeats + 2`` epochs of ``config.num_updates`` updates; the first two are warm-up.

    Brax's ``training_epoch`` is compiled on its first call and recompiled on
    its second (the donated state comes back with other shardings; seen with
    ``jax_log_compiles``), so two epochs are discarded. ``between_epochs()``
    runs after every training epoch (from ``progress_fn``, outside Brax's
    epoch timer): the bench times our learner there, so that each Brax
    repetition has a paired repetition of ours under the same load.
    """
    from brax.training.agents.ppo import train as brax_ppo

    epochs = repeats + BRAX_WARMUP_EPOCHS
    calls: list[dict] = []

    def progress_fn(step, metrics):
        call = {"wall": time.perf_counter(), "cpu": cpu_seconds(),
                "metrics": {k: float(np.asarray(v)) for k, v in metrics.items() if np.size(v) == 1}}
        if between_epochs is not None and "training/walltime" in metrics:
            between_epochs()
        call |= {"wall_out": time.perf_counter(), "cpu_out": cpu_seconds()}
        calls.append(call)

    kwargs = brax_kwargs(config, env)
    with MemoryWatch() as memory:
        start, start_cpu = time.perf_counter(), cpu_seconds()
        brax_ppo.train(
            **kwargs,
            num_timesteps=epochs * config.env_steps,
            num_evals=epochs + 1,
            run_evals=eval_envs > 0,
            num_eval_envs=max(eval_envs, 1),
            progress_fn=progress_fn,
            seed=0,
        )
    initial_eval_s = None
    if eval_envs > 0:  # the first call reports the initial evaluation, before any training
        initial_eval_s = calls[0]["metrics"].get("eval/epoch_eval_time")
        calls = calls[1:]
    walltimes = [call["metrics"]["training/walltime"] for call in calls]
    epoch_s = [b - a for a, b in zip([0.0] + walltimes[:-1], walltimes)]
    if len(epoch_s) != epochs:
        raise RuntimeError(f"expected {epochs} Brax training epochs, saw {len(epoch_s)}")
    # CPU seconds from the end of one progress call to the start of the next (brax's epoch, plus its eval if on).
    epoch_cpu = [b["cpu"] - a["cpu_out"] for a, b in zip(calls[:-1], calls[1:])]
    times = epoch_s[BRAX_WARMUP_EPOCHS:]
    warm = calls[BRAX_WARMUP_EPOCHS - 1]
    outside = sum(call["wall_out"] - call["wall"] for call in calls[: BRAX_WARMUP_EPOCHS - 1])
    result = {
        # Until the warm-up epochs end: env set-up, reset compile, both training_epoch compiles, minus their runs.
        "compile_s": (warm["wall"] - start) - outside - BRAX_WARMUP_EPOCHS * statistics.median(times),
        **summarise(times, config.env_steps, cpu=epoch_cpu[BRAX_WARMUP_EPOCHS - 1 :]),
        **memory.report(),
        "method": f"training/walltime deltas of epochs {BRAX_WARMUP_EPOCHS + 1}.. (Brax's own block_until_ready timer "
        "around training_epoch); the first two compile",
    }
    if eval_envs > 0:
        result["eval_envs"] = eval_envs
        result["eval_s"] = [call["metrics"].get("eval/epoch_eval_time") for call in calls]
        result["initial_eval_s"] = initial_eval_s
    return result


# ---- populations ----------------------------------------------------------------------


def population_params(drift, size: int, sigma: float, key: jax.Array):
    """``size`` members around the drift's ``init`` (all-zero for PPO-initialised LPO): ``mean + σ·ε``."""
    mean = drift.init(key)
    leaves, treedef = jax.tree.flatten(mean)
    keys = jax.random.split(key, len(leaves))
    noisy = [m + sigma * jax.random.normal(k, (size,) + m.shape, m.dtype) for m, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, noisy)


def bench_population(case: PopulationCase, repeats: int) -> dict:
    """Vmapped vs sequential populations of each size in ``case.sizes`` (interleaved rounds), then one meta-generation."""
    spec, _ = configs.load_train_spec(case.env, dict(case.overrides))
    env, config = spec.make_env(), spec.ppo
    drift = drift_functions.make("lpo", ppo_init=True)
    train = make_train(config, env, drift)
    largest = max(max(case.sizes), case.meta_size)
    members = population_params(drift, largest, case.sigma, jax.random.PRNGKey(1))
    member = lambda tree, index: jax.tree.map(lambda x: x[index], tree)  # noqa: E731
    first = lambda tree, size: jax.tree.map(lambda x: x[:size], tree)  # noqa: E731
    member_keys = lambda r, size: jax.random.split(jax.random.PRNGKey(1000 + r), size)  # noqa: E731

    single = Timed("single", jax.jit(train), lambda r: (jax.random.PRNGKey(r), member(members, 0)), config.env_steps, "agent_steps_per_s")
    rows = []
    for size in case.sizes:
        params = first(members, size)
        vmapped = Timed("vmapped", jax.jit(jax.vmap(train)), lambda r, size=size, params=params: (member_keys(r, size), params),
                        size * config.env_steps, "agent_steps_per_s")
        runs = size if case.sequential_cap is None else min(size, case.sequential_cap)
        sequential_times, sequential_cpu = [], []
        with MemoryWatch() as memory:
            for r in range(repeats):
                vmapped.run_once()
                keys = member_keys(r + 1, size)
                start, start_cpu = time.perf_counter(), cpu_seconds()
                for index in range(runs):  # the same learners, one after another through the single-learner executable
                    jax.block_until_ready(single.compiled(keys[index], member(params, index)))
                sequential_times.append((time.perf_counter() - start) * size / runs)
                sequential_cpu.append((cpu_seconds() - start_cpu) * size / runs)
        sequential = {"compile_s": single.compile_s,
                      **summarise(sequential_times, size * config.env_steps, "agent_steps_per_s", sequential_cpu), **memory.report()}
        if runs < size:
            sequential["extrapolated_from"] = runs
        row = {"size": size, "vmapped": vmapped.result(), "sequential": sequential}
        row["vmapped_over_sequential"] = row["vmapped"]["agent_steps_per_s"] / sequential["agent_steps_per_s"]
        rows.append(row)
        status(f"  population {case.env} P={size}: vmapped {row['vmapped']['agent_steps_per_s']:,.0f}, sequential "
               f"{sequential['agent_steps_per_s']:,.0f} agent-steps/s (×{row['vmapped_over_sequential']:.2f})")

    # One meta-generation: every member's inner run from one shared key, fitness out.
    def generation(key, population):
        _, metrics = jax.vmap(train, in_axes=(None, 0))(key, population)
        return final_return(metrics, config.final_return_window)

    params = first(members, case.meta_size)
    meta_timer = Timed("meta_generation", jax.jit(generation), lambda r: (jax.random.PRNGKey(r), params),
                       case.meta_size * config.env_steps, "agent_steps_per_s")
    for _ in range(repeats):
        meta_timer.run_once()
    meta = {"size": case.meta_size, **meta_timer.result()}
    status(f"  meta-generation {case.env} P={case.meta_size}: {meta['median_s']:.2f} s")
    return {
        "env": case.env,
        "drift": "lpo:ppo_init=true",
        "sigma": case.sigma,
        "config": dataclasses.asdict(config),
        "env_steps_per_member": config.env_steps,
        "single": {"compile_s": single.compile_s, **single.memory},
        "sizes": rows,
        "meta_generation": meta,
    }


# ---- the whole run ----------------------------------------------------------------------

PARTS = ("limit", "learner", "ours", "brax", "population")


def bench_case(case: EnvCase, preset: Preset, repeats: int, parts: tuple[str, ...]) -> dict:
    """limit, ours (and ours with progress) and brax on one env, their timed repetitions interleaved.

    Each is compiled and warmed up first. Then every *round* times one call of
    each of ours/limit back to back; with Brax, a round runs after each Brax
    training epoch, so every figure's repetitions were taken under the same
    load as the others' (the machine may be shared). The first round (after
    Brax's compile epoch) is discarded; the last ``repeats`` rounds count.
    """
    spec, _ = configs.load_train_spec(case.env, dict(case.overrides))
    env, config = spec.make_env(), spec.ppo
    result: dict[str, Any] = {"env": case.env, "env_options": dict(spec.env_options), "config": dataclasses.asdict(config),
                              "env_steps": config.env_steps}
    label = f"{case.env}" + (f" ({spec.env_options.get('backend')})" if spec.env_options.get("backend") else "")
    timers: list[Timed] = []
    sink = _ProgressSink()
    if "limit" in parts:
        status(f"  {label}: compiling limit (env-only, random actions)…")
        timers.append(limit_timer(env, config))
    if "learner" in parts:
        status(f"  {label}: compiling learner (SGD alone, the floor under ours)…")
        timers.append(learner_timer(env, config))
    if "ours" in parts:
        status(f"  {label}: compiling ours…")
        timers.append(ours_timer(env, config))
        if case.progress:
            timers.append(ours_timer(env, config, progress_callback=sink))

    def one_round():
        for timer in timers:
            timer.run_once()

    if "brax" in parts and case.brax and env.family == "brax":
        status(f"  {label}: brax PPO ({repeats + BRAX_WARMUP_EPOCHS} epochs, ours/limit timed between them)…")
        result["brax"] = bench_brax(env, config, repeats, preset.brax_eval_envs, between_epochs=one_round)
    else:
        for _ in range(repeats):
            one_round()
    for timer in timers:
        result[timer.name] = timer.result(last=repeats)
    if case.progress and "ours_progress" in result:
        result["ours_progress"]["callbacks"] = sink.calls
    if "limit" in result and "learner" in result:
        # The simulator alone plus the SGD alone, back to back: the rest of a training run taken as free.
        result["ceiling_env_steps_per_s"] = 1.0 / (1.0 / result["limit"]["env_steps_per_s"] + 1.0 / result["learner"]["env_steps_per_s"])
    result["ratios"] = case_ratios(result)
    return result


def case_ratios(result: dict) -> dict:
    sps = {name: result[name]["env_steps_per_s"] for name in ("limit", "learner", "ours", "brax", "ours_progress") if name in result}
    ratios = {}
    if "ceiling_env_steps_per_s" in result:
        for name in ("ours", "brax"):
            if name in sps:
                ratios[f"{name}_over_ceiling"] = sps[name] / result["ceiling_env_steps_per_s"]
    if "ours" in sps and "brax" in sps:
        ratios["ours_over_brax"] = sps["ours"] / sps["brax"]
        ratios["ours_over_brax_cpu"] = result["brax"]["cpu_median_s"] / result["ours"]["cpu_median_s"]
        # Repetition i of ours ran right after Brax's epoch i: the median of per-pair ratios cancels slow load drifts.
        ours_times, brax_times = result["ours"]["times_s"], result["brax"]["times_s"]
        if len(ours_times) == len(brax_times):
            ratios["ours_over_brax_paired"] = statistics.median(b / o for o, b in zip(ours_times, brax_times))
    if "ours" in sps and "limit" in sps:
        ratios["ours_over_limit"] = sps["ours"] / sps["limit"]
    if "brax" in sps and "limit" in sps:
        ratios["brax_over_limit"] = sps["brax"] / sps["limit"]
    if "ours_progress" in sps:
        ratios["progress_overhead"] = 1.0 - sps["ours_progress"] / sps["ours"]
    return ratios


def run_bench(preset: Preset, repeats: int | None = None, envs_filter: tuple[str, ...] | None = None,
              parts: tuple[str, ...] = PARTS) -> dict:
    """Run every case of ``preset`` (optionally only ``envs_filter``) and return the ``bench.json`` document."""
    from discovery.outputs import environment_info

    repeats = preset.repeats if repeats is None else repeats
    started = time.time()
    cases = [c for c in preset.cases if envs_filter is None or c.env in envs_filter]
    results = []
    for case in cases:
        results.append(bench_case(case, preset, repeats, parts))
        line = ", ".join(f"{n} {results[-1][n]['env_steps_per_s']:,.0f}" for n in ("limit", "ours", "brax") if n in results[-1])
        status(f"  {case.env}: {line} env-steps/s")
    populations = []
    if "population" in parts:
        for case in preset.populations:
            if envs_filter is None or case.env in envs_filter:
                status(f"  population {case.env}: sizes {', '.join(map(str, case.sizes))}, meta-generation {case.meta_size}…")
                populations.append(bench_population(case, repeats))
    return {
        "preset": preset.name,
        "description": preset.description,
        "repeats": repeats,
        "timing": "median of the timed repetitions after a separate compile and one warm-up call; compile reported separately",
        "cases": results,
        "populations": populations,
        "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "wall_s": time.time() - started,
        "environment": environment_info(),
    }


# ---- the markdown report ------------------------------------------------------------------


def _fmt(value, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:,.{digits}f}"


def render_markdown(doc: dict) -> str:
    info = doc["environment"]
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if k in ("jax", "jaxlib", "brax", "flax", "optax", "gymnax"))
    lines = [
        f"# discovery bench — preset `{doc['preset']}`",
        "",
        f"{doc['description']}. Device: {info['device_kind']} ({info['backend']}); {versions}; python {info['python']}.",
        f"Command: `{info['command']}`. Each figure: median of {doc['repeats']} timed repetitions after a compile and a warm-up.",
        "",
        "## Throughput (env-steps/s) and ratios",
        "",
        "| env | envs × steps × rollouts | env steps | limit | learner | ceiling | ours | brax | ours/brax | paired / CPU-time |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in doc["cases"]:
        c, r = case["config"], case["ratios"]
        get = lambda name, key: case.get(name, {}).get(key)  # noqa: E731
        backend = case["env_options"].get("backend")
        lines.append(
            f"| {case['env']}{f' ({backend})' if backend else ''} | {c['num_envs']} × {c['num_steps']} × {c['rollouts_per_update']} "
            f"| {case['env_steps']:,} | {_fmt(get('limit', 'env_steps_per_s'))} | {_fmt(get('learner', 'env_steps_per_s'))} "
            f"| {_fmt(case.get('ceiling_env_steps_per_s'))} | {_fmt(get('ours', 'env_steps_per_s'))} "
            f"| {_fmt(get('brax', 'env_steps_per_s'))} | {_fmt(r.get('ours_over_brax'), 2)} "
            f"| {_fmt(r.get('ours_over_brax_paired'), 2)} / {_fmt(r.get('ours_over_brax_cpu'), 2)} |"
        )
    lines += [
        "",
        "| env | ours/ceiling | brax/ceiling | ours/limit | brax/limit | compile limit / learner / ours / brax (s) | peak RSS ours / brax (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for case in doc["cases"]:
        r = case["ratios"]
        get = lambda name, key: case.get(name, {}).get(key)  # noqa: E731
        lines.append(
            f"| {case['env']} | {_fmt(r.get('ours_over_ceiling'), 2)} | {_fmt(r.get('brax_over_ceiling'), 2)} "
            f"| {_fmt(r.get('ours_over_limit'), 2)} | {_fmt(r.get('brax_over_limit'), 2)} "
            f"| {' / '.join(_fmt(get(n, 'compile_s'), 1) for n in ('limit', 'learner', 'ours', 'brax'))} "
            f"| {_fmt(get('ours', 'peak_rss_mb'))} / {_fmt(get('brax', 'peak_rss_mb'))} |"
        )
    lines += ["", "*limit*: the simulator alone (random actions); *learner*: our SGD alone on a fixed batch (no env); "
              "*ceiling*: both back to back, `1 / (1/limit + 1/learner)`: the throughput left if the rollout's policy "
              "passes, GAE and all bookkeeping were free (approximate: the parts are separate programs, so on tiny envs "
              "such as CartPole, whose limit runs on more threads than the same steps inside a learner, ours/ceiling can exceed 1)."]
    lines += ["", "*paired*: median over rounds of Brax's epoch time ÷ ours, each of ours timed right after a Brax epoch; "
              "*CPU-time*: Brax's median process CPU seconds ÷ ours (robust to other load on the host)."]
    overheads = [(case["env"], case) for case in doc["cases"] if "ours_progress" in case]
    if overheads:
        lines += ["", "Progress callback (`jax.debug.callback` every `num_updates // 100` updates, at least 16,384 env steps apart):", ""]
        for env_name, case in overheads:
            lines.append(
                f"- {env_name}: {_fmt(case['ours_progress']['env_steps_per_s'])} env-steps/s with it vs "
                f"{_fmt(case['ours']['env_steps_per_s'])} without: overhead {100 * case['ratios']['progress_overhead']:.1f}% "
                f"({case['ours_progress']['callbacks']} callbacks over {doc['repeats'] + 1} runs)"
            )
    for pop in doc["populations"]:
        lines += [
            "",
            f"## Populations: {pop['env']}, {pop['drift']} members (σ {pop['sigma']}), {pop['env_steps_per_member']:,} env steps each",
            "",
            "| P | vmapped agent-steps/s | sequential agent-steps/s | vmapped/sequential | compile vmapped (s) | peak RSS vmapped (MB) |",
            "|---|---|---|---|---|---|",
        ]
        for row in pop["sizes"]:
            note = f" (from {row['sequential']['extrapolated_from']} runs)" if "extrapolated_from" in row["sequential"] else ""
            lines.append(
                f"| {row['size']} | {_fmt(row['vmapped']['agent_steps_per_s'])} | {_fmt(row['sequential']['agent_steps_per_s'])}{note} "
                f"| {_fmt(row['vmapped_over_sequential'], 2)} | {_fmt(row['vmapped']['compile_s'], 1)} | {_fmt(row['vmapped']['peak_rss_mb'])} |"
            )
        meta = pop["meta_generation"]
        lines += [
            "",
            f"One meta-generation (P = {meta['size']}, one shared inner key, fitness included): {meta['median_s']:.2f} s "
            f"({_fmt(meta['agent_steps_per_s'])} agent-steps/s), compile {meta['compile_s']:.1f} s, peak RSS {_fmt(meta['peak_rss_mb'])} MB.",
        ]
    lines += ["", f"Total wall time {doc['wall_s']:.0f} s; process peak RSS {doc['process_peak_rss_mb']:,.0f} MB.", ""]
    return "\n".join(lines)
