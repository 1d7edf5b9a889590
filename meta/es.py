"""Evolution strategies over pytrees: a thin, *maximising* layer over evosax's distribution-based algorithms.

Fitness is maximised everywhere here; evosax minimises, and `_evosax_sign` is the one
place the two meet. A solution is any pytree of float arrays; a population is the same
pytree with a leading axis of size P. The ES state is evosax's (a pytree of arrays),
saved and restored with `state_to_arrays` / `state_from_arrays`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from evosax.algorithms.distribution_based import distribution_based_algorithms as _EVOSAX_ALGORITHMS
from evosax.algorithms.distribution_based.xnes import xNES
from evosax.core import fitness_shaping as _shaping
from jax.flatten_util import ravel_pytree

from meta.evaluation import FitnessFn, evaluate_population

PyTree = Any
ESState = Any  # an evosax `State` (flax struct dataclass): a pytree of arrays

# (population (P, D), fitness (P,), state, params) -> shaped fitness, in evosax's minimising convention.
FITNESS_SHAPINGS: dict[str, Callable] = {
    "centered_rank": _shaping.centered_rank_fitness_shaping_fn,  # ranks -> [-0.5, 0.5]
    "z_score": _shaping.standardize_fitness_shaping_fn,  # (f - mean) / std
    "raw": _shaping.identity_fitness_shaping_fn,
}


def _constructor_defaults(cls: type) -> dict[str, Any]:
    params = inspect.signature(cls.__init__).parameters
    return {name: p.default for name, p in params.items() if name not in ("self", "population_size", "solution")}


# Every distribution-based evosax algorithm that needs nothing but a population size and a
# solution template (RandomSearch needs a sampling_fn, SV_* a num_populations).
ALGORITHMS: dict[str, type] = {
    name: cls
    for name, cls in sorted(_EVOSAX_ALGORITHMS.items(), key=lambda kv: kv[0].lower())
    if all(d is not inspect.Parameter.empty for d in _constructor_defaults(cls).values())
}


def algorithm_class(name: str) -> type:
    """The evosax class registered as `name`; unknown names raise a ValueError listing all."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown ES algorithm {name!r}; valid names: {', '.join(ALGORITHMS)}.") from None


def _is_search_gradient(cls: type) -> bool:
    """Takes an `optimizer` and leaves fitness shaping to us (Open_ES, PGPE, ARS, ...).

    NES/CMA-style algorithms shape fitness into their own recombination weights;
    replacing that would change the algorithm.
    """
    defaults = _constructor_defaults(cls)
    return "optimizer" in defaults and defaults.get("fitness_shaping_fn") is not _shaping.weights_fitness_shaping_fn


