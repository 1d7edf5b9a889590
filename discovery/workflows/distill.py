"""Distil a (learned) drift into closed forms by least squares.

Samples ``(r, Â, p, regime)``, targets ``d = drift(r, Â, p, regime)``:

* **grid**: ``r`` in ``[0.05, 3]`` × ``Â`` in ``[−3, 3]`` (dense, uniform), at every
  progress value in ``progress`` when the drift depends on progress (TA-LPO),
  else at ``p = 0`` only; for a regime-aware drift (RA-LPO) also at every regime
  of :data:`~discovery.reporting.drift_grid.REGIME_POINTS` (first and last epoch
  of 1, 4 and 16 epochs). Fitting a closed form without those inputs (``dpo``,
  ``dpo_poly``) fits the drift *averaged over them*; ``dpo_ra`` has them.
* **rollout** (optional, ``--env``): the ``(r, Â, p, regime)`` the drift actually sees
  when a learner trains with it: :func:`record_rollout_samples` runs one short
  training (one seed) whose drift records its inputs through
  ``jax.debug.callback`` and keeps a random subset. ``Â`` is the
  minibatch-normalised advantage the drift receives.

Each sample set gets equal total weight in the objective
``Σ w (f(r, Â) − d)²`` (so a dense grid does not drown the rollout samples).
Every family is fitted from several initialisations at once (``vmap``) with
Adam on unconstrained parameters (``log α``, ``log β``, polynomial
coefficients), and the best fit is kept. Reported per family: weighted R²
and RMSE on all samples, and R² and max |error| on each sample set.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import drift_functions
from discovery.io.configs import TrainSpec
from discovery.io.drift_registry import ResolvedDrift
from discovery.reporting.drift_grid import (
    REGIME_POINTS,
    depends_on_progress,
    depends_on_regime,
    drift_values,
    grid_points,
    regime_array,
)
from discovery.runtime.learners import compile_learners
from drift_functions import DEFAULT_REGIME, Regime
from drift_functions.closed_form import DPO_RA_INPUTS
from drift_functions.polynomial import NUM_TERMS, poly_terms
from rl_algos.ppo import SEEDS

DEFAULT_PROGRESS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclasses.dataclass
class Samples:
    """``[N]`` arrays of drift inputs, targets and weights, with the set each sample came from."""

    ratio: np.ndarray
    advantage: np.ndarray
    progress: np.ndarray
    regime: np.ndarray  # [N, 3]: epoch progress k/K, epochs K, updates N (see drift_grid.regime_array)
    target: np.ndarray
    weight: np.ndarray
    source: np.ndarray  # str per sample: "grid" or "rollout"

    def subset(self, name: str) -> Samples:
        mask = self.source == name
        return Samples(*(getattr(self, f.name)[mask] for f in dataclasses.fields(self)))

    @property
    def sources(self) -> list[str]:
        return list(dict.fromkeys(self.source.tolist()))


def grid_samples(
    resolved: ResolvedDrift, progress_values=DEFAULT_PROGRESS, num_ratio: int = 120, num_advantage: int = 61
) -> Samples:
    """The dense grid, stacked over ``progress_values`` if the drift depends on progress, and over
    :data:`REGIME_POINTS` if it depends on the regime."""
    ratio, advantage = grid_points(num_ratio, num_advantage)
    values = list(progress_values) if depends_on_progress(resolved) else [0.0]
    regimes = (
        [Regime(e, k, DEFAULT_REGIME.num_updates) for e, k in REGIME_POINTS]
        if depends_on_regime(resolved)
        else [DEFAULT_REGIME]
    )
    copies = len(values) * len(regimes)
    ratio_all = np.tile(ratio, copies)
    advantage_all = np.tile(advantage, copies)
    progress_all = np.tile(np.repeat(np.asarray(values, np.float32), ratio.size), len(regimes))
    regime_all = np.concatenate([regime_array(regime, ratio.size * len(values)) for regime in regimes])
    target = drift_values(resolved, ratio_all, advantage_all, progress_all, regime_all)
    n = ratio_all.size
    return Samples(ratio_all, advantage_all, progress_all, regime_all, target, np.full(n, 1.0 / n), np.full(n, "grid"))


def record_rollout_samples(
    spec: TrainSpec, resolved: ResolvedDrift, max_samples: int = 20_000, seed: int = 0
) -> Samples:
    """Train one seed of ``spec`` with ``resolved`` and record up to ``max_samples`` drift inputs.

    The drift is wrapped so that every call (one per minibatch) sends its
    ``(r, Â, p)`` to the host with ``jax.debug.callback``; each call keeps a
    random share, so memory stays bounded on big batches. Returns targets
    from the unwrapped drift.
    """
    config = spec.ppo
    calls = config.num_updates * config.update_epochs * config.num_minibatches
    per_call = max(1, math.ceil(2 * max_samples / max(calls, 1)))
    rng = np.random.default_rng(seed)
    kept: list[np.ndarray] = []

    def record(ratio, advantage, progress, *regime):
        ratio = np.asarray(ratio).reshape(-1)
        advantage = np.asarray(advantage).reshape(-1)
        scalars = [np.broadcast_to(np.asarray(x, np.float32), ratio.shape) for x in (progress, *regime)]
        take = rng.choice(ratio.size, size=min(per_call, ratio.size), replace=False)
        kept.append(np.stack([ratio[take], advantage[take]] + [x[take] for x in scalars], axis=1))

    inner = resolved.drift

    def apply(params, ratio, advantage, progress, log_ratio=None, regime=None):
        seen = DEFAULT_REGIME if regime is None else regime
        jax.debug.callback(record, ratio, advantage, progress, *seen)
        return inner.apply(params, ratio, advantage, progress, log_ratio=log_ratio, regime=regime)

    recording = drift_functions.Drift(inner.name, dict(inner.options), inner.init, apply)
    keys = jax.random.PRNGKey(seed)[None]  # one learner, through the one batch path
    compiled = compile_learners(config, spec.make_env(), recording, keys, resolved.params, None, SEEDS)
    jax.block_until_ready(compiled(keys, resolved.params, None))
    if not kept:
        raise RuntimeError("the recording run made no drift calls")
    data = np.concatenate(kept).astype(np.float32)
    data = data[np.all(np.isfinite(data), axis=1)]
    if data.shape[0] > max_samples:
        data = data[rng.choice(data.shape[0], size=max_samples, replace=False)]
    ratio, advantage, progress = data[:, :3].T
    regime = np.ascontiguousarray(data[:, 3:])
    target = drift_values(resolved, ratio, advantage, progress, regime)
    n = ratio.size
    return Samples(ratio, advantage, progress, regime, target, np.full(n, 1.0 / n), np.full(n, "rollout"))


def combine(*sets: Samples) -> Samples:
    """Concatenate sample sets, each normalised to total weight ``1 / len(sets)``."""
    sets = [s for s in sets if s is not None and s.ratio.size]
    parts = {f.name: [] for f in dataclasses.fields(Samples)}
    for s in sets:
        for f in dataclasses.fields(Samples):
            value = getattr(s, f.name)
            parts[f.name].append(value / value.sum() / len(sets) if f.name == "weight" else value)
    return Samples(*(np.concatenate(parts[f.name]) for f in dataclasses.fields(Samples)))


# ---- closed-form families to fit ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Family:
    """A closed form with unconstrained coordinates ``z`` for the optimiser."""

    name: str
    size: int
    to_params: Callable[[jax.Array], dict]
    from_params: Callable[[dict], np.ndarray]
    make: Callable[[dict], drift_functions.Drift]  # fitted params -> drift with matching options
    base_inits: tuple[tuple[float, ...], ...]
    # per-coordinate scales so that the optimiser sees O(1) effects (z_opt = z / scale); ones if None
    coordinate_scales: Callable[[Samples], np.ndarray] | None = None


LOG_SCALE_BOUNDS = (-9.0, 9.0)  # α, β in [1.2e-4, 8.1e3]: a fit never rounds to 0 (which DPO rejects)


def _positive(z):
    return jnp.exp(jnp.clip(z, *LOG_SCALE_BOUNDS))


def _dpo_to_params(z):
    return {"alpha": _positive(z[0]), "beta": _positive(z[1])}


def _poly_to_params(z):
    return {"alpha": _positive(z[0]), "beta": _positive(z[1]), "pos": z[2 : 2 + NUM_TERMS], "neg": z[2 + NUM_TERMS :]}


def _poly_scales(samples: Samples) -> np.ndarray:
    """1 / weighted RMS of each polynomial term on the samples: a coefficient step of 1 moves the fit by O(1)."""
    terms = np.asarray(poly_terms(jnp.asarray(samples.ratio), jnp.asarray(samples.advantage)), np.float64)
    weight = samples.weight / samples.weight.sum()
    rms = np.sqrt(np.sum(weight[:, None] * terms**2, axis=0)) + 1e-8
    return np.concatenate([[1.0, 1.0], 1.0 / rms, 1.0 / rms])


def _dpo_ra_to_params(z):
    slopes = len(DPO_RA_INPUTS)
    return {
        "alpha": _positive(z[0]),
        "beta": _positive(z[1]),
        "alpha_slopes": z[2 : 2 + slopes],
        "beta_slopes": z[2 + slopes :],
    }


def _scalar(params, key) -> float:
    return float(np.asarray(params[key]))


FAMILIES: dict[str, Family] = {
    "dpo": Family(
        "dpo",
        2,
        _dpo_to_params,
        lambda p: np.log([_scalar(p, "alpha"), _scalar(p, "beta")]),
        lambda p: drift_functions.make("dpo", alpha=_scalar(p, "alpha"), beta=_scalar(p, "beta")),
        tuple((math.log(a), math.log(b)) for a in (0.5, 2.0, 8.0) for b in (0.2, 0.6, 2.0)),
    ),
    "dpo_poly": Family(
        "dpo_poly",
        2 + 2 * NUM_TERMS,
        _poly_to_params,
        lambda p: np.concatenate(
            [np.log([_scalar(p, "alpha"), _scalar(p, "beta")]), np.asarray(p["pos"]), np.asarray(p["neg"])]
        ),
        lambda p: drift_functions.make("dpo_poly", alpha=_scalar(p, "alpha"), beta=_scalar(p, "beta")),
        tuple((math.log(a), math.log(b)) + (0.0,) * (2 * NUM_TERMS) for a, b in ((2.0, 0.6), (0.5, 0.2), (8.0, 2.0))),
        _poly_scales,
    ),
    "dpo_ra": Family(
        "dpo_ra",
        2 + 2 * len(DPO_RA_INPUTS),
        _dpo_ra_to_params,
        lambda p: np.concatenate(
            [
                np.log([_scalar(p, "alpha"), _scalar(p, "beta")]),
                np.asarray(p.get("alpha_slopes", np.zeros(len(DPO_RA_INPUTS)))),
                np.asarray(p.get("beta_slopes", np.zeros(len(DPO_RA_INPUTS)))),
            ]
        ),
        lambda p: drift_functions.make("dpo_ra", alpha=_scalar(p, "alpha"), beta=_scalar(p, "beta")),
        tuple(
            (math.log(a), math.log(b)) + (0.0,) * (2 * len(DPO_RA_INPUTS))
            for a, b in ((2.0, 0.6), (0.5, 0.2), (8.0, 2.0))
        ),
    ),
}


@dataclasses.dataclass
class Fit:
    family: str
    drift: drift_functions.Drift
    params: dict
    metrics: dict[str, Any]


def _weighted_r2(pred, target, weight) -> float:
    weight = weight / weight.sum()
    mean = np.sum(weight * target)
    total = np.sum(weight * (target - mean) ** 2)
    residual = np.sum(weight * (pred - target) ** 2)
    return float(1.0 - residual / total) if total > 0 else (1.0 if residual == 0 else float("-inf"))


def fit_metrics(drift: drift_functions.Drift, params, samples: Samples) -> dict[str, Any]:
    apply = jax.jit(lambda p, r, a, t, g: drift.apply(p, r, a, t, regime=Regime(*g.T)))
    pred = np.asarray(
        apply(
            params,
            jnp.asarray(samples.ratio),
            jnp.asarray(samples.advantage),
            jnp.asarray(samples.progress),
            jnp.asarray(samples.regime),
        )
    )
    error = pred - samples.target
    metrics: dict[str, Any] = {
        "r2": _weighted_r2(pred, samples.target, samples.weight),
        "rmse": float(np.sqrt(np.sum(samples.weight * error**2) / samples.weight.sum())),
        "max_abs_error": float(np.max(np.abs(error))),
    }
    for name in samples.sources:
        mask = samples.source == name
        metrics[f"r2_{name}"] = _weighted_r2(pred[mask], samples.target[mask], np.ones(mask.sum()))
        metrics[f"max_abs_error_{name}"] = float(np.max(np.abs(error[mask])))
        metrics[f"n_{name}"] = int(mask.sum())
    return metrics


def fit_family(family: Family, samples: Samples, extra_inits=(), steps: int = 3000, learning_rate: float = 0.05) -> Fit:
    """Weighted least squares of ``family`` to ``samples`` from every init at once.

    Each run keeps the lowest-loss point it visited (its start included), and
    the best run wins: a fit is never worse than any of its initialisations
    (so ``dpo_poly``, started from the DPO fit, is never worse than DPO).
    """
    scales = (
        np.ones(family.size)
        if family.coordinate_scales is None
        else np.asarray(family.coordinate_scales(samples), np.float64)
    )
    raw_inits = np.asarray(list(family.base_inits) + [np.asarray(z, np.float64) for z in extra_inits], np.float64)
    inits = jnp.asarray(raw_inits / scales, jnp.float32)
    scales_j = jnp.asarray(scales, jnp.float32)
    drift = drift_functions.make(family.name)
    ratio, advantage = jnp.asarray(samples.ratio), jnp.asarray(samples.advantage)
    progress = jnp.asarray(samples.progress)
    regime = Regime(*jnp.asarray(samples.regime).T)
    target, weight = jnp.asarray(samples.target), jnp.asarray(samples.weight / samples.weight.sum())

    def loss(z):
        pred = drift.apply(family.to_params(z * scales_j), ratio, advantage, progress, regime=regime)
        return jnp.sum(weight * (pred - target) ** 2)

    optimizer = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=1e-3))

    def run(z0):
        def step(carry, _):
            z, state, best_z, best_loss = carry
            value, grad = jax.value_and_grad(loss)(z)
            better = jnp.isfinite(value) & (value < best_loss)
            best_z = jnp.where(better, z, best_z)
            best_loss = jnp.where(better, value, best_loss)
            updates, state = optimizer.update(grad, state, z)
            return (optax.apply_updates(z, updates), state, best_z, best_loss), None

        carry = (z0, optimizer.init(z0), z0, jnp.asarray(jnp.inf, jnp.float32))
        (z, _, best_z, best_loss), _ = jax.lax.scan(step, carry, None, steps)
        final = loss(z)
        better = jnp.isfinite(final) & (final < best_loss)
        return jnp.where(better, z, best_z), jnp.where(better, final, best_loss)

    fit_every_init = jax.vmap(run)  # the closed-form fits from every initialisation at once
    zs, losses = jax.jit(fit_every_init)(inits)
    losses = np.where(np.isfinite(np.asarray(losses)), np.asarray(losses), np.inf)
    best = int(np.argmin(losses))
    params = jax.tree.map(lambda x: np.asarray(x, np.float32), family.to_params(zs[best] * scales_j))
    fitted = family.make(params)
    metrics = fit_metrics(fitted, params, samples)
    metrics["loss"] = float(losses[best])
    metrics["inits"] = int(len(raw_inits))
    return Fit(family.name, fitted, params, metrics)


def distill(samples: Samples, families: list[str]) -> list[Fit]:
    """Fit each family in ``families`` (``dpo`` first; ``dpo_poly`` and ``dpo_ra`` also start from the DPO fit)."""
    fits: list[Fit] = []
    for name in families:
        family = FAMILIES[name]
        extra = []
        if name == "dpo_poly":
            extra = [
                FAMILIES["dpo_poly"].from_params({**f.params, "pos": np.zeros(NUM_TERMS), "neg": np.zeros(NUM_TERMS)})
                for f in fits
                if f.family == "dpo"
            ]
        if name == "dpo_ra":  # from the DPO fit, slopes 0: never worse than it
            extra = [FAMILIES["dpo_ra"].from_params(f.params) for f in fits if f.family == "dpo"]
        fits.append(fit_family(family, samples, extra_inits=extra))
    return fits


def describe_params(params: dict) -> str:
    parts = []
    for key in sorted(params):
        value = np.asarray(params[key])
        parts.append(
            f"{key}={value.item():.4g}"
            if value.size == 1
            else f"{key}=[{', '.join(f'{v:.3g}' for v in value.reshape(-1))}]"
        )
    return ", ".join(parts)
