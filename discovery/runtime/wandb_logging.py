"""Weights & Biases logging, off unless asked (``--wandb offline|online``).

Only ``discovery/`` logs; the library packages return metrics as arrays.
``offline`` needs no network: runs are written under ``<out>/wandb`` and can
be uploaded later with ``wandb sync`` (the command is printed after the run).
``online`` is checked first (:func:`preflight`): no API key, or no server
within a few seconds, is one line and exit 2, and leaves ``--out`` reusable.
"""

from __future__ import annotations

import netrc
import os
import shutil
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from discovery.runtime.errors import UserError

MODES = ("off", "offline", "online")
CONNECT_TIMEOUT = 5.0  # seconds to reach the W&B server before `--wandb online` gives up
INIT_TIMEOUT = 30.0  # seconds wandb.init may take (its own default is 90)
FALLBACK = "or run with --wandb offline and upload later with `wandb sync`"
_checked: set[str] = set()
_sync_hinted: set[str] = set()


def _base_url() -> str:
    return os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").rstrip("/")


def _has_api_key(host: str) -> bool:
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    path = Path(os.environ.get("NETRC") or Path.home() / ".netrc")
    try:
        return path.is_file() and netrc.netrc(path).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def preflight(mode: str) -> None:
    """Fail fast, in one line, when ``--wandb online`` cannot work: no API key, or no W&B server
    reachable within :data:`CONNECT_TIMEOUT` seconds. Checked once per process."""
    if mode not in MODES:
        raise UserError(f"unknown --wandb mode {mode!r}; valid: {', '.join(MODES)}")
    if mode != "online" or mode in _checked:
        return
    url = _base_url()
    parsed = urlparse(url if "://" in url else f"https://{url}")
    host = parsed.hostname or url
    if not _has_api_key(host):
        raise UserError(
            f"--wandb online needs a W&B API key for {host}: run `wandb login` or set WANDB_API_KEY, {FALLBACK}"
        )
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else (error.strerror or type(error).__name__)
        raise UserError(
            f"--wandb online cannot reach {url} ({reason} within {CONNECT_TIMEOUT:.0f}s); "
            f"check the network or WANDB_BASE_URL, {FALLBACK}"
        ) from None
    _checked.add(mode)


class WandbRun:
    """A thin wrapper that is a no-op when mode is ``off``."""

    def __init__(
        self,
        mode: str,
        out_dir: Path,
        *,
        project: str,
        name: str,
        config: Mapping[str, Any],
        group: str | None = None,
        entity: str | None = None,
        job_type: str | None = None,
        tags=None,
    ):
        self.mode = mode
        self.run = None
        if mode == "off":
            return
        preflight(mode)
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb

        self._wandb = wandb
        self.out_dir = Path(out_dir)
        wandb_dir = self.out_dir / "wandb"
        existed = wandb_dir.exists()
        try:
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
                settings=wandb.Settings(init_timeout=INIT_TIMEOUT),
            )
        except Exception as error:  # wandb's own errors (auth, timeouts, server): one line, --out left reusable
            if not existed:
                shutil.rmtree(wandb_dir, ignore_errors=True)
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise UserError(f"--wandb {mode} could not start a run: {first}; {FALLBACK}") from None

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
            run_dir = Path(self.run.dir).parent  # <out>/wandb/offline-run-<time>-<id>
            self.run.finish()
            self.run = None
            if self.mode == "offline" and str(self.out_dir) not in _sync_hinted:
                _sync_hinted.add(str(self.out_dir))
                from discovery.runtime.progress import status

                status(
                    f"W&B run saved offline; upload it with: wandb sync {run_dir}  "
                    f"(every run of this --out: wandb sync {self.out_dir}/wandb/offline-run-*)"
                )


def _scalar(value):
    if isinstance(value, (np.ndarray, np.generic)):
        value = np.asarray(value)
        return value.item() if value.size == 1 else value.tolist()
    return value