@dataclasses.dataclass(frozen=True)
class ESConfig:
    """Evolution-strategy hyper-parameters (validated on construction).

    Search-gradient algorithms (Open_ES, PGPE, ARS, ...) step with
    `adam(max(learning_rate · decay^t, floor), b1=adam_b1)` on shaped fitness;
    `std_t = max(sigma · sigma_decay^t, sigma_floor)` where the algorithm has a σ
    schedule, else `sigma` is the initial σ (CMA_ES, SNES, xNES, ...).
    """

    algorithm: str = "Open_ES"
    population_size: int = 32
    antithetic: bool = True
    fitness_shaping: str = "centered_rank"
    learning_rate: float = 0.03
    learning_rate_decay: float = 0.999
    learning_rate_floor: float = 0.001
    sigma: float = 0.04
    sigma_decay: float = 0.999
    sigma_floor: float = 0.01
    adam_b1: float = 0.99

    def __post_init__(self):
        algorithm_class(self.algorithm)
        if self.population_size < 2:
            raise ValueError(f"population_size must be at least 2; got {self.population_size}.")
        if self.antithetic and self.population_size % 2:
            raise ValueError(
                f"antithetic sampling pairs every member x+ε with x−ε, so population_size "
                f"must be even; got {self.population_size} (use an even size or antithetic=False)."
            )
        if self.fitness_shaping not in FITNESS_SHAPINGS:
            raise ValueError(
                f"unknown fitness_shaping {self.fitness_shaping!r}; valid names: {', '.join(FITNESS_SHAPINGS)}."
            )
        for name in ("learning_rate", "sigma"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive; got {getattr(self, name)}.")
        for name in ("learning_rate_decay", "sigma_decay"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1]; got {getattr(self, name)}.")
        for name in ("learning_rate_floor", "sigma_floor"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative; got {getattr(self, name)}.")


def decay_schedule(init_value: float, decay: float, floor: float) -> optax.Schedule:
    """`t -> max(init_value * decay**t, floor)` (constant `init_value` when decay == 1)."""
    if decay == 1.0:
        # optax treats end_value as an *upper* bound when decay_rate >= 1.
        return optax.constant_schedule(init_value)
    return optax.exponential_decay(init_value=init_value, transition_steps=1, decay_rate=decay, end_value=floor)


def _evosax_sign(fitness: jax.Array) -> jax.Array:
    """THE ONE PLACE where our convention meets evosax's: we maximise, evosax minimises.

    Negation is its own inverse: ours -> evosax's in `tell`, evosax's -> ours in `best`.
    """
    return -fitness


@jax.jit
def sanitize_fitness(fitness: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`(clean, num_nonfinite)`: (P,) fitness with every NaN/±inf set to `min(finite) − 1`
    (the dtype's lowest value if none is finite), and how many were replaced."""
    fitness = jnp.asarray(fitness)
    if not jnp.issubdtype(fitness.dtype, jnp.floating):
        fitness = fitness.astype(jnp.float32)
    finite = jnp.isfinite(fitness)
    worst_finite = jnp.min(jnp.where(finite, fitness, jnp.inf))
    fill = jnp.where(jnp.any(finite), worst_finite - 1, jnp.finfo(fitness.dtype).min)
    clean = jnp.where(finite, fitness, fill.astype(fitness.dtype))
    return clean, jnp.sum(~finite).astype(jnp.int32)


def _strong(tree: PyTree) -> PyTree:
    """Drop weak types so a restored checkpoint (numpy: always strong) matches exactly."""

    def strong(x):
        x = jnp.asarray(x)
        return x.astype(x.dtype)

    return jax.tree.map(strong, tree)


def _select(condition: jax.Array, on_true: PyTree, on_false: PyTree) -> PyTree:
    """Leafwise `jnp.where(condition, on_true, on_false)` over two same-shaped pytrees."""
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), on_true, on_false)


@functools.partial(jax.jit, static_argnames=("algorithm",))
def _init(algorithm, key: jax.Array, mean: PyTree, params) -> ESState:
    flat_mean = ravel_pytree(mean)[0]
    # evosax starts best_solution at NaN; the mean keeps the state NaN-free (best_fitness
    # stays at the worst value, so the first tell replaces it).
    state = algorithm.init(key, mean, params).replace(best_solution=flat_mean)
    if type(algorithm) is xNES:  # (SNES subclasses xNES but has no B)
        # evosax 0.3.2 xNES starts B = std_init·I *and* samples mean + std·(z @ B), so its
        # initial σ would be std_init². With B = I it is std_init.
        state = state.replace(B=jnp.eye(flat_mean.size, dtype=state.B.dtype))
    return _strong(state)


@functools.partial(jax.jit, static_argnames=("algorithm",))
def _ask(algorithm, key: jax.Array, state: ESState, params) -> tuple[PyTree, ESState]:
    population, asked = algorithm.ask(key, state, params)
    return population, _strong(asked)


@functools.partial(jax.jit, static_argnames=("algorithm",))
def _tell(algorithm, key, population: PyTree, fitness: jax.Array, state: ESState, params):
    clean, num_nonfinite = sanitize_fitness(fitness)
    told, _ = algorithm.tell(key, population, _evosax_sign(clean), state, params)
    # A generation in which every member failed carries no information: skip it.
    return _select(num_nonfinite == clean.shape[0], state, _strong(told))


@dataclasses.dataclass(frozen=True, eq=False)
class Strategy:
    """An evosax algorithm bound to its params, in our maximising convention (build with `make_strategy`).

    Hashable by identity: it is a static jit argument.
    """

    config: ESConfig
    algorithm: Any
    params: Any  # evosax Params, σ already set from `config`
    solution_template: PyTree

    @property
    def population_size(self) -> int:
        return self.config.population_size

    def init(self, key: jax.Array, mean: PyTree) -> ESState:
        """Initial state centred on `mean` (a solution pytree)."""
        return _init(self.algorithm, key, mean, self.params)

    def ask(self, key: jax.Array, state: ESState) -> tuple[PyTree, ESState]:
        """A population: the solution pytree with a leading axis of size P."""
        return _ask(self.algorithm, key, state, self.params)

    def tell(self, key: jax.Array, population: PyTree, fitness: jax.Array, state: ESState) -> ESState:
        """Update from the (P,) fitness, MAXIMISED; non-finite values are sanitised, an all-failed generation is
        skipped."""
        return _tell(self.algorithm, key, population, fitness, state, self.params)

    def mean(self, state: ESState) -> PyTree:
        """The distribution mean: the current solution."""
        return self.algorithm.get_mean(state)

    def best(self, state: ESState) -> tuple[PyTree, jax.Array]:
        """Best solution seen so far and its fitness (−inf before the first tell)."""
        unravel = ravel_pytree(self.solution_template)[1]
        return unravel(state.best_solution), _evosax_sign(state.best_fitness)

    def sigma(self, state: ESState) -> jax.Array:
        """Mean σ of the search distribution (`state.std`), NaN if the algorithm has none."""
        std = getattr(state, "std", None)
        return jnp.asarray(jnp.nan) if std is None else jnp.mean(std)


def make_strategy(config: ESConfig, solution_template: PyTree) -> Strategy:
    """The evosax algorithm `config.algorithm` for solutions shaped like `solution_template`.

    Passes only what the algorithm accepts: a `std_schedule` (never evosax's constant
    1.0), antithetic sampling, and for search-gradient algorithms Adam on the decayed
    learning rate and the fitness shaping; `std_init = config.sigma` where it exists.
    """
    cls = algorithm_class(config.algorithm)
    accepted = _constructor_defaults(cls)
    kwargs: dict[str, Any] = {}
    if "std_schedule" in accepted:
        kwargs["std_schedule"] = decay_schedule(config.sigma, config.sigma_decay, config.sigma_floor)
    if "use_antithetic_sampling" in accepted:
        kwargs["use_antithetic_sampling"] = config.antithetic
    if _is_search_gradient(cls):
        learning_rate = decay_schedule(config.learning_rate, config.learning_rate_decay, config.learning_rate_floor)
        kwargs["optimizer"] = optax.adam(learning_rate, b1=config.adam_b1)
        kwargs["fitness_shaping_fn"] = FITNESS_SHAPINGS[config.fitness_shaping]
    try:
        algorithm = cls(population_size=config.population_size, solution=solution_template, **kwargs)
    except AssertionError as error:  # evosax validates with asserts (e.g. Open_ES: even P)
        raise ValueError(f"{config.algorithm}: {error}") from error
    params = algorithm.default_params
    if hasattr(params, "std_init"):
        params = params.replace(std_init=config.sigma)
    return Strategy(config, algorithm, params, solution_template)


class GenerationStats(NamedTuple):
    """What one generation produced (all jax arrays; a pytree, so they stack).

    Fitness summaries are over the finite members only (NaN when none is finite).
    """

    fitness_mean: jax.Array  # ()
    fitness_max: jax.Array  # ()
    fitness_min: jax.Array  # ()
    fitness_std: jax.Array  # ()
    num_nonfinite: jax.Array  # () int32
    sigma: jax.Array  # () mean σ the population was sampled with (NaN if none)
    best_fitness: jax.Array  # () best fitness seen so far, after this generation
    fitness: jax.Array  # (P,) fitness exactly as evaluated (may hold NaN/inf)


@jax.jit
def _fitness_summary(fitness: jax.Array) -> tuple[jax.Array, ...]:
    finite = jnp.isfinite(fitness)
    return (
        jnp.mean(fitness, where=finite),
        jnp.max(fitness, where=finite, initial=-jnp.inf),
        jnp.min(fitness, where=finite, initial=jnp.inf),
        jnp.std(fitness, where=finite),
    )


def run_generation(
    strategy: Strategy,
    state: ESState,
    key: jax.Array,
    fitness_fn: FitnessFn | None,
    *,
    devices: Sequence[jax.Device] | None = None,
    micro_batch: int | None = None,
    evaluate: Callable[[PyTree, jax.Array], jax.Array] | None = None,
) -> tuple[ESState, GenerationStats]:
    """ask → evaluate (every member with one shared key) → tell (which sanitises).

    A generation in which every member's fitness is NaN/±inf returns ``state``
    unchanged (the mean, σ, the learning-rate and σ schedules, the best member).

    `fitness_fn(key, member) -> ()` is maximised; `devices` and `micro_batch` go to
    `evaluate_population`. `evaluate(population, key) -> (P,)`, when given, replaces
    that call (a caller whose fitness is several population evaluations, e.g. one per task).
    """
    key_ask, key_eval, key_tell = jax.random.split(key, 3)
    before = state
    population, state = strategy.ask(key_ask, state)
    if evaluate is not None:
        fitness = jnp.asarray(evaluate(population, key_eval))
    else:
        fitness = evaluate_population(fitness_fn, population, key_eval, devices=devices, micro_batch=micro_batch)
    _, num_nonfinite = sanitize_fitness(fitness)
    sigma = strategy.sigma(state)
    # `tell` gets the raw fitness: it sanitises it itself, and only there can it see that every
    # member failed. Such a generation is skipped whole: mean, σ, schedules and best stay as before.
    told = strategy.tell(key_tell, population, fitness, state)
    state = _select(num_nonfinite == fitness.shape[0], before, told)
    mean, fmax, fmin, std = _fitness_summary(fitness)
    stats = GenerationStats(
        fitness_mean=mean,
        fitness_max=fmax,
        fitness_min=fmin,
        fitness_std=std,
        num_nonfinite=num_nonfinite,
        sigma=sigma,
        best_fitness=strategy.best(state)[1],
        fitness=fitness,
    )
    return state, stats


def _leaf_name(path) -> str:
    return jax.tree_util.keystr(path, simple=True, separator="/")


def state_to_arrays(state: ESState) -> dict[str, np.ndarray]:
    """The ES state as named numpy arrays (e.g. for `np.savez`); names are tree paths
    such as `"mean"`, `"std"`, `"opt_state/0/mu"`."""
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return {_leaf_name(path): np.asarray(leaf) for path, leaf in leaves}


def state_from_arrays(strategy: Strategy, arrays: dict[str, np.ndarray]) -> ESState:
    """Inverse of `state_to_arrays`: continuing from the result is bit-identical to
    continuing from the saved state. Names, shapes and dtypes are checked against
    the state structure of `strategy`."""
    template = jax.eval_shape(strategy.init, jax.random.key(0), strategy.solution_template)
    paths_and_specs, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [_leaf_name(path) for path, _ in paths_and_specs]
    if set(names) != set(arrays):
        raise ValueError(
            f"checkpoint does not match the {strategy.config.algorithm} state: "
            f"missing {sorted(set(names) - set(arrays))}, "
            f"unexpected {sorted(set(arrays) - set(names))}."
        )
    leaves = []
    for name, (_, spec) in zip(names, paths_and_specs):
        array = np.asarray(arrays[name])
        if array.shape != spec.shape or array.dtype != spec.dtype:
            raise ValueError(
                f"checkpoint leaf {name!r} has {array.dtype}{list(array.shape)}, "
                f"expected {spec.dtype}{list(spec.shape)}."
            )
        leaves.append(jnp.asarray(array))
    return jax.tree_util.tree_unflatten(treedef, leaves)
