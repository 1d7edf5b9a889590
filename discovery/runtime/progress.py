"""Progress display for long jitted runs.

The compiled training loop calls :meth:`TrainingProgress.callback` every few
updates through ``jax.debug.callback`` (the only host interaction in the loop);
the bar shows updates, env-steps/s, elapsed time and ETA. ``rich`` draws it when stderr is a
terminal and falls back to sparse log lines otherwise (CI logs stay short), which
say the same: ``update 40/100, 152,000 env-steps/s, elapsed 0:00:12, eta 0:00:18``.
``meta-train`` (generations), ``evaluate`` (cells) and ``sweep`` / ``train`` (updates)
all report this way.
"""

from __future__ import annotations

import functools
import signal
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


_interrupt_hint: str | None = None


def set_interrupt_hint(text: str | None) -> None:
    """What to tell the user if the running command is interrupted (how to continue it)."""
    global _interrupt_hint
    _interrupt_hint = text


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def interruptible(run):
    """Wrap a command's ``run``: SIGTERM stops it like Ctrl-C (the CLI then exits 130), and either prints
    the hint of :func:`set_interrupt_hint` first (e.g. that ``--resume`` continues the run)."""

    @functools.wraps(run)
    def wrapped(*args, **kwargs):
        set_interrupt_hint(None)
        main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _raise_interrupt) if main_thread else None
        try:
            return run(*args, **kwargs)
        except KeyboardInterrupt:
            if _interrupt_hint:
                console.print(f"interrupted: {_interrupt_hint}", markup=False, highlight=False, soft_wrap=True)
            raise
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)
            set_interrupt_hint(None)

    return wrapped


def clock(seconds: float) -> str:
    """``3725.4`` -> ``'1:02:05'`` (as rich's time columns print it)."""
    seconds = int(max(seconds, 0) + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def eta_text(done: float, total: float, elapsed: float) -> str:
    """``'elapsed 0:01:40, eta 0:03:20'``: the remaining time at the mean pace so far (``'eta ?'`` before any work)."""
    remaining = elapsed / done * (total - done) if done > 0 else None
    return f"elapsed {clock(elapsed)}, eta {'?' if remaining is None else clock(remaining)}"


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

    def __init__(
        self,
        description: str,
        total_updates: int,
        steps_per_update: int,
        progress: Progress | None = None,
        rounds: int = 1,
        parallel: int = 1,
    ):
        """``rounds``: the batch runs as that many micro-batches one after another on each of ``parallel``
        devices (each reports updates ``1..total_updates``); the bar counts ``rounds × total_updates``."""
        self.updates_per_round = total_updates
        self.rounds = rounds
        self.parallel = max(1, parallel)
        self._round_ends = 0
        total_updates = total_updates * rounds
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

    def _where(self, done: int) -> str:
        """``update 12/16``, or with micro-batches run one after another ``update 12/16 of micro-batch round 2/3``."""
        if self.rounds == 1:
            return f"update {done}/{self.total_updates}"
        finished, update = divmod(done, self.updates_per_round)
        if update == 0 and finished:
            finished, update = finished - 1, self.updates_per_round
        return f"update {update}/{self.updates_per_round} of micro-batch round {finished + 1}/{self.rounds}"

    def callback(self, update_index) -> None:
        update = int(np.max(np.asarray(update_index)))
        with self._lock:
            if update >= self.updates_per_round:
                self._round_ends += 1
            finished = min(self._round_ends // self.parallel, self.rounds)
            done = finished * self.updates_per_round + (update if update < self.updates_per_round else 0)
            if done <= self._done:
                return
            self._done = done
            elapsed = max(time.perf_counter() - (self._start or time.perf_counter()), 1e-9)
            rate = done * self.steps_per_update / elapsed
            self.progress.update(self.task, completed=done, rate=f"{rate:,.0f} steps/s")
            if not self.progress.console.is_terminal and (
                time.perf_counter() - self._last_log > 15 or done == self.total_updates
            ):
                self._last_log = time.perf_counter()
                print(
                    f"  {self.description}: {self._where(done)}, {rate:,.0f} env-steps/s, "
                    f"{eta_text(done, self.total_updates, elapsed)}",
                    file=sys.stderr,
                    flush=True,
                )
