"""Evaluating a population of candidate solutions: one compiled, sharded call.

The fitness function is user code that knows nothing of evolution strategies:

    fitness_fn(key, member) -> scalar fitness (higher is better)

`member` is one solution pytree (no population axis). The population runs
through :mod:`meta.sharding`: micro-batches of `micro_batch` members are
`vmap`-ed, and dealt out over the devices of every process, each device
running its micro-batches one after another. Every device runs the same
program on the same shapes, so the fitness vector is the same on 1 or 8
devices, in one process or several (each process then evaluates the members
on its own devices, and every process gets the whole vector, so its ES state
stays the same).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from meta import sharding

PyTree = Any
FitnessFn = Callable[[jax.Array, PyTree], jax.Array]


def population_size(population: PyTree) -> int:
    """Size P of the leading (population) axis shared by every leaf of `population`."""
    sizes = {leaf.shape[0] for leaf in jax.tree.leaves(population)}
    if len(sizes) != 1:
        raise ValueError(f"every population leaf needs the same leading axis size; got sizes {sorted(sizes)}.")
    return sizes.pop()


def _is_key_batch(key: jax.Array) -> bool:
    """True for a batch of keys (one per member), False for one key shared by all members.

    Works for typed keys (`jax.random.key`: shape () or (P,)) and raw uint32 keys
    (`jax.random.PRNGKey`: shape (2,) or (P, 2)).
    """
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.ndim == 1
    return key.ndim == 2


@functools.lru_cache(maxsize=32)
def _compiled(fitness_fn: FitnessFn, layout: sharding.Layout, shared_key: bool) -> Callable:
    """The jitted whole-population call for one layout (cached: the same function every generation)."""
    program = sharding.map_fn(fitness_fn, (None if shared_key else 0, 0), layout)
    return jax.jit(program)


def evaluate_population(
    fitness_fn: FitnessFn,
    population: PyTree,
    key: jax.Array,
    *,
    devices: Sequence[jax.Device] | None = None,
    micro_batch: int | None = None,
) -> jax.Array:
    """Fitness of every member of a population.

    Args:
        fitness_fn: `fitness_fn(key, member) -> ()`, higher is better; traced under
            `vmap`. Pass the *same* function object every generation, or each call recompiles.
        population: pytree whose leaves have a leading population axis, shape (P, ...).
        key: one PRNG key shared by every member (common random numbers, as in LPO:
            "all members sharing one inner seed per generation"), or a batch of P
            keys, one per member (typed (P,) or raw uint32 (P, 2)).
        devices: the devices to spread the population over (default: every device
            of every process). A population that does not fill them is padded with
            copies of its last member, whose fitness is dropped.
        micro_batch: members per `vmap` (default: the whole population, bounded
            by nothing but memory). Members run in micro-batches one after
            another on each device, so a smaller one bounds memory. It is part of
            the arithmetic (rounding depends on the vmapped shape); the device count is not.

    Returns:
        fitness: (P,) array, exactly as `fitness_fn` returned it (NaN/inf included;
        see `meta.es.sanitize_fitness`).
    """
    size = population_size(population)
    shared_key = not _is_key_batch(key)
    if not shared_key and key.shape[0] != size:
        raise ValueError(f"got {key.shape[0]} member keys for a population of {size}.")
    if micro_batch is not None and micro_batch < 1:
        raise ValueError(f"micro_batch must be a positive integer; got {micro_batch}.")
    layout = sharding.plan(size, size if micro_batch is None else micro_batch, devices)
    mapped = sharding.CompiledMap(_compiled(fitness_fn, layout, shared_key), (None if shared_key else 0, 0), layout)
    fitness = mapped.fetch(mapped(key, population))
    if fitness.ndim != 1:
        raise ValueError(f"fitness_fn must return a scalar per member; got shape {fitness.shape[1:]}.")
    # A plain host array (gathered from every process): the ES update then runs on the default device.
    return jnp.asarray(fitness)
