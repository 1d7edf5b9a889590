"""What a meta-training run writes: checkpoints (every few generations, resumable), drift artifacts, metrics.

Every write is atomic, so a run killed at any moment leaves its last checkpoint,
``drift.npz`` and ``metrics.jsonl`` whole; a checkpoint records the config it
was written under, so a resume under an edited config is refused by name, and
the machine it was written on, so a resume on another one says that it will
not be bit-identical (XLA compiles for the host's instruction set).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

import meta
from discovery.io.artifacts import save_artifact
from discovery.io.outputs import atomic_write_text, read_npz, write_npz
from discovery.runtime.devices import host_cpu
from discovery.runtime.errors import UserError
from discovery.workflows.meta_config import MetaConfig, meta_config_from_dict

CHECKPOINT_PREFIX = "gen_"
KEEP_CHECKPOINTS = 3


@dataclasses.dataclass
class Checkpoint:
    generation: int  # generations completed
    es_state: Any
    references: np.ndarray | None
    config: dict
    host: str | None = None  # current_host() of the machine that wrote it; None in checkpoints from before


@functools.cache  # the machine does not change while a run writes a checkpoint every generation
def current_host() -> str:
    """What a run's floating point depends on besides its code and keys: the backend, its device and the CPU."""
    device = jax.devices()[0]
    if device.platform == "cpu":
        return f"cpu, {host_cpu()}"
    return f"{device.platform} {device.device_kind}, host {host_cpu()}"


def host_change_note(checkpoint: Checkpoint, host: str) -> str | None:
    """One line when ``checkpoint`` was written on another machine than ``host``, else ``None``."""
    if checkpoint.host is None or checkpoint.host == host:
        return None
    return (
        f"note: this checkpoint was written on {checkpoint.host}, and this machine is {host}; XLA compiles for "
        "the host's instruction set, so the resumed run is deterministic here but not bit-identical to a "
        "continuation on that machine"
    )


def checkpoint_path(out: Path, generation: int) -> Path:
    return out / "checkpoints" / f"{CHECKPOINT_PREFIX}{generation:06d}.npz"


def save_checkpoint(out: Path, checkpoint: Checkpoint) -> Path:
    """Atomically write one ES checkpoint and prune all but the newest few."""
    arrays = {f"es/{k}": v for k, v in meta.state_to_arrays(checkpoint.es_state).items()}
    return _write_checkpoint(out, checkpoint, arrays)


def save_tree_checkpoint(out: Path, checkpoint: Checkpoint) -> Path:
    """Atomically write a checkpoint whose state is any pytree of arrays (the meta-gradient loop's)."""
    arrays = {f"state/{i:05d}": np.asarray(leaf) for i, leaf in enumerate(jax.tree.leaves(checkpoint.es_state))}
    return _write_checkpoint(out, checkpoint, arrays)


