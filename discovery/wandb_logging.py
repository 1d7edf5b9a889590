"""Weights & Biases logging, off unless asked (``--wandb offline|online``).

Only ``discovery/`` logs; the library packages return metrics as arrays.
``offline`` needs no network: runs are written under ``<out>/wandb`` and can
be uploaded later with ``wandb sync``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from discovery.errors import UserError

MODES = ("off", "offline", "online")


class WandbRun:
    """A thin wrapper that is a no-op when mode is ``off``."""

    def __init__(self, mode: str, out_dir: Path, *, project: str, name: str, config: Mapping[str, Any],
                 group: str | None = None, entity: str | None = None, job_type: str | None = None, tags=None):
        self.mode = mode
        self.run = None
        if mode == "off":
            return
        if mode not in MODES:
            raise UserError(f"unknown --wandb mode {mode!r}; valid: {', '.join(MODES)}")
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        self._wandb = wandb
        self.run = wandb.init(
            project=project,
            entity=entity,
            name=name,
            group=group,
            job_type=job_type,
            tags=tags,
            config=dict(config),
            dir=str(out_dir),
            mode=mode,
            reinit="finish_previous",
        )

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if self.run is not None:
            self.run.log({k: _scalar(v) for k, v in metrics.items()}, step=step)

    def log_series(self, series: Mapping[str, np.ndarray], steps: np.ndarray) -> None:
        """Log ``name -> [T]`` arrays as T steps (x axis: ``steps``)."""
        if self.run is None:
            return
        for index, step in enumerate(np.asarray(steps)):
            self.run.log({name: _scalar(values[index]) for name, values in series.items()} | {"env_steps": int(step)})

    def log_table(self, key: str, header: list[str], rows: list[list[Any]]) -> None:
        if self.run is not None:
            self.run.log({key: self._wandb.Table(columns=header, data=rows)})

    def log_image(self, key: str, path: str | Path) -> None:
        if self.run is not None:
            self.run.log({key: self._wandb.Image(str(path))})

    def summary(self, values: Mapping[str, Any]) -> None:
        if self.run is not None:
            for key, value in values.items():
                self.run.summary[key] = _scalar(value)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None


def _scalar(value):
    if isinstance(value, (np.ndarray, np.generic)):
        value = np.asarray(value)
        return value.item() if value.size == 1 else value.tolist()
    return value
