"""The outer loop: evolution strategies over arbitrary pytrees (maximising, on evosax).

`meta` receives a fitness function `fitness_fn(key, member) -> scalar` and knows
nothing of reinforcement learning.
"""

from meta.es import (
    ALGORITHMS,
    FITNESS_SHAPINGS,
    ESConfig,
    ESState,
    GenerationStats,
    Strategy,
    algorithm_class,
    decay_schedule,
    make_strategy,
    run_generation,
    sanitize_fitness,
    state_from_arrays,
    state_to_arrays,
)
from meta.evaluation import (
    POPULATION_AXIS,
    at_least_two_per_device,
    evaluate_population,
    fetch,
    make_population_mesh,
    pad_leading,
    place,
    population_size,
)

__all__ = [
    "ALGORITHMS",
    "FITNESS_SHAPINGS",
    "POPULATION_AXIS",
    "ESConfig",
    "ESState",
    "GenerationStats",
    "Strategy",
    "algorithm_class",
    "at_least_two_per_device",
    "decay_schedule",
    "evaluate_population",
    "fetch",
    "make_population_mesh",
    "make_strategy",
    "pad_leading",
    "place",
    "population_size",
    "run_generation",
    "sanitize_fitness",
    "state_from_arrays",
    "state_to_arrays",
]
