"""Timing and memory: every figure is the median of timed repetitions after a separate compile and warm-up."""

from __future__ import annotations

import resource
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import jax

from discovery.runtime.learners import compile_learners, plan_learners
from meta import sharding


class MemoryWatch:
    """Peak process RSS (sampled every ``interval`` s) and device peak bytes over a ``with`` block."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            import psutil

            self._process = psutil.Process()
        except ImportError:  # fall back to the process-wide high-water mark
            self._process = None

    def _rss(self) -> int:
        if self._process is not None:
            return int(self._process.memory_info().rss)
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024

    def _sample(self):
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, self._rss())
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak_rss = self._rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_rss = max(self.peak_rss, self._rss())

    def report(self) -> dict:
        return {"peak_rss_mb": self.peak_rss / 2**20, "device_peak_mb": device_peak_mb()}


def device_peak_mb() -> float | None:
    """``peak_bytes_in_use`` of the first device in MiB, or ``None`` where the backend has no stats (CPU)."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - some backends raise instead of returning None
        return None
    if not stats or "peak_bytes_in_use" not in stats:
        return None
    return stats["peak_bytes_in_use"] / 2**20


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads): the work done, whatever else the machine runs."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of ``fn()`` including ``block_until_ready`` on its result."""
    start, start_cpu = time.perf_counter(), cpu_seconds()
    jax.block_until_ready(fn())
    return time.perf_counter() - start, cpu_seconds() - start_cpu


def summarise(times: list[float], work: float, unit: str = "env_steps_per_s", cpu: list[float] | None = None) -> dict:
    """``{median_s, times_s, <unit>[, cpu_median_s, cpu_s]}`` where ``<unit> = work / median``."""
    median = statistics.median(times)
    out = {"median_s": median, "times_s": list(times), unit: work / median}
    if cpu:
        out |= {"cpu_median_s": statistics.median(cpu), "cpu_s": list(cpu)}
    return out


def jit_compile(fn) -> Callable[..., Any]:
    """``compile(*args)``: ahead-of-time ``jit`` of ``fn`` for those arguments."""
    return lambda *args: jax.jit(fn).lower(*args).compile()


def learners_compile(config, env, drift, axes=None, devices=None, micro_batch: int | None = None) -> Callable[..., Any]:
    """``compile(keys, drift_params, hparams)`` through :func:`discovery.runtime.learners.compile_learners`, as every
    workflow compiles its learners (on ``devices``, default every device; ``micro_batch``, default the runtime's)."""
    from rl_algos.ppo import SEEDS

    axes = SEEDS if axes is None else axes

    def compile(keys, drift_params, hparams):
        learners = sharding.batch_size(tuple(axes), (keys, drift_params, hparams))
        layout = plan_learners(config, learners, devices=devices, micro_batch=micro_batch)
        return compile_learners(config, env, drift, keys, drift_params, hparams, axes, layout)

    return compile


class Timed:
    """A compiled function with fixed arguments: compile it (timed), warm it up, then time calls one at a time.

    ``compile(*args_for(0))`` returns the callable that is timed.
    """

    def __init__(
        self,
        name: str,
        compile: Callable[..., Any],
        args_for: Callable[[int], tuple],
        work: float,
        unit: str = "env_steps_per_s",
    ):
        self.name, self.work, self.unit, self.args_for = name, work, unit, args_for
        self.times: list[float] = []
        self.cpu: list[float] = []
        with MemoryWatch() as memory:
            start = time.perf_counter()
            self.compiled = compile(*args_for(0))
            self.compile_s = time.perf_counter() - start
            timed(lambda: self.compiled(*args_for(0)))  # warm-up: first-call allocations, thread pools
        self.memory = memory.report()

    def run_once(self) -> float:
        seconds, cpu = timed(lambda: self.compiled(*self.args_for(len(self.times) + 1)))
        self.times.append(seconds)
        self.cpu.append(cpu)
        return seconds

    def result(self, last: int | None = None) -> dict:
        last = len(self.times) if last is None else last
        return {
            "compile_s": self.compile_s,
            **summarise(self.times[-last:], self.work, self.unit, self.cpu[-last:]),
            **self.memory,
        }
