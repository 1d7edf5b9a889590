"""The grid's pieces: a task (env, settings, role), a cell (task × drift) and a cell's result."""

from __future__ import annotations

import dataclasses

import numpy as np

from discovery.io import configs
from discovery.io.drift_registry import ResolvedDrift


@dataclasses.dataclass(frozen=True)
class Task:
    """One column of the grid: ``label`` (unique) names an env with its settings and a role."""

    label: str
    env: str
    spec: configs.TrainSpec
    fallback: bool  # the settings came from a family default file
    role: str | None = None  # "train" / "held_out" for suite tasks


@dataclasses.dataclass
class Cell:
    task: Task
    drift: ResolvedDrift
    name: str  # file stem under cells/

    @property
    def env(self) -> str:
        return self.task.env

    @property
    def spec(self) -> configs.TrainSpec:
        return self.task.spec

    @property
    def label(self) -> str:
        return self.drift.label


@dataclasses.dataclass
class CellResult:
    cell: Cell
    final_returns: np.ndarray  # [seeds]
    curves: np.ndarray  # episode_return [seeds, updates]
    env_steps: np.ndarray  # [updates]
    compile_seconds: float
    run_seconds: float
    wall_seconds: float
    resumed: bool
