"""Map a per-item function over a batch, in fixed-size micro-batches spread over devices.

The one way a batch (of learners, of ES members) meets the devices. A batch
of ``B`` items is cut into micro-batches of ``m`` items (``m = min(micro_batch, B)``),
the micro-batches are dealt out to ``D`` devices, and each device runs its
share one micro-batch after another (``lax.map``) with the micro-batch
``vmap``-ed (``m = 1``: the item function itself, no ``vmap``)::

    items     [B]              padded with copies of the last item to D·k·m
    layout    [D, k, m]        D devices × k micro-batches each × m items
    per device  lax.map over k of vmap over m of fn

Every device therefore compiles and runs the *same* program on the same
shapes whatever ``D`` is; only which device runs which micro-batch changes.
That is what makes results identical on 1, 2, 4 or 8 devices, and over
several processes: XLA's CPU kernels round differently at different batch
shapes (a ``vmap`` of 128 items against one of 64), never at different
placements. ``m`` is part of the computation, ``D`` is not: a result depends
on the items, on ``fn`` and on ``m``, never on the device count.

Multi-process (``jax.distributed``): the mesh spans every process's devices;
every process passes the same whole batch, supplies the shards of its own
devices, and :meth:`CompiledMap.fetch` gathers the outputs on every process.
This module knows nothing of reinforcement learning.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

PyTree = Any

BATCH_AXIS = "batch"  # the one mesh axis that batches of items are sharded over


def batch_size(in_axes: Sequence[int | None], args: Sequence[PyTree]) -> int:
    """``B``: the common leading axis of the arguments that ``in_axes`` batches (``0``) ."""
    sizes = {leaf.shape[0] for axis, arg in zip(in_axes, args) if axis is not None for leaf in jax.tree.leaves(arg)}
    if len(sizes) != 1:
        raise ValueError(f"batched arguments need one common leading axis, got sizes {sorted(sizes)}")
    return sizes.pop()


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where ``size`` items run: ``micro_batch`` items per ``vmap``, ``per_device`` micro-batches on each device."""

    size: int
    micro_batch: int
    per_device: int
    mesh: Mesh

    @property
    def devices(self) -> int:
        return self.mesh.size

    @property
    def padded(self) -> int:
        """Items actually computed: ``devices × per_device × micro_batch`` (the extra ones are copies)."""
        return self.devices * self.per_device * self.micro_batch

    def describe(self) -> dict:
        """The layout as plain values, for ``results.json`` and logs."""
        processes = len({device.process_index for device in self.mesh.devices.flat})
        return {
            "kind": "items",
            "items": self.size,
            "micro_batch": self.micro_batch,
            "devices": self.devices,
            "processes": processes,
            "micro_batches_per_device": self.per_device,
            "padded_items": self.padded,
        }


def plan(size: int, micro_batch: int, devices: Sequence[jax.Device] | None = None) -> Layout:
    """The layout of ``size`` items in micro-batches of ``min(micro_batch, size)`` over ``devices``.

    ``devices`` defaults to every device of every process. In one process, a
    batch with fewer micro-batches than devices uses only as many devices as
    it has micro-batches (the others would only compute copies); a mesh that
    spans processes keeps every device, since every process must take part.
    """
    if size < 1:
        raise ValueError(f"a batch needs at least one item, got {size}")
    if micro_batch < 1:
        raise ValueError(f"micro_batch must be a positive integer, got {micro_batch}")
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("plan needs at least one device")
    m = min(micro_batch, size)
    chunks = math.ceil(size / m)
    local = all(device.process_index == jax.process_index() for device in devices)
    if local:
        devices = devices[: min(len(devices), chunks)]
    return Layout(size, m, math.ceil(chunks / len(devices)), Mesh(np.asarray(devices), (BATCH_AXIS,)))


def pad_leading(tree: PyTree, size: int) -> PyTree:
    """Every leaf's leading axis extended to ``size`` with copies of its last row (valid inputs, results dropped)."""

    def pad(x):
        missing = size - x.shape[0]
        if missing == 0:
            return x
        return jnp.concatenate([x, jnp.repeat(x[-1:], missing, axis=0)], axis=0)

    return jax.tree.map(pad, tree)


