"""Progress display for long jitted runs.

The compiled training loop calls :meth:`TrainingProgress.callback` every few
updates through ``jax.debug.callback`` (the only host interaction in the loop);
the bar shows updates, env-steps/s and ETA. ``rich`` draws it when stderr is a
terminal and falls back to sparse log lines otherwise (CI logs stay short).
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def status(message: str) -> None:
    """One line of progress information on stderr."""
    console.print(message, highlight=False, soft_wrap=True)


def make_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )


class TrainingProgress:
    """Tracks one jitted run of ``total_updates`` updates of ``steps_per_update`` env steps (all seeds)."""

    def __init__(self, description: str, total_updates: int, steps_per_update: int, progress: Progress | None = None):
        self.total_updates = total_updates
        self.steps_per_update = steps_per_update
        self._owned = progress is None
        self.progress = progress or make_progress()
        self.task = self.progress.add_task(description, total=total_updates, rate="", start=False)
        self.description = description
        self._lock = threading.Lock()
        self._done = 0
        self._start = None
        self._last_log = 0.0

    def __enter__(self):
        if self._owned:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self._owned:
            self.progress.stop()

    def start(self):
        self._start = time.perf_counter()
        self.progress.start_task(self.task)

    def callback(self, update_index) -> None:
        done = int(np.max(np.asarray(update_index)))
        with self._lock:
            if done <= self._done:
                return
            self._done = done
            elapsed = max(time.perf_counter() - (self._start or time.perf_counter()), 1e-9)
            rate = done * self.steps_per_update / elapsed
            self.progress.update(self.task, completed=done, rate=f"{rate:,.0f} steps/s")
            if not self.progress.console.is_terminal and (time.perf_counter() - self._last_log > 15 or done == self.total_updates):
                self._last_log = time.perf_counter()
                print(f"  {self.description}: update {done}/{self.total_updates}, {rate:,.0f} env-steps/s", file=sys.stderr, flush=True)
