"""Evolution strategies over arbitrary pytrees: a thin, *maximising* layer over evosax.

Conventions
-----------
- Fitness is MAXIMISED everywhere in this package (higher is better). evosax
  minimises; the one conversion between the two lives in `_evosax_sign`.
- A solution is any pytree of float arrays (e.g. drift-network weights
  `{"w_hidden": (8, 128), "w_out": (128, 1)}`); a population is the same pytree with
  a leading axis of size P on every leaf.
- Every function takes explicit PRNG keys; the same key gives bit-identical results.
- The ES state is the evosax state: a pytree of arrays (`ESState`), checkpointable with
  `state_to_arrays` / `state_from_arrays`.

One generation (`run_generation`) is

    population, state = strategy.ask(key_ask, state)          # (P, ...) pytree
    fitness = evaluate_population(fitness_fn, population, key_eval)   # (P,)
    fitness, num_nonfinite = sanitize_fitness(fitness)
    state = strategy.tell(key_tell, population, fitness, state)
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from evosax.algorithms import algorithms as _EVOSAX_ALGORITHMS
from evosax.algorithms.distribution_based.xnes import xNES
from evosax.algorithms.population_based.base import PopulationBasedAlgorithm
from evosax.core import fitness_shaping as _shaping
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh

from meta.evaluation import FitnessFn, evaluate_population

PyTree = Any
ESState = Any  # an evosax `State` (flax struct dataclass): a pytree of arrays

# Fitness shaping applied by search-gradient algorithms (see `make_strategy`).
# Signature (population (P, D), fitness (P,), state, params) -> shaped fitness (P,),
# in evosax's minimisation convention (evosax ranks low fitness as good).
FITNESS_SHAPINGS: dict[str, Callable] = {
    "centered_rank": _shaping.centered_rank_fitness_shaping_fn,  # ranks -> [-0.5, 0.5]
    "z_score": _shaping.standardize_fitness_shaping_fn,  # (f - mean) / std
    "raw": _shaping.identity_fitness_shaping_fn,
}

_OWN_ARGS = ("self", "population_size", "solution")


def _constructor_defaults(cls: type) -> dict[str, Any]:
    """Constructor arguments of an evosax algorithm class and their defaults."""
    params = inspect.signature(cls.__init__).parameters
    return {name: p.default for name, p in params.items() if name not in _OWN_ARGS}


def _constructible(cls: type) -> bool:
    """True when `cls(population_size=..., solution=...)` needs no other argument."""
    return all(d is not inspect.Parameter.empty for d in _constructor_defaults(cls).values())


# The registry: every evosax algorithm that can be built from a population size and a
# solution template alone (RandomSearch needs a sampling_fn, SV_* a num_populations).
ALGORITHMS: dict[str, type] = {
    name: cls
    for name, cls in sorted(_EVOSAX_ALGORITHMS.items(), key=lambda kv: kv[0].lower())
    if _constructible(cls)
}


def algorithm_class(name: str) -> type:
    """The evosax class registered as `name`; unknown names raise a ValueError listing all."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(
            f"unknown ES algorithm {name!r}; valid names: {', '.join(ALGORITHMS)}."
        ) from None


def _is_search_gradient(cls: type) -> bool:
    """Algorithms that step the mean along a search-gradient estimate with an optimiser.

    These take an `optimizer` argument and do not shape fitness into their own
    recombination weights (Open_ES, PGPE, ARS, ASEBO, ESMC, GuidedES, NoiseReuseES,
    PersistentES). NES/CMA-style algorithms (SNES, xNES, CMA_ES, ...) use
    `weights_fitness_shaping_fn` as part of their update rule and a natural-gradient
    step of size 1; replacing either would change the algorithm, so they keep theirs.
    """
    defaults = _constructor_defaults(cls)
    return (
        "optimizer" in defaults
        and defaults.get("fitness_shaping_fn") is not _shaping.weights_fitness_shaping_fn
    )


