"""Several processes, one run, on JAX's own multi-process runtime (``jax.distributed``).

``discovery <command> --distributed`` is started once per process (one per host,
or several on one machine). The CLI joins the cluster *before* any module that
imports jax is loaded (evosax computes at import time, and JAX refuses to join
after that), then every process runs the same program:

- one global mesh over every process's devices (``jax.devices()``): each
  process computes only its shard of a batch (learners, ES members) and the
  results are gathered, so every process holds the same numbers;
- process 0 writes ``--out`` and logs to W&B; the others write into a private
  temporary directory (deleted when they exit) and log nothing, so the code path
  is the same on every process and they stay in step;
- :func:`agree` compares a digest of the settings across processes (a small
  all-gather) and stops every process with one line when they differ;
- :func:`mirror` copies process 0's files (a run to resume, finished cells) to
  the others, so hosts need no shared file system;
- a process that fails records its message with JAX's coordination service
  and leaves at once; the others' next collective then fails and they report
  ``process k of N failed: <its message>`` (see :func:`exit_after_failure`).

The cluster comes from ``JAX_COORDINATOR_ADDRESS`` / ``JAX_NUM_PROCESSES`` /
``JAX_PROCESS_ID``, or from what JAX detects by itself (SLURM, Open MPI, a
Cloud TPU pod slice). On the CPU the collectives use gloo.

Nothing here imports jax at module level: :func:`pre_parse` and
:func:`initialize` run before jax is imported.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import io
import json
import os
import shutil
import socket
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from discovery.runtime.errors import UserError

COMMANDS = ("train", "meta-train", "evaluate", "sweep")  # commands that accept --distributed
DEFAULT_TIMEOUT = 300  # seconds to wait for every process to join (JAX's own default)
FAILED_PREFIX = "discovery/failed/"
ENV_ADDRESS, ENV_PROCESSES, ENV_PROCESS_ID = "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"

_state: dict = {"index": 0, "count": 1, "active": False, "private_dir": None, "command": "discovery"}


# ---- the command line ----------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("several processes (jax.distributed)")
    group.add_argument(
        "--distributed",
        action="store_true",
        help="run as one of several processes (hosts): join the cluster named by JAX_COORDINATOR_ADDRESS, "
        "JAX_NUM_PROCESSES and JAX_PROCESS_ID, or detected by JAX (SLURM, Open MPI, TPU pod slice); see README",
    )
    group.add_argument(
        "--distributed-timeout",
        type=int,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up when the cluster has not formed after this long (default: {DEFAULT_TIMEOUT})",
    )


def pre_parse(argv: list[str]) -> tuple[bool, int]:
    """``(--distributed given, --distributed-timeout)`` read from ``argv`` before the commands are imported."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--distributed", action="store_true")
    parser.add_argument("--distributed-timeout", default=str(DEFAULT_TIMEOUT))
    known, _ = parser.parse_known_args([a for a in argv if a != "--"])
    try:
        timeout = int(known.distributed_timeout)
    except ValueError:
        timeout = 0
    if known.distributed and timeout < 1:
        raise UserError(
            f"--distributed-timeout must be a positive number of seconds, got {known.distributed_timeout!r}"
        )
    return known.distributed, timeout


def _env_int(name: str) -> int | None:
    text = os.environ.get(name)
    if text is None or not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{name} must be an integer, got {text!r}") from None


