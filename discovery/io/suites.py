"""Task suites: named lists of (env, overrides, role) in ``configs/suites/<name>.yaml``.

A suite fixes *where* drifts are compared: each task is an environment plus
the PPO / Brax overrides that set its budget, and a role, ``train`` (the
meta-training tasks) or ``held_out`` (never seen by meta-training). ::

    name: cpu
    description: ...
    tasks:
      - label: CartPole-v1/16ep          # unique; defaults to the env id
        env: CartPole-v1
        role: train
        overrides: {total_timesteps: 8192, update_epochs: 16}
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import envs
from discovery.io import configs
from discovery.runtime.errors import UserError

ROLES = ("train", "held_out")
_TASK_KEYS = ("label", "env", "role", "overrides")
_SUITE_KEYS = ("name", "description", "tasks")


@dataclasses.dataclass(frozen=True)
class SuiteTask:
    label: str
    env: str
    role: str
    overrides: dict

    def spec(self) -> configs.TrainSpec:
        """The training spec of this task: the env's config with the task's overrides."""
        return configs.load_train_spec(self.env, dict(self.overrides))[0]


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    description: str
    tasks: tuple[SuiteTask, ...]
    path: str

    def by_role(self, role: str) -> tuple[SuiteTask, ...]:
        return tuple(task for task in self.tasks if task.role == role)

    def task(self, label: str) -> SuiteTask:
        for task in self.tasks:
            if task.label == label:
                return task
        raise UserError(
            f"suite {self.name!r} has no task {label!r}; its tasks: {', '.join(t.label for t in self.tasks)}"
        )


def suite_dir() -> Path:
    return configs.CONFIG_ROOT / "suites"


def suite_names() -> list[str]:
    return sorted(path.stem for path in suite_dir().glob("*.yaml"))


def suite_path(name_or_path: str) -> Path:
    """A suite name (``cpu``) or the path of a suite YAML."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise UserError(f"suite file not found: {path}")
        return path
    path = suite_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        raise UserError(
            f"unknown suite {name_or_path!r}; valid suites: {', '.join(suite_names()) or '(none)'} "
            f"(in {suite_dir()}), or the path of a suite YAML"
        )
    return path


def load_suite(name_or_path: str) -> Suite:
    """Read and check a suite: known keys, known envs, valid roles, unique labels, and every
    task's overrides valid for its env (a bad one is a one-line :class:`UserError`)."""
    path = suite_path(name_or_path)
    data = configs.load_yaml(path)
    unknown = sorted(set(data) - set(_SUITE_KEYS))
    if unknown:
        raise UserError(f"unknown key(s) {', '.join(unknown)} in suite {path}; valid keys: {', '.join(_SUITE_KEYS)}")
    raw_tasks = data.get("tasks")
    if not isinstance(raw_tasks, list) or not raw_tasks:
        raise UserError(f"suite {path} needs a non-empty 'tasks' list")
    tasks = [_task(raw, index, path) for index, raw in enumerate(raw_tasks)]
    labels = [task.label for task in tasks]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise UserError(f"suite {path} repeats task label(s) {', '.join(duplicates)}; give each task a unique 'label'")
    for task in tasks:
        task.spec()  # validates env + overrides now, not halfway through an evaluation
    return Suite(str(data.get("name") or path.stem), str(data.get("description") or ""), tuple(tasks), str(path))


def _task(raw: Any, index: int, path: Path) -> SuiteTask:
    where = f"task {index + 1} of suite {path}"
    if not isinstance(raw, dict) or "env" not in raw:
        raise UserError(f"{where} must be a mapping with an 'env' key")
    unknown = sorted(set(raw) - set(_TASK_KEYS))
    if unknown:
        raise UserError(f"unknown key(s) {', '.join(unknown)} in {where}; valid keys: {', '.join(_TASK_KEYS)}")
    env = str(raw["env"])
    try:
        envs.check(env)
    except ValueError as error:
        raise UserError(f"{where}: {error}") from None
    role = str(raw.get("role", "held_out"))
    if role not in ROLES:
        raise UserError(f"{where}: unknown role {role!r}; valid roles: {', '.join(ROLES)}")
    overrides = raw.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise UserError(f"{where}: 'overrides' must be a mapping of config fields")
    return SuiteTask(str(raw.get("label") or env), env, role, dict(overrides))
