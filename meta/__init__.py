"""The outer loop: evolution strategies over arbitrary pytrees (maximising, on evosax).

`meta` receives a fitness function `fitness_fn(key, member) -> scalar` and knows
nothing of reinforcement learning.
"""

from meta import sharding
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
from meta.evaluation import evaluate_population, population_size

__all__ = [
    "ALGORITHMS",
    "FITNESS_SHAPINGS",
    "ESConfig",
    "ESState",
    "GenerationStats",
    "Strategy",
    "algorithm_class",
    "decay_schedule",
    "evaluate_population",
    "make_strategy",
    "population_size",
    "run_generation",
    "sharding",
    "sanitize_fitness",
    "state_from_arrays",
    "state_to_arrays",
]