def initialize(command: str, timeout: int = DEFAULT_TIMEOUT) -> None:
    """Join the cluster, or stop this process with one line and exit status 2 after ``timeout`` seconds.

    JAX's own failure to connect aborts the process from C++ with a stack
    trace, so a watchdog thread stops it first: JAX is given a longer deadline.
    """
    _state["command"] = f"discovery {command}"
    address = os.environ.get(ENV_ADDRESS) or None
    num_processes, process_id = _env_int(ENV_PROCESSES), _env_int(ENV_PROCESS_ID)
    if address is not None and (num_processes is None or process_id is None):
        raise UserError(
            f"{ENV_ADDRESS} is set: also set {ENV_PROCESSES} (how many processes) and {ENV_PROCESS_ID} (0 .. N-1)"
        )
    if num_processes is not None and num_processes < 1:
        raise UserError(f"{ENV_PROCESSES} must be >= 1, got {num_processes}")
    if num_processes is not None and process_id is not None and not 0 <= process_id < num_processes:
        raise UserError(f"{ENV_PROCESS_ID} must be in 0 .. {num_processes - 1}, got {process_id}")

    import jax  # after discovery.runtime.devices.configure_host_devices: the host device count is already in XLA_FLAGS

    from discovery.runtime.devices import cpu_platform

    if cpu_platform() and not os.environ.get("JAX_CPU_COLLECTIVES_IMPLEMENTATION"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    where = f"the coordinator at {address}" if address else "the cluster"
    who = f" as process {process_id} of {num_processes}" if process_id is not None else ""
    joined = threading.Event()

    def watchdog():
        _print_line(
            f"joining {where}{who}: waiting up to {timeout} s for all {num_processes or 'N'} processes to start…"
        )
        waited = 0.0
        while not joined.wait(min(15.0, timeout - waited)):
            waited = min(timeout, waited + 15.0)
            if waited >= timeout:
                _print_line(
                    f"could not join {where}{who} within {timeout} s: "
                    f"{_missing_processes(address, num_processes, process_id)} (--distributed-timeout SECONDS)"
                )
                os._exit(UserError.exit_code)
            _print_line(f"  still waiting for the other processes ({waited:.0f} of {timeout} s)…")

    threading.Thread(target=watchdog, name="discovery-join-watchdog", daemon=True).start()
    try:
        jax.distributed.initialize(address, num_processes, process_id, initialization_timeout=timeout + 60)
    except (ValueError, RuntimeError, TypeError) as error:
        joined.set()
        if address is None and "coordinator_address" in str(error):
            raise UserError(
                f"--distributed found no cluster: set {ENV_ADDRESS}=HOST:PORT, {ENV_PROCESSES}=N and "
                f"{ENV_PROCESS_ID}=i, or start under SLURM, Open MPI or on a Cloud TPU pod slice"
            ) from None
        raise UserError(f"could not join {where}{who}: {str(error).splitlines()[0]}") from None
    joined.set()
    _state.update(index=jax.process_index(), count=jax.process_count(), active=jax.process_count() > 1)
    if not is_main():
        from discovery.runtime.progress import console

        console.quiet = True  # one voice: process 0's


def _missing_processes(address: str | None, num_processes: int | None, process_id: int | None) -> str:
    """Which process the join is waiting for, as far as this process can tell."""
    if address is None or num_processes is None or process_id is None:
        return "did every process of the cluster start?"
    others = [i for i in range(num_processes) if i != process_id]
    if process_id == 0:
        names = ", ".join(map(str, others))
        return (
            f"process{'es' if len(others) > 1 else ''} {names} did not join this coordinator: start "
            f"{'them' if len(others) > 1 else 'it'} with {ENV_ADDRESS}={address}, {ENV_PROCESSES}={num_processes} "
            f"and {ENV_PROCESS_ID}=1 .. {num_processes - 1}"
        )
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=2):
            reachable = True
    except (OSError, ValueError):
        reachable = False
    if not reachable:
        return f"process 0 (the coordinator at {address}) is not running or not reachable from here"
    rest = ", ".join(str(i) for i in others if i != 0)
    return (
        f"the coordinator at {address} is up, but not every process joined: start process"
        f"{'es' if len(others) > 2 else ''} {rest}"
        if rest
        else f"the coordinator at {address} is up but did not answer"
    )


# ---- who am I ------------------------------------------------------------------------------


def active() -> bool:
    """True in a run of several processes."""
    return _state["active"]


def process_index() -> int:
    return _state["index"]


def process_count() -> int:
    return _state["count"]


def is_main() -> bool:
    """Process 0: the one that writes ``--out`` and logs."""
    return _state["index"] == 0


def describe(devices=None) -> str:
    """``"2 devices"`` or ``"4 devices in 2 processes"``: where a batch runs (``devices``: default every device)."""
    import jax

    devices = jax.devices() if devices is None else list(devices)
    processes = len({device.process_index for device in devices})
    text = f"{len(devices)} device{'s' if len(devices) != 1 else ''}"
    return text + (f" in {processes} processes" if processes > 1 else "")


def private_dir() -> Path:
    """A temporary directory of this process, removed when it exits (where a process other than 0 writes)."""
    if _state["private_dir"] is None:
        path = Path(tempfile.mkdtemp(prefix=f"discovery-process{process_index()}-"))
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        _state["private_dir"] = path
    return _state["private_dir"]


def redirect_outputs(args: argparse.Namespace) -> None:
    """On processes other than 0: ``--out`` goes to a private temporary directory and W&B is off."""
    if is_main():
        return
    if hasattr(args, "out") and not getattr(args, "resume", None):  # a resumed run's directory is mirrored instead
        args.out = str(private_dir() / "out")
    if hasattr(args, "wandb"):
        args.wandb = "off"


