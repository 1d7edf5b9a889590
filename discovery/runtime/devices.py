"""One XLA device per usable CPU core, decided before jax is imported.

On a CPU, JAX exposes one device and XLA runs a learner's small ops on one
thread, so a batch of learners uses one core of N. XLA's
``--xla_force_host_platform_device_count=N`` (read once, when the backend
starts) gives N host devices, and :func:`discovery.runtime.learners.compile_learners`
shards every batch over them. The ``discovery`` command sets it from
``os.sched_getaffinity`` before any module that imports jax is loaded:

- ``DISCOVERY_CPU_DEVICES=N`` asks for N devices (``1``: one device, as plain JAX);
- otherwise one device per usable core, unless ``XLA_FLAGS`` already names a
  host device count or ``JAX_NUM_CPU_DEVICES`` is set (the user's choice wins);
- only on the CPU platform: ``JAX_PLATFORMS`` starting with ``cpu``, or unset
  with no accelerator plugin (CUDA, ROCm, TPU, Metal) installed.

This module must not import jax: it runs before jax is imported.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import sys
from collections.abc import MutableMapping
from pathlib import Path

from discovery.runtime.errors import UserError

ENV_VAR = "DISCOVERY_CPU_DEVICES"
MICRO_BATCH_VAR = "DISCOVERY_MICRO_BATCH"
LAYOUT_VAR = "DISCOVERY_LAYOUT"
# Learners per vmapped micro-batch unless DISCOVERY_MICRO_BATCH says otherwise (docs/PERFORMANCE.md, "Micro-batches"):
# measured on a 2-core CPU, a demo generation (256 CartPole learners) took 21.4 s at 16-32 learners per micro-batch,
# 23.6 s at 64 and 30.7 s at 128 (the whole half-population per device, as before micro-batches).
DEFAULT_MICRO_BATCH = 32
LAYOUTS = ("auto", "learners", "envs")
XLA_FLAG = "--xla_force_host_platform_device_count"
_FLAG_PATTERN = re.compile(re.escape(XLA_FLAG) + r"=\S*")
# Modules whose presence means JAX would pick an accelerator when JAX_PLATFORMS is unset.
ACCELERATOR_MODULES = (
    "jax_plugins",
    "jax_cuda12_plugin",
    "jax_cuda13_plugin",
    "jax_rocm60_plugin",
    "jax_rocm7_plugin",
    "libtpu",
)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def requested_devices(environ: MutableMapping[str, str] = os.environ) -> int | None:
    """``DISCOVERY_CPU_DEVICES`` as a positive integer, ``None`` when unset; anything else is a :class:`UserError`."""
    return _positive_int(ENV_VAR, environ.get(ENV_VAR), "the number of CPU devices; 1 = one device")


def _positive_int(name: str, text: str | None, what: str) -> int | None:
    if text is None or text.strip() == "":
        return None
    try:
        value = int(text.strip())
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"{name} must be a positive integer ({what}), got {text!r}")
    return value


def micro_batch(environ: MutableMapping[str, str] = os.environ) -> int:
    """Learners per vmapped micro-batch: ``DISCOVERY_MICRO_BATCH``, else :data:`DEFAULT_MICRO_BATCH`.

    It is part of the computation (a learner's rounding depends on the shape of
    its micro-batch), so it is recorded with every result; the device count is not.
    """
    value = _positive_int(MICRO_BATCH_VAR, environ.get(MICRO_BATCH_VAR), "learners per vmapped micro-batch")
    return DEFAULT_MICRO_BATCH if value is None else value


def layout_choice(environ: MutableMapping[str, str] = os.environ) -> str:
    """``DISCOVERY_LAYOUT``: ``auto`` (default), ``learners`` (whole learners per device) or ``envs``
    (a batch smaller than the device count splits each learner's envs over the devices)."""
    value = (environ.get(LAYOUT_VAR) or "auto").strip().lower()
    if value not in LAYOUTS:
        raise UserError(f"{LAYOUT_VAR} must be one of {', '.join(LAYOUTS)}, got {environ.get(LAYOUT_VAR)!r}")
    return value


def accelerator_plugin_installed() -> bool:
    """True when a JAX accelerator plugin is importable (then JAX's default platform may not be the CPU)."""
    for name in ACCELERATOR_MODULES:
        try:
            if importlib.util.find_spec(name) is not None:
                return True
        except (ImportError, ValueError):
            continue
    return False


def cpu_platform(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Whether JAX will run on the CPU: ``JAX_PLATFORMS`` (or the older ``JAX_PLATFORM_NAME``) starts with
    ``cpu``, or neither is set and no accelerator plugin is installed."""
    platforms = environ.get("JAX_PLATFORMS") or environ.get("JAX_PLATFORM_NAME") or ""
    if platforms.strip():
        return platforms.split(",")[0].strip().lower() == "cpu"
    return not accelerator_plugin_installed()


def configure_host_devices(environ: MutableMapping[str, str] = os.environ) -> int | None:
    """Give XLA one CPU device per usable core (or ``DISCOVERY_CPU_DEVICES``), through ``XLA_FLAGS``.

    Returns the device count written to ``XLA_FLAGS``, or ``None`` where it was
    left alone: not the CPU platform, jax already imported (too late: the
    caller chose), or the user already set a count and ``DISCOVERY_CPU_DEVICES``
    does not ask for one. A bad ``DISCOVERY_CPU_DEVICES`` raises :class:`UserError`.
    """
    requested = requested_devices(environ)
    if "jax" in sys.modules or not cpu_platform(environ):
        return None
    flags = environ.get("XLA_FLAGS", "")
    if requested is None and (XLA_FLAG in flags or environ.get("JAX_NUM_CPU_DEVICES")):
        return None
    count = requested if requested is not None else usable_cores()
    flags = _FLAG_PATTERN.sub("", flags).strip()
    environ["XLA_FLAGS"] = f"{flags} {XLA_FLAG}={count}".strip()
    environ.pop("JAX_NUM_CPU_DEVICES", None)  # it would override the flag
    return count


# The vector instruction sets XLA's CPU compiler may target; hosts that differ in them can round differently.
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_tile")


def host_cpu(cpuinfo: str | None = None) -> str:
    """The host CPU as XLA's CPU compiler sees it, e.g. ``"AMD EPYC (avx avx2 avx512bw avx512f avx512vl fma)"``.

    XLA compiles for the host's instruction set, so a learner's floating point, and with it a whole RL run,
    can differ between two hosts that differ here, while it is bit-identical on one host. ``cpuinfo`` is the
    text of ``/proc/cpuinfo`` (read when not given; elsewhere than Linux only the processor name is known).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    flags = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    name = model.group(1).strip() if model else (platform.processor() or platform.machine() or "unknown CPU")
    present = set(flags.group(1).split()) if flags else set()
    simd = sorted(present.intersection(SIMD_FLAGS))
    return f"{name} ({' '.join(simd)})" if simd else name