def _write_checkpoint(out: Path, checkpoint: Checkpoint, arrays: dict) -> Path:
    header = {
        "generation": checkpoint.generation,
        "config": checkpoint.config,
        "references": None if checkpoint.references is None else np.asarray(checkpoint.references).tolist(),
        "host": checkpoint.host or current_host(),
    }
    path = write_npz(checkpoint_path(out, checkpoint.generation), arrays, header)
    for old in sorted((out / "checkpoints").glob(f"{CHECKPOINT_PREFIX}*.npz"))[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return path


def latest_checkpoint_file(out: Path) -> Path | None:
    files = sorted((out / "checkpoints").glob(f"{CHECKPOINT_PREFIX}*.npz"))
    return files[-1] if files else None


def _corrupt(path: Path, error: Exception) -> UserError:
    detail = str(error).splitlines()[0] if str(error) else ""
    return UserError(f"corrupt checkpoint {path}: {type(error).__name__}: {detail}")


def _read_checkpoint(path: Path, config: MetaConfig | None) -> tuple[dict, dict]:
    """``(header, arrays)`` of a checkpoint; damage, or a config that no longer matches it, is one line."""
    try:
        header, arrays = read_npz(path)
        if header is None:
            raise KeyError("no __header__")
    except Exception as error:
        raise _corrupt(path, error) from None
    if config is not None and isinstance(header.get("config"), dict):
        try:
            saved = meta_config_from_dict(header["config"], {}).identity()
        except UserError:
            saved = None
        if saved is not None and saved != config.identity():
            changed = sorted(k for k in saved if saved[k] != config.identity().get(k))
            raise UserError(
                f"the config no longer matches checkpoint {path} (it differs in: {', '.join(changed)}); "
                "was config.yaml edited? restore it, or start a new run with the new config"
            )
    return header, arrays


def _checkpoint(header: dict, state) -> Checkpoint:
    references = header.get("references")
    return Checkpoint(
        int(header["generation"]),
        state,
        None if references is None else np.asarray(references),
        header["config"],
        header.get("host"),
    )


def load_checkpoint(path: Path, strategy: meta.Strategy, config: MetaConfig | None = None) -> Checkpoint:
    """Read an ES checkpoint; any damage is a one-line :class:`UserError` (the file is left as is).

    With ``config``, a checkpoint written under a different config (``config.yaml``
    edited since) is refused as such, naming what differs, before its arrays are read.
    """
    header, arrays = _read_checkpoint(path, config)
    try:
        state = meta.state_from_arrays(strategy, {k[3:]: v for k, v in arrays.items() if k.startswith("es/")})
    except Exception as error:
        raise _corrupt(path, error) from None
    if not all_finite(strategy.mean(state)):
        raise UserError(
            f"checkpoint {path} holds a non-finite ES mean (the run diverged before it was written); "
            "resume from an earlier checkpoint, or start again with a smaller es.learning_rate"
        )
    return _checkpoint(header, state)


def load_tree_checkpoint(path: Path, template, config: MetaConfig | None = None) -> Checkpoint:
    """Read a :func:`save_tree_checkpoint` checkpoint into ``template``'s structure (arrays or
    ``jax.ShapeDtypeStruct`` leaves), checking every leaf's shape and dtype; any mismatch or damage is one line."""
    header, arrays = _read_checkpoint(path, config)
    leaves, treedef = jax.tree.flatten(template)
    stored = [arrays.get(f"state/{i:05d}") for i in range(len(leaves))]
    for index, (leaf, value) in enumerate(zip(leaves, stored)):
        if value is None or tuple(value.shape) != tuple(leaf.shape) or value.dtype != leaf.dtype:
            found = "missing" if value is None else f"{value.dtype}{list(value.shape)}"
            raise UserError(
                f"corrupt checkpoint {path}: state leaf {index} is {found}, expected {leaf.dtype}{list(leaf.shape)}"
            )
    return _checkpoint(header, jax.tree.unflatten(treedef, stored))


def all_finite(tree) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(leaf)))) for leaf in jax.tree.leaves(tree))


# ---- artifacts and logs ------------------------------------------------------------


def save_drift_artifacts(out: Path, drift, strategy: meta.Strategy, state, generation: int, envs: list[str]) -> None:
    """Write ``drift.npz`` (the ES mean) and ``best_drift.npz`` (best member seen); the metadata
    records the meta-training envs, which ``discovery distill --check`` uses by default."""
    mean = jax.tree.map(np.asarray, strategy.mean(state))
    best, best_value = strategy.best(state)
    common = {"generation": generation, "es_algorithm": strategy.config.algorithm, "envs": envs}
    save_artifact(out / "drift.npz", drift, mean, {"label": f"{drift.name}-mean", **common})
    save_artifact(
        out / "best_drift.npz",
        drift,
        jax.tree.map(np.asarray, best),
        {"label": f"{drift.name}-best", "fitness": float(best_value), **common},
    )


def keep_if_best_validated(
    out: Path, drift, params, result: dict, rows: list[dict], generation: int, algorithm: str, envs: list[str]
) -> None:
    """Write ``params`` as ``best_validated_drift.npz`` if ``result`` (a validation) beats every one in ``rows``."""
    previous = [r["validation"]["score"] for r in rows if r.get("validation") and r["validation"]["score"] is not None]
    if result["score"] is None or result["score"] <= max(previous, default=-np.inf):
        return
    save_artifact(
        out / "best_validated_drift.npz",
        drift,
        jax.tree.map(np.asarray, params),
        {
            "label": f"{drift.name}-validated",
            "generation": generation,
            "validation": result,
            "es_algorithm": algorithm,
            "envs": envs,
        },
    )


def add_costs(row: dict, rows: list[dict], env_steps: int, cpu_started: float) -> dict:
    """Record a generation's env steps and the run's running totals of env steps and CPU seconds in ``row``
    (``rows``: the generations before it; ``cpu_started``: ``time.process_time()`` when it began)."""
    previous = rows[-1] if rows else {}
    row["env_steps"] = env_steps
    row["env_steps_total"] = previous.get("env_steps_total", 0) + env_steps
    row["cpu_seconds_total"] = previous.get("cpu_seconds_total", 0.0) + (time.process_time() - cpu_started)
    return row


def read_metrics(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_metrics(out: Path, rows: list[dict]) -> None:
    """Rewrite ``metrics.jsonl`` atomically (it is small: one line per generation)."""
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