# ---- agreeing and sharing ------------------------------------------------------------------------


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def agree(what: str, text: str) -> None:
    """Every process must hold the same ``text`` (e.g. its settings as JSON); otherwise a :class:`UserError` on all.

    A small all-gather of the SHA-256 of ``text``; a no-op in a single process.
    """
    if not active():
        return
    import numpy as np
    from jax.experimental import multihost_utils

    mine = np.frombuffer(hashlib.sha256(text.encode()).digest(), np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(mine))
    differ = [index for index in range(gathered.shape[0]) if not np.array_equal(gathered[index], gathered[0])]
    if differ:
        raise UserError(
            f"the processes disagree on {what}: process{'es' if len(differ) > 1 else ''} "
            f"{', '.join(map(str, differ))} differ{'' if len(differ) > 1 else 's'} from process 0; start every "
            "process with the same command, config files and drift artifacts"
        )


def broadcast_bytes(data: bytes | None) -> bytes:
    """Process 0's ``data`` on every process (the others pass anything, e.g. ``None``)."""
    if not active():
        return data or b""
    import numpy as np
    from jax.experimental import multihost_utils

    payload = np.frombuffer(data or b"", np.uint8) if is_main() else np.zeros(0, np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.asarray([payload.size], np.int64))[0])
    if size == 0:
        return b""
    padded = np.zeros(size, np.uint8)
    if is_main():
        padded[:] = payload
    return np.asarray(multihost_utils.broadcast_one_to_all(padded)).tobytes()


def broadcast_json(value):
    """Process 0's JSON-serialisable ``value`` on every process."""
    if not active():
        return value
    return json.loads(broadcast_bytes(json.dumps(value).encode() if is_main() else None).decode())


def mirror(root: Path, names: list[str]) -> None:
    """Copy process 0's ``root/<name>`` files and directories into this process's ``root`` (same relative paths).

    Process 0 reads, the others write; a name process 0 lacks is skipped. With
    this, a resumed run or a half-finished evaluation needs no shared file system.
    """
    if not active():
        return
    root = Path(root)
    buffer = io.BytesIO()
    if is_main():
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for name in names:
                if (root / name).exists():
                    archive.add(root / name, arcname=name)
    data = broadcast_bytes(buffer.getvalue() if is_main() else None)
    if not is_main() and data:
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            archive.extractall(root, filter="data")


# ---- failing together ----------------------------------------------------------------------


def _client():
    from jax._src.distributed import global_state  # JAX's coordination-service client (key-value store)

    return global_state.client


def _print_line(message: str) -> None:
    print(f"{_state['command']}: error: {message}", file=sys.stderr, flush=True)


def peer_failures() -> list[dict]:
    """Failures other processes recorded, oldest first (empty when none or the coordinator is gone)."""
    try:
        entries = _client().key_value_dir_get(FAILED_PREFIX)
    except Exception:  # noqa: BLE001 - the coordination service went away with process 0
        return []
    failures = []
    for _, value in entries:
        try:
            failures.append(json.loads(value))
        except ValueError:
            continue
    return sorted((f for f in failures if f.get("process") != process_index()), key=lambda f: f.get("time", 0))


def _collective_failure(error: BaseException) -> bool:
    text = str(error)
    return any(
        mark in text for mark in ("Gloo", "Connection closed by peer", "Connection reset by peer", "NCCL", "collective")
    )


def exit_after_failure(message: str | None, code: int, error: BaseException | None = None) -> None:
    """Leave this process of a distributed run after an error, without waiting at JAX's shutdown barrier.

    If another process failed first (its record explains why our collective
    broke), report that one instead: ``process k of N failed: <its message>``.
    Otherwise print ``message`` (or the traceback of ``error``), record it for
    the others, and leave. Process 0 hosts JAX's coordination service, whose
    end stops every other process; it waits (≤ 3 s) until the others have
    recorded their own failure, so that each prints its line first.
    """
    failures = peer_failures() if error is not None or message is None else []
    if failures:
        first = failures[0]
        _print_line(f"process {first['process']} of {process_count()} failed: {first['message']}")
        code = int(first.get("code", 1))
        message = f"stopped because process {first['process']} failed"
    else:
        if message is not None:
            _print_line(message)
        elif error is not None and _collective_failure(error):
            message = (
                "another process stopped (a collective operation failed: "
                f"{str(error).splitlines()[0][:200]}); see that process's output"
            )
            _print_line(message)
        elif error is not None:
            import traceback

            traceback.print_exception(error, file=sys.stderr)
            message = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    sys.stdout.flush()
    sys.stderr.flush()
    record = {"process": process_index(), "message": message or "stopped", "code": code, "time": time.time()}
    try:
        _client().key_value_set(f"{FAILED_PREFIX}{process_index()}", json.dumps(record))
    except Exception:  # noqa: BLE001 - best effort: the coordinator may be gone
        pass
    if is_main():
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and len(peer_failures()) < process_count() - 1:
            time.sleep(0.05)
        time.sleep(0.3)  # let them leave before the coordination service does
    os._exit(code)
