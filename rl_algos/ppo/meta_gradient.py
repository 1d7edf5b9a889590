"""Meta-gradients of a drift through the learner's own updates (truncated backpropagation, LPG-style).

A population of ``A`` inner learners ("agents") trains with the drift. One
*window* of an agent is ``K`` ordinary PPO updates followed by a fresh rollout
with the updated policy; its meta-objective is the actor-critic policy-gradient
loss of the *updated* learner on that fresh rollout:

    J(θ) = −mean_t[ log π_{φ_K(θ)}(a_t | s_t) · Â_t ] − c_H · mean_t[ H(π_{φ_K(θ)}(· | s_t)) ]

    φ_{k+1} = learn(φ_k, batch_k; θ),   k = 0 .. K−1

where θ are the drift's parameters and ``learn`` is the learner's SGD epochs
(:func:`rl_algos.ppo.train.sgd_epochs`, its Adam included). The gradient
∂J/∂θ flows back through the ``K`` updates only (truncation: φ_0 is a constant);
every rollout (observations, actions, old log-probabilities, advantages, value
targets) is data, held constant, so the environment is never differentiated.
The advantages Â of the fresh rollout are normalised over the rollout.

Agents live ``⌊N/K⌋·K`` updates (``N = num_updates`` of the task) and then
restart from fresh parameters; their ages are staggered over one lifetime, so
at every outer step the population covers early, middle and late training
(the drift sees progress ``n/N`` through its inputs).

Everything is pure: :class:`MetaGradient` holds the functions, the caller
``jit``s, differentiates and steps its own optimiser.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from envs.base import Environment
from rl_algos.ppo import losses
from rl_algos.ppo.config import HParams, PPOConfig
from rl_algos.ppo.train import Batch, TrainState, make_learner_steps


@struct.dataclass
class Agent:
    """One inner learner and where it is in its life."""

    learner: TrainState
    age: jax.Array  # int32: updates done in this life
    key: jax.Array  # for its next restart


@struct.dataclass
class WindowData:
    """What a window's learner saw, held constant by the meta-gradient: ``K`` batches and the fresh rollout."""

    batches: Batch  # leaves [K, batch_size, ...]
    raw_obs: jax.Array  # [K, ...] raw observations of each batch (for the observation normaliser)
    keys: jax.Array  # [K, 2] the learner's key after each collection (its minibatch shuffles come from it)
    fresh: Batch  # the rollout of the updated policy the meta-objective is measured on


@dataclasses.dataclass(frozen=True)
class MetaGradient:
    """The meta-gradient machinery of one task (see the module docstring).

    - ``init_agents(key, num_agents) -> Agent`` (leaves ``[A, ...]``), ages staggered over one lifetime;
    - ``window(drift_params, agent, hparams, data=None) -> (J, (agent, data, metrics))`` for *one* agent:
      restart it if its life is over, run ``K`` updates and measure ``J`` on a fresh rollout. With ``data``
      the window replays those batches instead of collecting them (the same ``J`` as a function of θ alone,
      which is what a finite-difference check needs);
    - ``objective(drift_params, agents, hparams) -> (mean J, (agents, metrics))`` over the population, ready
      for ``jax.value_and_grad(..., has_aux=True)``.
    """

    config: PPOConfig
    unroll: int
    lifetime: int  # updates per life: ⌊N/K⌋·K
    entropy_coef: float
    init_agents: Callable
    window: Callable
    objective: Callable

    @property
    def env_steps_per_window(self) -> int:
        """Env steps of one agent's window: ``K`` batches and the fresh rollout."""
        return (self.unroll + 1) * self.config.batch_size


