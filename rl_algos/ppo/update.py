"""The learner's update on one batch: the PPO-family loss with a drift, the optimiser, the minibatch epochs.

Everything here is a pure function of parameters and a :class:`Batch`; :mod:`rl_algos.ppo.train` collects the
batches and drives the updates, and :mod:`rl_algos.ppo.meta_gradient` differentiates them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from drift_functions.base import Regime
from rl_algos.ppo import losses
from rl_algos.ppo.config import HParams, PPOConfig
from rl_algos.ppo.policy import Policy


@struct.dataclass
class Batch:
    obs: jax.Array  # normalised
    action: jax.Array
    log_prob: jax.Array
    advantage: jax.Array
    target: jax.Array


def ppo_loss(
    params,
    batch: Batch,
    *,
    policy: Policy,
    drift_fn: Callable,
    hparams: HParams,
    progress: jax.Array,
    normalize_advantages: bool,
    axis_name: str | None = None,
    regime: Regime | None = None,
):
    """``L = L_π + c_v · L_V − c_H · mean(entropy)``, with ``L_π`` from :func:`losses.drift_policy_loss`.

    ``drift_fn(ratio, advantage, progress, log_ratio=, regime=)`` is the drift with its parameters bound.
    ``axis_name``: the minibatch is one shard of a minibatch split over that
    mapped axis (advantages are normalised over the whole minibatch).
    """
    log_prob, entropy = policy.log_prob_entropy(params, batch.obs, batch.action)
    advantage = (
        losses.normalize_advantages(batch.advantage, axis_name=axis_name) if normalize_advantages else batch.advantage
    )
    policy_loss, aux = losses.drift_policy_loss(drift_fn, log_prob, batch.log_prob, advantage, progress, regime)
    value_loss = losses.value_loss(policy.value(params, batch.obs), batch.target)
    entropy = entropy.mean()
    total = policy_loss + hparams.vf_coef * value_loss - hparams.ent_coef * entropy
    return total, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy, **aux}


# Added under Adam's square root when the learner is differentiated (meta-gradients): d√v/dv is infinite at v = 0,
# so a parameter whose gradient is exactly 0 would otherwise turn the meta-gradient into 0 · ∞ = NaN.
DIFFERENTIABLE_EPS_ROOT = 1e-8


def make_optimizer(config: PPOConfig, hparams: HParams, eps_root: float = 0.0) -> optax.GradientTransformation:
    """Global-norm clipping then Adam's scaling; the (annealed) learning rate is applied by :func:`sgd_epochs`."""
    return optax.chain(
        optax.clip_by_global_norm(hparams.max_grad_norm),
        optax.scale_by_adam(eps=config.adam_eps, eps_root=eps_root),
    )


def sgd_epochs(
    params,
    opt_state,
    batch: Batch,
    key: jax.Array,
    *,
    config: PPOConfig,
    policy: Policy,
    optimizer: optax.GradientTransformation,
    drift_fn: Callable,
    hparams: HParams,
    learning_rate: jax.Array,
    progress: jax.Array,
    axis_name: str | None = None,
):
    """The learner's update on one batch: ``update_epochs`` shuffled passes of ``num_minibatches`` Adam steps.

    ``batch`` leaves are ``[rows, ...]`` (``rows = batch_size``, or its share
    on one device when ``axis_name`` names the mapped axis a learner is split
    over); each epoch draws a permutation of the rows and splits it into
    ``[num_minibatches, rows / num_minibatches, ...]``. With ``axis_name`` every
    device takes its own shuffled share of each minibatch, and gradients and
    diagnostics are averaged over the devices (``lax.pmean``) before Adam, so the
    parameters stay identical everywhere. Returns ``(params, opt_state, aux)``
    with every :func:`ppo_loss` diagnostic in ``aux`` shaped ``[update_epochs, num_minibatches]``.

    The drift sees a :class:`~drift_functions.base.Regime` per epoch: epoch
    progress ``k / update_epochs``, ``update_epochs`` and the lifetime ``num_updates``.
    """
    loss_fn = functools.partial(
        ppo_loss,
        policy=policy,
        drift_fn=drift_fn,
        hparams=hparams,
        progress=progress,
        normalize_advantages=config.normalize_advantages,
        axis_name=axis_name,
    )
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    rows = jax.tree.leaves(batch)[0].shape[0]
    epochs = config.update_epochs

    def minibatch_step(carry, minibatch, regime):
        params, opt_state = carry
        (_, aux), grads = grad_fn(params, minibatch, regime=regime)
        if axis_name is not None:
            grads, aux = jax.lax.pmean((grads, aux), axis_name)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, jax.tree.map(lambda u: -learning_rate * u, updates))
        return (params, opt_state), aux

    def epoch(carry, key_and_index):
        key, index = key_and_index
        permutation = jax.random.permutation(key, rows)
        shuffled = jax.tree.map(
            lambda x: x[permutation].reshape((config.num_minibatches, rows // config.num_minibatches) + x.shape[1:]),
            batch,
        )
        regime = Regime(index / epochs, float(epochs), float(config.num_updates))
        return jax.lax.scan(functools.partial(minibatch_step, regime=regime), carry, shuffled)

    (params, opt_state), aux = jax.lax.scan(
        epoch, (params, opt_state), (jax.random.split(key, epochs), jnp.arange(epochs, dtype=jnp.float32))
    )
    return params, opt_state, aux
