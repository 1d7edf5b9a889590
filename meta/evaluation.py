"""Evaluating a population of candidate solutions: one jitted, vmapped call.

The fitness function is user code that knows nothing of evolution strategies:

    fitness_fn(key, member) -> scalar fitness (higher is better)

`member` is one solution pytree (no population axis). The population is evaluated
with `jax.vmap` under `jax.jit`, optionally split into sequential chunks (to bound
memory) and optionally sharded over the devices of a 1-D mesh whose axis is named
`"population"` (to use every device: every CPU core, every accelerator, every
process's devices in a multi-process run).

Multi-process (`jax.distributed`): with a mesh over `jax.devices()`, every
process calls `evaluate_population` with the same population and key; each
evaluates only the members on its own devices, and the fitness vector is
gathered so that every process gets all of it (and its ES state stays the same).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

PyTree = Any
FitnessFn = Callable[[jax.Array, PyTree], jax.Array]

POPULATION_AXIS = "population"


def make_population_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis name `"population"` over `devices` (default: `jax.devices()`, every
    device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("make_population_mesh needs at least one device.")
    return Mesh(np.asarray(devices), (POPULATION_AXIS,))


def population_size(population: PyTree) -> int:
    """Size P of the leading (population) axis shared by every leaf of `population`."""
    sizes = {leaf.shape[0] for leaf in jax.tree.leaves(population)}
    if len(sizes) != 1:
        raise ValueError(
            f"every population leaf needs the same leading axis size; got sizes {sorted(sizes)}."
        )
    return sizes.pop()


def _is_key_batch(key: jax.Array) -> bool:
    """True for a batch of keys (one per member), False for one key shared by all members.

    Works for typed keys (`jax.random.key`: shape () or (P,)) and raw uint32 keys
    (`jax.random.PRNGKey`: shape (2,) or (P, 2)).
    """
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.ndim == 1
    return key.ndim == 2


@functools.partial(jax.jit, static_argnames=("fitness_fn", "shared_key"))
def _evaluate_batch(
    fitness_fn: FitnessFn, members: PyTree, key: jax.Array, shared_key: bool
) -> jax.Array:
    """vmap `fitness_fn` over the leading axis of `members` (and of `key` unless shared)."""
    fitness = jax.vmap(fitness_fn, in_axes=(None if shared_key else 0, 0))(key, members)
    if fitness.ndim != 1:
        raise ValueError(
            f"fitness_fn must return a scalar per member; got shape {fitness.shape[1:]}."
        )
    return fitness


def _pad_leading(x: jax.Array, num_pad: int) -> jax.Array:
    """Append `num_pad` copies of the last row of `x` (valid inputs, results dropped)."""
    if num_pad == 0:
        return x
    return jnp.concatenate([x, jnp.repeat(x[-1:], num_pad, axis=0)], axis=0)


MIN_PER_DEVICE = 2


def at_least_two_per_device(mesh: Mesh, batch: int) -> Mesh:
    """`mesh`, or (in one process) a mesh of its first `max(1, batch // 2)` devices, so that no device
    gets a batch of one.

    XLA simplifies a vmapped axis of size 1 away, and the unbatched matmuls it
    then emits round differently from the batched ones; in a chaotic inner run
    (many epochs, high learning rate) that difference grows into a different
    return. With at least two rows per device the per-learner arithmetic is the
    same as on one device, so results stay bit-identical (tested).
    """
    if not mesh.devices.size or batch // mesh.size >= MIN_PER_DEVICE or not _fully_addressable(mesh):
        return mesh
    devices = list(mesh.devices.flat)[: max(1, batch // MIN_PER_DEVICE)]
    return Mesh(np.asarray(devices), mesh.axis_names)


def _fully_addressable(mesh: Mesh) -> bool:
    return all(device.process_index == jax.process_index() for device in mesh.devices.flat)


def pad_leading(tree: PyTree, multiple: int) -> tuple[PyTree, int]:
    """Pad every leaf's leading axis to a multiple of `multiple` with copies of its last row.

    Returns `(padded, num_pad)`; the padding rows are valid inputs whose results are dropped.
    """
    size = population_size(tree)
    num_pad = -size % multiple
    return jax.tree.map(lambda x: _pad_leading(x, num_pad), tree), num_pad


def place(tree: PyTree, sharding: NamedSharding) -> PyTree:
    """Put every leaf of `tree` (the same value on every process) on `sharding`'s devices.

    Within one process this is `jax.device_put`. When the mesh spans several
    processes, each process supplies only the shards of its own devices
    (`jax.make_array_from_callback`); typed PRNG keys travel as their key data.
    """
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)

    def put(x):
        x = jnp.asarray(x)
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            data = put(jax.random.key_data(x))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, tree)


def fetch(tree: PyTree) -> PyTree:
    """Every leaf as a host numpy array holding its whole value, on every process (gathered across
    processes when a leaf's shards live on several)."""

    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(get, tree)


def _evaluate_chunk(
    fitness_fn: FitnessFn,
    members: PyTree,
    key: jax.Array,
    shared_key: bool,
    mesh: Mesh | None,
) -> jax.Array:
    """Fitness (n,) of `members` (leading axis n), sharded over `mesh` when given."""
    if mesh is None:
        return _evaluate_batch(fitness_fn, members, key, shared_key)

    n = population_size(members)
    mesh = at_least_two_per_device(mesh, n)
    members, num_pad = pad_leading(members, mesh.size)
    member_sharding = NamedSharding(mesh, PartitionSpec(POPULATION_AXIS))
    members = place(members, member_sharding)
    if shared_key:
        key = place(key, NamedSharding(mesh, PartitionSpec()))
    else:
        key = place(_pad_leading(key, num_pad), member_sharding)
    fitness = _evaluate_batch(fitness_fn, members, key, shared_key)
    # Gather to one plain host array (from every process): the ES update then runs on the
    # default device exactly as without a mesh.
    return jnp.asarray(fetch(fitness)[:n])


def evaluate_population(
    fitness_fn: FitnessFn,
    population: PyTree,
    key: jax.Array,
    *,
    mesh: Mesh | None = None,
    chunk_size: int | None = None,
) -> jax.Array:
    """Fitness of every member of a population, as one jitted vmapped call per chunk.

    Args:
        fitness_fn: `fitness_fn(key, member) -> ()`, higher is better; traced under
            `jit(vmap(...))`. It is a static argument of the jitted evaluation: pass
            the *same* function object every generation or each call recompiles.
        population: pytree whose leaves have a leading population axis, shape (P, ...).
        key: one PRNG key shared by every member (common random numbers, as in LPO:
            "all members sharing one inner seed per generation"), or a batch of P
            keys, one per member (typed (P,) or raw uint32 (P, 2)).
        mesh: optional 1-D mesh (axis `"population"`, see `make_population_mesh`).
            The population axis is sharded over its devices (of one or several
            processes; every process then gets the whole fitness vector); a population that is not
            a multiple of the device count is padded with copies of its last member
            and the padding's fitness is dropped.
        chunk_size: optional number of members per jitted call; the chunks run one
            after another (bounded memory). The result equals the unchunked one.

    Returns:
        fitness: (P,) array, exactly as `fitness_fn` returned it (NaN/inf included;
        see `meta.es.sanitize_fitness`).
    """
    size = population_size(population)
    shared_key = not _is_key_batch(key)
    if not shared_key and key.shape[0] != size:
        raise ValueError(f"got {key.shape[0]} member keys for a population of {size}.")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size}.")

    step = size if chunk_size is None else chunk_size
    chunks = []
    for start in range(0, size, step):
        members = jax.tree.map(lambda x: x[start : start + step], population)
        member_key = key if shared_key else key[start : start + step]
        chunks.append(_evaluate_chunk(fitness_fn, members, member_key, shared_key, mesh))
    return chunks[0] if len(chunks) == 1 else jnp.concatenate(chunks)
