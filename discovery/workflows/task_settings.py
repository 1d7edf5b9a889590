"""Inner settings as distributions, and the per-generation draw of tasks and settings.

A meta-training task may give, in its ``overrides``, a list of choices or a
range instead of a fixed value for the settings that define the regime a
learner runs in::

    tasks:
      - env: CartPole-v1
        overrides:
          update_epochs: [1, 2, 4, 8, 16]           # choices: one is drawn uniformly
          learning_rate: {low: 3.0e-4, high: 3.0e-3}  # a range: drawn log-uniformly
          total_timesteps: [16384, 32768]          # the lifetime

``update_epochs``, ``num_minibatches`` and ``total_timesteps`` shape the compiled
program, so they take choices only (each combination of them, a *variant*,
compiles once and is cached); ``learning_rate`` is an array inside the program
and takes choices or a range.

Each generation draws, from its own key, the tasks to run (all, or
``tasks_per_generation`` of them without replacement) and one setting per drawn
task. Every member of the population (so both halves of each antithetic pair)
trains at the same draw on the same seeds: common random numbers. The draw is
a pure function of the generation key, so a resumed run draws exactly what an
uninterrupted one would have.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import jax
import numpy as np

from discovery.runtime.errors import UserError

STATIC_SAMPLED = ("update_epochs", "num_minibatches", "total_timesteps")  # each value compiles its own program
DYNAMIC_SAMPLED = ("learning_rate",)  # an HParams array: any value runs in the same program
SAMPLED_KEYS = STATIC_SAMPLED + DYNAMIC_SAMPLED
SETTINGS_STREAM = 0x5E77  # fold_in tag of the draw's key, apart from the ES's own splits of the generation key


@dataclasses.dataclass(frozen=True)
class Choices:
    """Draw one of ``values`` uniformly."""

    values: tuple

    def to_yaml(self):
        return list(self.values)

    def middle(self):
        return self.values[len(self.values) // 2]


@dataclasses.dataclass(frozen=True)
class LogUniform:
    """Draw ``exp(U(log low, log high))``."""

    low: float
    high: float

    def to_yaml(self):
        return {"low": self.low, "high": self.high}

    def middle(self):
        return math.sqrt(self.low * self.high)


Distribution = Choices | LogUniform


def split_sampled(overrides: dict, where: str) -> tuple[dict, dict[str, Distribution]]:
    """``overrides`` → ``(fixed values, {key: distribution})``: lists are choices, ``{low, high}`` a range.

    Any value that cannot be a setting of that key is a :class:`UserError` naming the task and the key.
    """
    fixed, sampled = {}, {}
    for key, value in overrides.items():
        # Other keys keep their lists (actor_hidden: [64, 64] is one value); their own checks apply.
        if key in SAMPLED_KEYS and isinstance(value, (list, tuple, dict)):
            sampled[key] = _distribution(key, value, where)
        else:
            fixed[key] = value
    return fixed, sampled


def _distribution(key: str, value: Any, where: str) -> Distribution:
    if isinstance(value, dict):
        if key in STATIC_SAMPLED:
            raise UserError(
                f"{where}: {key} takes choices (a list such as [1, 4, 16]), not a range: each value compiles "
                "its own program"
            )
        if set(value) != {"low", "high"}:
            raise UserError(f"{where}: the range of {key} must be {{low: ..., high: ...}}, got keys {sorted(value)}")
        low, high = (_positive_number(key, value[k], where) for k in ("low", "high"))
        if not low < high:
            raise UserError(f"{where}: the range of {key} needs low < high, got low {low:g}, high {high:g}")
        return LogUniform(low, high)
    if not value:
        raise UserError(f"{where}: the choices of {key} are empty; give at least one value")
    if key in STATIC_SAMPLED:
        values = tuple(_positive_int(key, v, where) for v in value)
    else:
        values = tuple(_positive_number(key, v, where) for v in value)
    if len(set(values)) != len(values):
        raise UserError(f"{where}: the choices of {key} repeat a value: {list(values)}")
    return Choices(values)


def _positive_int(key: str, value: Any, where: str) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1
    if not ok:
        raise UserError(f"{where}: every choice of {key} must be an integer >= 1, got {value!r}")
    return int(value)


def _positive_number(key: str, value: Any, where: str) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise UserError(f"{where}: every value of {key} must be a finite number > 0, got {value!r}")
    return float(value)


def static_variants(sampled: dict[str, Distribution]) -> list[dict]:
    """Every combination of the static choices (``[{}]`` when none is sampled), in a fixed order."""
    keys = [k for k in STATIC_SAMPLED if k in sampled]
    return [dict(zip(keys, values)) for values in itertools.product(*(sampled[k].values for k in keys))]


def base_setting(sampled: dict[str, Distribution]) -> dict:
    """The middle of every distribution (the middle choice, the geometric middle of a range): the task's base
    setting, at which its reference gap and the validation's learning rate are taken."""
    return {key: dist.middle() for key, dist in sampled.items()}


@dataclasses.dataclass(frozen=True)
class Draw:
    """One drawn task of a generation: its index, its static variant's index, and every sampled value."""

    task: int
    variant: int
    values: dict

    def to_json(self, env: str) -> dict:
        return {"task": self.task, "env": env, **self.values}


def draw_settings(generation_key: jax.Array, sampled_per_task: list[dict], tasks_per_generation: int | None):
    """The generation's tasks (sorted) and one setting for each, from ``fold_in(generation_key, SETTINGS_STREAM)``.

    ``sampled_per_task[t]`` is task ``t``'s ``{key: distribution}``. Returns a list of :class:`Draw`.
    """
    key = jax.random.fold_in(generation_key, SETTINGS_STREAM)
    key_tasks, key_values = jax.random.split(key)
    count = len(sampled_per_task)
    if tasks_per_generation is None or tasks_per_generation >= count:
        chosen = list(range(count))
    else:
        chosen = sorted(int(i) for i in np.asarray(jax.random.permutation(key_tasks, count))[:tasks_per_generation])
    draws = []
    for task in chosen:
        sampled = sampled_per_task[task]
        values = {}
        for index, name in enumerate(sorted(sampled)):
            dist, key_one = sampled[name], jax.random.fold_in(jax.random.fold_in(key_values, task), index)
            if isinstance(dist, Choices):
                values[name] = dist.values[int(jax.random.randint(key_one, (), 0, len(dist.values)))]
            else:
                u = float(jax.random.uniform(key_one, (), minval=math.log(dist.low), maxval=math.log(dist.high)))
                values[name] = math.exp(u)
        variants = static_variants(sampled)
        static = {k: values[k] for k in STATIC_SAMPLED if k in values}
        draws.append(Draw(task, variants.index(static), values))
    return draws
