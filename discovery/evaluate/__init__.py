"""The drift × env evaluation grid: ``grid`` (cells, resume), ``report`` (statistics, tables, W&B), ``plots``."""

from discovery.evaluate.grid import EvaluationReport, WandbOptions, run_evaluation, split_list

__all__ = ["EvaluationReport", "WandbOptions", "run_evaluation", "split_list"]