def make_meta_gradient(
    config: PPOConfig,
    env: Environment,
    drift,
    unroll: int,
    entropy_coef: float = 0.01,
    rematerialize: bool = True,
) -> MetaGradient:
    """Build the meta-gradient functions for ``drift`` on ``env`` with ``K = unroll`` updates per window.

    ``rematerialize`` recomputes each inner update's internals in the backward pass (``jax.checkpoint``), so
    memory grows with ``K`` by one learner state per update instead of every minibatch step's activations.
    """
    if not 1 <= unroll <= config.num_updates:
        raise ValueError(
            f"unroll (K) must be between 1 and the task's {config.num_updates} updates per lifetime, got {unroll}"
        )
    steps = make_learner_steps(config, env, drift, differentiable=True)
    lifetime = (config.num_updates // unroll) * unroll

    def restart_if_done(agent: Agent) -> Agent:
        key, key_init = jax.random.split(agent.key)
        fresh = steps.init(key_init)
        done = agent.age + unroll > lifetime
        learner = jax.tree.map(lambda new, old: jnp.where(done, new, old), fresh, agent.learner)
        return Agent(learner, jnp.where(done, 0, agent.age), jnp.where(done, key, agent.key))

    def init_agents(key: jax.Array, num_agents: int) -> Agent:
        windows = lifetime // unroll
        ages = (jnp.arange(num_agents) * windows // num_agents) * unroll
        keys = jax.random.split(key, num_agents)

        def one(key, age):
            key, key_init = jax.random.split(key)
            return Agent(steps.init(key_init), jnp.asarray(age, jnp.int32), key)

        return jax.vmap(one)(keys, ages)

    def collect_constant(state: TrainState, hparams: HParams):
        """A rollout of the current policy as data: nothing of it carries a gradient."""
        collected, batch, return_sum, episodes, raw_obs = steps.collect(jax.lax.stop_gradient(state), hparams)
        # The differentiable parameters and optimiser state go on; the env and normaliser move with the data.
        state = collected.replace(params=state.params, opt_state=state.opt_state)
        return state, jax.lax.stop_gradient(batch), return_sum, episodes, jax.lax.stop_gradient(raw_obs)

    def window(drift_params, agent: Agent, hparams: HParams, data: WindowData | None = None):
        agent = restart_if_done(agent)

        def learn(state, batch, raw_obs, update_index):
            return steps.learn(state, batch, raw_obs, update_index, drift_params, hparams)

        if rematerialize:
            learn = jax.checkpoint(learn)

        def inner(state, k):
            if data is None:
                state, batch, return_sum, episodes, raw_obs = collect_constant(state, hparams)
            else:
                batch = jax.tree.map(lambda x: x[k], data.batches)
                raw_obs, return_sum, episodes = data.raw_obs[k], jnp.float32(0), jnp.int32(0)
                state = state.replace(key=data.keys[k])
            key = state.key
            state, aux = learn(state, batch, raw_obs, agent.age + k)
            return state, (batch, raw_obs, key, return_sum, episodes, aux)

        state, (batches, raw_obs, keys, return_sums, episodes, aux) = jax.lax.scan(
            inner, agent.learner, jnp.arange(unroll)
        )
        if data is None:
            state, fresh, fresh_return, fresh_episodes, _ = collect_constant(state, hparams)
        else:
            fresh, fresh_return, fresh_episodes = data.fresh, jnp.float32(0), jnp.int32(0)
        log_prob, entropy = steps.policy.log_prob_entropy(state.params, fresh.obs, fresh.action)
        advantage = losses.normalize_advantages(fresh.advantage)
        meta_loss = -jnp.mean(log_prob * advantage) - entropy_coef * jnp.mean(entropy)

        total_episodes = jnp.sum(episodes) + fresh_episodes
        total_return = jnp.sum(return_sums) + fresh_return
        metrics = {
            "episode_return": jnp.where(total_episodes > 0, total_return / jnp.maximum(total_episodes, 1), jnp.nan),
            "episodes": total_episodes,
            "age": agent.age,
            **{name: value.mean() for name, value in aux.items()},
        }
        new_agent = Agent(jax.lax.stop_gradient(state), agent.age + unroll, agent.key)
        return meta_loss, (new_agent, WindowData(batches, raw_obs, keys, fresh), metrics)

    def objective(drift_params, agents: Agent, hparams: HParams):
        def one(agent):
            meta_loss, (agent, _, metrics) = window(drift_params, agent, hparams)
            return meta_loss, (agent, metrics)

        meta_losses, (agents, metrics) = jax.vmap(one)(agents)
        return jnp.mean(meta_losses), (agents, metrics)

    return MetaGradient(config, unroll, lifetime, entropy_coef, init_agents, window, objective)


def agents_like(template: Any, arrays: list) -> Any:
    """Rebuild a pytree of agents from its leaves (a checkpoint's), in the template's structure."""
    return jax.tree.unflatten(jax.tree.structure(template), arrays)