def place(tree: PyTree, sharding: NamedSharding) -> PyTree:
    """Put every leaf of ``tree`` (the same value on every process) on ``sharding``'s devices.

    Within one process this is ``jax.device_put``. When the mesh spans several
    processes, each process supplies only the shards of its own devices
    (``jax.make_array_from_callback``); typed PRNG keys travel as their key data.
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


def _per_device_program(fn: Callable, in_axes: tuple[int | None, ...], micro_batch: int) -> Callable:
    """The program each device runs on its ``[k, m, ...]`` (``m = 1``: ``[k, ...]``) share of the batch."""
    item_fn = fn if micro_batch == 1 else jax.vmap(fn, in_axes=in_axes)

    def program(*args):
        batched = tuple(arg if axis is not None else None for axis, arg in zip(in_axes, args))
        shared = tuple(arg if axis is None else None for axis, arg in zip(in_axes, args))

        def one_micro_batch(chunk):
            merged = tuple(c if axis is not None else s for axis, c, s in zip(in_axes, chunk, shared))
            return item_fn(*merged)

        return jax.lax.map(one_micro_batch, batched)

    return program


@dataclasses.dataclass
class CompiledMap:
    """``fn`` mapped over a batch with ``layout``, compiled: call it with the whole batch.

    ``__call__(*args)`` pads the batched arguments to ``layout.padded`` items,
    lays them out ``[devices·per_device, m, ...]``, places them on the mesh
    (shared arguments replicated) and returns the device-resident output,
    leaves ``[padded, ...]``; :meth:`fetch` gives host arrays of the ``size`` real items.
    """

    executable: Any
    in_axes: tuple[int | None, ...]
    layout: Layout

    def place(self, *args):
        layout = self.layout
        batched = NamedSharding(layout.mesh, PartitionSpec(BATCH_AXIS))
        shared = NamedSharding(layout.mesh, PartitionSpec())
        placed = []
        for axis, arg in zip(self.in_axes, args):
            if arg is None:
                placed.append(None)
            elif axis is None:
                placed.append(place(arg, shared))
            else:
                rows = jax.tree.map(lambda x: _chunk(x, layout), pad_leading(arg, layout.padded))
                placed.append(place(rows, batched))
        return tuple(placed)

    def __call__(self, *args):
        return self.executable(*self.place(*args))

    def fetch(self, output) -> PyTree:
        """The output as host numpy arrays of the ``size`` real items (gathered from every process)."""
        return jax.tree.map(lambda x: x[: self.layout.size], fetch(output))


def _chunk(x: jax.Array, layout: Layout) -> jax.Array:
    """``[padded, ...] -> [devices·per_device, m, ...]`` (``m = 1``: unchanged)."""
    if layout.micro_batch == 1:
        return x
    return x.reshape((layout.devices * layout.per_device, layout.micro_batch) + x.shape[1:])


def _unchunk(x: jax.Array, layout: Layout) -> jax.Array:
    if layout.micro_batch == 1:
        return x
    return x.reshape((layout.padded,) + x.shape[2:])


def map_fn(fn: Callable, in_axes: Sequence[int | None], layout: Layout) -> Callable:
    """The jittable whole-batch function: ``[D·k(, m), ...]`` arguments in, ``[padded, ...]`` outputs out."""
    in_axes = tuple(in_axes)
    program = _per_device_program(fn, in_axes, layout.micro_batch)
    specs = tuple(PartitionSpec(BATCH_AXIS) if axis is not None else PartitionSpec() for axis in in_axes)
    sharded = jax.shard_map(
        program, mesh=layout.mesh, in_specs=specs, out_specs=PartitionSpec(BATCH_AXIS), check_vma=False
    )

    def whole(*args):
        return jax.tree.map(lambda x: _unchunk(x, layout), sharded(*args))

    return whole


def compile_map(fn: Callable, in_axes: Sequence[int | None], args: Sequence[PyTree], layout: Layout) -> CompiledMap:
    """Ahead-of-time compile ``fn`` (one item) mapped over the batch ``args`` with ``layout``.

    ``in_axes[i]`` is ``0`` where argument ``i`` carries the batch axis and
    ``None`` where all items share it; a ``None`` argument stays ``None``.
    """
    in_axes = tuple(in_axes)
    shape = CompiledMap(None, in_axes, layout)
    placed = shape.place(*args)
    out_sharding = NamedSharding(layout.mesh, PartitionSpec(BATCH_AXIS))
    executable = jax.jit(map_fn(fn, in_axes, layout), out_shardings=out_sharding).lower(*placed).compile()
    return dataclasses.replace(shape, executable=executable)
