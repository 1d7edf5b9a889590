"""Brax's own PPO at our settings, timed by Brax's epoch timer (the ``brax`` column)."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable

import numpy as np

from discovery.workflows.bench.timing import MemoryWatch, cpu_seconds, summarise
from rl_algos.ppo import PPOConfig


def brax_kwargs(config: PPOConfig, env) -> dict:
    """``brax.training.agents.ppo.train`` arguments equivalent to our ``config`` on ``env``."""
    import flax.linen as nn
    from brax.training.agents.ppo import networks as ppo_networks

    sequences = config.num_envs * config.rollouts_per_update
    if sequences % config.num_minibatches:
        raise ValueError(
            f"Brax needs num_envs × rollouts_per_update ({sequences}) divisible by num_minibatches "
            f"({config.num_minibatches})"
        )
    network_factory = functools.partial(
        ppo_networks.make_ppo_networks,
        policy_hidden_layer_sizes=tuple(config.actor_hidden),
        value_hidden_layer_sizes=tuple(config.critic_hidden),
        activation=getattr(nn, config.activation),  # our activation names are flax.linen's
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


def bench_brax(
    env, config: PPOConfig, repeats: int, eval_envs: int = 0, between_epochs: Callable[[], None] | None = None
) -> dict:
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
        call = {
            "wall": time.perf_counter(),
            "cpu": cpu_seconds(),
            "metrics": {k: float(np.asarray(v)) for k, v in metrics.items() if np.size(v) == 1},
        }
        if between_epochs is not None and "training/walltime" in metrics:
            between_epochs()
        call |= {"wall_out": time.perf_counter(), "cpu_out": cpu_seconds()}
        calls.append(call)

    kwargs = brax_kwargs(config, env)
    with MemoryWatch() as memory:
        start = time.perf_counter()
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
