"""Run directories and atomic file writes: a crash never leaves a half-written result."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import platform
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from discovery.errors import UserError

TRACKED_PACKAGES = ("jax", "jaxlib", "flax", "optax", "evosax", "gymnax", "brax", "numpy", "wandb", "rliable")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temp file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def _json_default(value: Any):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (Path, tuple)):
        return str(value) if isinstance(value, Path) else list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def to_json(data: Any) -> str:
    """JSON with NaN written as ``null`` (strict JSON readers reject NaN)."""

    def clean(value):
        if isinstance(value, float) and not np.isfinite(value):
            return None
        if isinstance(value, dict):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if isinstance(value, (np.ndarray, np.floating, np.integer)):
            return clean(np.asarray(value).tolist())
        return value

    return json.dumps(clean(data), indent=2, default=_json_default) + "\n"


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write_text(path, to_json(data))


def atomic_write_csv(path: str | os.PathLike, header: list[str], rows: Iterable[Iterable[Any]]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if isinstance(v, float) and not np.isfinite(v) else v for v in row])
    return atomic_write_text(path, buffer.getvalue())


def prepare_run_dir(out: str | os.PathLike, overwrite: bool = False, resume: bool = False) -> Path:
    """Create ``out`` for a new run; refuse to reuse a non-empty directory unless asked.

    ``resume`` accepts an existing directory as is (its finished parts are kept);
    ``overwrite`` accepts it and lets the run replace files in it.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (overwrite or resume):
        raise UserError(f"output directory {out} already exists and is not empty; choose another --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    return out


def environment_info() -> dict[str, Any]:
    """Versions, device and command line, recorded beside every result."""
    import jax

    versions = {}
    for package in TRACKED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    devices = jax.devices()
    return {
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "devices": [str(d) for d in devices],
        "device_kind": devices[0].device_kind if devices else "none",
        "backend": jax.default_backend(),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
    }