@dataclasses.dataclass(frozen=True)
class ESConfig:
    """Evolution-strategy hyper-parameters (validated on construction).

    `learning_rate*`, `adam_b1` and `fitness_shaping` apply to search-gradient
    algorithms (Open_ES, PGPE, ARS, ...: see `_is_search_gradient`), which get
    `optax.adam(lr_t, b1=adam_b1)` with `lr_t = max(learning_rate * decay**t, floor)`
    at generation t. `sigma*` sets `std_t = max(sigma * sigma_decay**t, sigma_floor)`
    for algorithms with a σ schedule (Open_ES, SimpleGA, ARS, ...) and the initial
    σ (`std_init`) of self-adapting ones (CMA_ES, SNES, PGPE, xNES, ...).
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
                f"unknown fitness_shaping {self.fitness_shaping!r}; "
                f"valid names: {', '.join(FITNESS_SHAPINGS)}."
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
    return optax.exponential_decay(
        init_value=init_value, transition_steps=1, decay_rate=decay, end_value=floor
    )


def _evosax_sign(fitness: jax.Array) -> jax.Array:
    """THE ONE PLACE where our convention meets evosax's: we maximise, evosax minimises.

    Negation is its own inverse, so this converts our fitness to evosax's on the way in
    (`tell`) and evosax's stored fitness back to ours on the way out (`best`).
    """
    return -fitness


@jax.jit
def sanitize_fitness(fitness: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Replace non-finite fitness (NaN, ±inf) by a value below every finite one.

    Args:
        fitness: (P,) fitness, higher is better.

    Returns:
        clean: (P,) float fitness where each non-finite entry is `min(finite) - 1`, or the
            dtype's lowest finite value when no entry is finite.
        num_nonfinite: () int32, how many entries were replaced.
    """
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


def _unevaluated(state: ESState) -> jax.Array:
    """True until a population-based state has been told its first fitness.

    `_init` marks every initial member with the worst fitness (+inf in evosax's
    minimisation), and told fitness is always finite (`sanitize_fitness`).
    """
    return state.best_fitness == _evosax_sign(-jnp.inf)


# Population-based algorithms (GAs, PSO, DE, ...) are initialised by evosax with an
# *evaluated* population. To keep one ask-first interface for every algorithm:
#   init: the mean and P−1 members scattered around it (σ = config.sigma), marked
#         unevaluated;
#   ask:  while unevaluated, returns exactly those members;
#   tell: while unevaluated, initialises the algorithm with them and their fitness.


@functools.partial(jax.jit, static_argnames=("algorithm",))
def _init(algorithm, key: jax.Array, mean: PyTree, params, sigma: float) -> ESState:
    flat_mean, unravel = ravel_pytree(mean)
    if isinstance(algorithm, PopulationBasedAlgorithm):
        key_init, key_noise = jax.random.split(key)
        z = jax.random.normal(key_noise, (algorithm.population_size, flat_mean.size))
        z = z.at[0].set(0.0)  # member 0 is the mean itself
        population = jax.vmap(unravel)(flat_mean + sigma * z.astype(flat_mean.dtype))
        worst = _evosax_sign(jnp.full((algorithm.population_size,), -jnp.inf))
        state = algorithm.init(key_init, population, worst, params)
    else:
        state = algorithm.init(key, mean, params)
        # evosax starts best_solution at NaN; the mean keeps the state NaN-free
        # (best_fitness stays at the worst value, so the first tell replaces it).
        state = state.replace(best_solution=flat_mean)
        if type(algorithm) is xNES:  # (SNES subclasses xNES but has no B)
            # evosax 0.3.2 xNES starts B = std_init·I *and* samples mean + std·(z @ B),
            # so its initial σ would be std_init². With B = I it is std_init.
            state = state.replace(B=jnp.eye(flat_mean.size, dtype=state.B.dtype))
    return _strong(state)


@functools.partial(jax.jit, static_argnames=("algorithm",))
def _ask(algorithm, key: jax.Array, state: ESState, params) -> tuple[PyTree, ESState]:
    population, asked = algorithm.ask(key, state, params)
    asked = _strong(asked)
    if isinstance(algorithm, PopulationBasedAlgorithm):
        fresh = _unevaluated(state)
        population = _select(fresh, algorithm.get_population(state), population)
        asked = _select(fresh, state, asked)
    return population, asked


@functools.partial(jax.jit, static_argnames=("algorithm",))
def _tell(algorithm, key, population: PyTree, fitness: jax.Array, state: ESState, params):
    clean, num_nonfinite = sanitize_fitness(fitness)
    evosax_fitness = _evosax_sign(clean)
    told, _ = algorithm.tell(key, population, evosax_fitness, state, params)
    told = _strong(told)
    if isinstance(algorithm, PopulationBasedAlgorithm):
        first = _strong(algorithm.init(key, population, evosax_fitness, params))
        told = _select(_unevaluated(state), first, told)
    # A generation in which every member failed carries no information: skip it.
    return _select(num_nonfinite == clean.shape[0], state, told)


