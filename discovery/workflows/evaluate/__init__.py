"""The drift × task evaluation grid: ``grid`` (tasks, cells, resume), ``report`` (statistics, tables, W&B),
``suite_report`` (normalised scores, per-role aggregates, probability of improvement), ``plots``."""

from discovery.workflows.evaluate.grid import (
    EvaluationReport,
    Task,
    WandbOptions,
    env_tasks,
    run_evaluation,
    suite_tasks,
)

__all__ = ["EvaluationReport", "Task", "WandbOptions", "env_tasks", "run_evaluation", "suite_tasks"]
