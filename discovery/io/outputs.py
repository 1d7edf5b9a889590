"""Run directories, atomic file writes and the one ``.npz``-with-JSON-header format.

A crash never leaves a half-written result: every file is written beside its
destination and renamed over it. Drift artifacts, meta-training checkpoints
and evaluation cells are all :func:`write_npz` files.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import io
import json
import os
import platform
import re
import socket
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np

from discovery.runtime.errors import UserError

TRACKED_PACKAGES = ("jax", "jaxlib", "flax", "optax", "evosax", "gymnax", "brax", "numpy", "wandb", "rliable")


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600 files; results are for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


HEADER_KEY = "__header__"


def write_npz(
    path: str | os.PathLike,
    arrays: dict[str, Any],
    header: dict | None = None,
    *,
    header_key: str = HEADER_KEY,
    compressed: bool = False,
) -> Path:
    """Atomically write ``arrays`` as one ``.npz``, with ``header`` as a JSON string under ``header_key``."""
    arrays = dict(arrays)
    if header is not None:
        arrays[header_key] = np.asarray(json.dumps(header))
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


class DamagedFileError(ValueError):
    """A file that is not, or no longer, a readable :func:`write_npz` archive; the message says why in words."""


def read_npz(path: str | os.PathLike, *, header_key: str = HEADER_KEY) -> tuple[dict | None, dict[str, np.ndarray]]:
    """``(header or None, arrays)`` of a :func:`write_npz` file.

    A missing file raises ``FileNotFoundError``; any damage (not a zip archive, truncated, an
    unreadable member or header) raises :class:`DamagedFileError` with a readable reason.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if not zipfile.is_zipfile(path):
        raise DamagedFileError(f"{path} is not a .npz archive (truncated, or not written by discovery)")
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data[header_key])) if header_key in data.files else None
            arrays = {k: np.asarray(data[k]) for k in data.files if k != header_key}
    except Exception as error:  # zip, zlib, numpy-format and json errors: all mean a damaged file
        raise DamagedFileError(f"{path} is a damaged .npz archive ({type(error).__name__})") from None
    return header, arrays


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


def slug(text: str) -> str:
    """A file-name-safe version of a label (``dpo:alpha=1.5`` -> ``dpo_alpha=1.5``)."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_") or "drift"


def prepare_run_dir(out: str | os.PathLike, overwrite: bool = False, resume_marker: str | None = None) -> Path:
    """Create ``out`` for a new run; refuse to reuse a non-empty directory unless asked.

    ``overwrite`` accepts it and lets the run replace files in it. A directory
    holding ``resume_marker`` (a file name) is a run of the same kind and is
    accepted as is, to be resumed.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        check_writable(out)
    except OSError as error:
        raise UserError(f"cannot write to --out {out}: {_os_reason(out, error)}; choose another --out") from None
    claim_run_dir(out)  # from here on no other run can take the directory, so the check below cannot race
    resumable = resume_marker is not None and (out / resume_marker).is_file()
    if any(p.name != LOCK_NAME for p in out.iterdir()) and not (overwrite or resumable):
        release_run_dir(out)
        why = (
            f"is not empty and holds no {Path(resume_marker).stem} ({resume_marker})"
            if resume_marker
            else "already exists and is not empty"
        )
        raise UserError(f"output directory {out} {why}; choose another --out or pass --overwrite")
    return out


LOCK_NAME = ".discovery.lock"
_claimed: set[Path] = set()


def claim_run_dir(out: Path) -> None:
    """Take ``out`` for this process: create ``out/.discovery.lock`` atomically (``O_EXCL``), removed at exit.

    A second run into the same directory, even one started in the same second,
    finds the lock and is refused while its owner is alive; the lock of a
    process that died (same host, pid gone) is taken over.
    """
    out = Path(out).resolve()
    if out in _claimed:
        return
    lock = out / LOCK_NAME
    me = f"{os.getpid()} {socket.gethostname()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(lock)
            if owner is None:  # its process is gone: a stale lock
                lock.unlink(missing_ok=True)
                continue
            raise UserError(
                f"output directory {out} is in use by another discovery run ({owner}); wait for it, choose "
                f"another --out, or delete {lock} if no run is using it"
            ) from None
        except OSError as error:
            raise UserError(f"cannot write to --out {out}: {_os_reason(out, error)}; choose another --out") from None
        with os.fdopen(fd, "w") as handle:
            handle.write(me + "\n")
        _claimed.add(out)
        atexit.register(release_run_dir, out)
        return
    raise UserError(f"cannot take output directory {out}: {lock} keeps reappearing; is another run starting there?")


def release_run_dir(out: Path) -> None:
    """Give ``out`` back (remove this process's lock)."""
    out = Path(out).resolve()
    if out in _claimed:
        _claimed.discard(out)
        with contextlib.suppress(OSError):
            (out / LOCK_NAME).unlink()


def release_all_run_dirs() -> None:
    """Give back every directory this process claimed (when a command ends)."""
    for out in list(_claimed):
        release_run_dir(out)


def _lock_owner(lock: Path) -> str | None:
    """``"pid N on host H"`` of a live lock, ``None`` when its process no longer runs (same host only)."""
    try:
        pid_text, _, host = lock.read_text().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return "an unreadable lock"
    if host == socket.gethostname():
        if pid == os.getpid():  # this very process (a lock file copied along with a run directory)
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
    return f"pid {pid} on host {host or '?'}"


def _os_reason(path: Path, error: OSError) -> str:
    """Why ``path`` cannot be written, in words (a file on the way, a missing or read-only place)."""
    blocker = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        return f"{blocker} is a file, not a directory"
    nearest = next((p for p in path.parents if p.is_dir()), None)
    if nearest is not None and not path.exists():
        return f"no directory can be created under {nearest} ({error.strerror or type(error).__name__})"
    return error.strerror or type(error).__name__


def check_writable(directory: Path) -> None:
    """Raise ``OSError`` unless a file can be created in ``directory`` (a read-only mount, ``/proc``, ...)."""
    fd, probe = tempfile.mkstemp(dir=directory, prefix=".write-test.", suffix=".tmp")
    os.close(fd)
    os.unlink(probe)


def git_commit() -> str:
    """The short commit of this checkout (``"unknown"`` outside a git checkout or without git)."""
    import subprocess

    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[2],
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def environment_info() -> dict[str, Any]:
    """Versions, device and command line, recorded beside every result."""
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