@dataclasses.dataclass(frozen=True, eq=False)
class Strategy:
    """An evosax algorithm bound to its params, in our maximising convention.

    Build with `make_strategy`. Hashable by identity (it is a static jit argument).

    Attributes:
        config: the ESConfig it was built from.
        algorithm: the evosax algorithm instance.
        params: its evosax Params (σ init etc. already set from `config`).
        solution_template: a pytree with the shapes/dtypes of one solution.
    """

    config: ESConfig
    algorithm: Any
    params: Any
    solution_template: PyTree

    @property
    def population_size(self) -> int:
        return self.config.population_size

    @property
    def is_population_based(self) -> bool:
        """True for GAs/PSO/DE (state holds a population, no distribution mean)."""
        return isinstance(self.algorithm, PopulationBasedAlgorithm)

    def init(self, key: jax.Array, mean: PyTree) -> ESState:
        """Initial ES state centred on `mean` (a solution pytree)."""
        return _init(self.algorithm, key, mean, self.params, self.config.sigma)

    def ask(self, key: jax.Array, state: ESState) -> tuple[PyTree, ESState]:
        """Sample a population: a solution pytree with a leading axis of size P."""
        return _ask(self.algorithm, key, state, self.params)

    def tell(
        self, key: jax.Array, population: PyTree, fitness: jax.Array, state: ESState
    ) -> ESState:
        """Update the state from the population's fitness (P,), which is MAXIMISED.

        Non-finite fitness is sanitised (`sanitize_fitness`) first; if every member is
        non-finite the state is returned unchanged.
        """
        return _tell(self.algorithm, key, population, fitness, state, self.params)

    def mean(self, state: ESState) -> PyTree:
        """The current solution: the distribution mean, or for population-based
        algorithms the best member of the current population."""
        if self.is_population_based:
            return self.algorithm.get_best_solution(state)
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
    """Build the evosax algorithm named by `config.algorithm` for solutions shaped like
    `solution_template` (any pytree of float arrays; values are not used).

    Only constructor arguments the algorithm accepts are passed:
    - `std_schedule`: `max(sigma * sigma_decay**t, sigma_floor)` (never evosax's
      constant-1.0 default);
    - `use_antithetic_sampling`: `config.antithetic`;
    - search-gradient algorithms only: `optimizer = adam(lr schedule, b1=adam_b1)` and
      `fitness_shaping_fn` from `config.fitness_shaping`.
    Params with a `std_init` field get `std_init = config.sigma`.
    """
    cls = algorithm_class(config.algorithm)
    accepted = _constructor_defaults(cls)
    kwargs: dict[str, Any] = {}
    if "std_schedule" in accepted:
        kwargs["std_schedule"] = decay_schedule(
            config.sigma, config.sigma_decay, config.sigma_floor
        )
    if "use_antithetic_sampling" in accepted:
        kwargs["use_antithetic_sampling"] = config.antithetic
    if _is_search_gradient(cls):
        learning_rate = decay_schedule(
            config.learning_rate, config.learning_rate_decay, config.learning_rate_floor
        )
        kwargs["optimizer"] = optax.adam(learning_rate, b1=config.adam_b1)
        kwargs["fitness_shaping_fn"] = FITNESS_SHAPINGS[config.fitness_shaping]
    try:
        algorithm = cls(
            population_size=config.population_size, solution=solution_template, **kwargs
        )
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
    fitness_fn: FitnessFn,
    *,
    mesh: Mesh | None = None,
    chunk_size: int | None = None,
) -> tuple[ESState, GenerationStats]:
    """ask → evaluate → sanitize → tell.

    Args:
        strategy: from `make_strategy`.
        state: current ES state.
        key: this generation's key (split into ask / evaluation / tell keys). All
            members are evaluated with the same evaluation key.
        fitness_fn: `fitness_fn(key, member) -> ()`, MAXIMISED (see `evaluate_population`).
        mesh, chunk_size: passed to `evaluate_population`.

    Returns:
        (new state, GenerationStats)
    """
    key_ask, key_eval, key_tell = jax.random.split(key, 3)
    population, state = strategy.ask(key_ask, state)
    fitness = evaluate_population(
        fitness_fn, population, key_eval, mesh=mesh, chunk_size=chunk_size
    )
    clean, num_nonfinite = sanitize_fitness(fitness)
    sigma = strategy.sigma(state)
    state = strategy.tell(key_tell, population, clean, state)
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
