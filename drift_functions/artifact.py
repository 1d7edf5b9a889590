"""Portable drift artifacts: a few-KB ``.npz`` holding a drift's family, options and parameters.

Layout of the file (``numpy.savez``):

    __drift__      JSON string: {"format": 1, "name": ..., "options": {...}, "metadata": {...}}
    p/<path>       one float32 array per parameter leaf, ``<path>`` = "/"-joined dict keys

Parameters are nested dicts of arrays (all drifts in this package use those),
so the tree is rebuilt from the key paths without pickling anything.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from drift_functions.base import Drift

FORMAT_VERSION = 1
ARTIFACT_SUFFIX = ".npz"
_META_KEY = "__drift__"
_PARAM_PREFIX = "p/"


class ArtifactError(ValueError):
    """A drift artifact that is missing, corrupt, or of an unknown family."""


def _flatten(tree: Any, prefix: str = "") -> dict[str, np.ndarray]:
    if isinstance(tree, dict):
        flat: dict[str, np.ndarray] = {}
        for key in sorted(tree):
            flat.update(_flatten(tree[key], f"{prefix}{key}/"))
        return flat
    return {prefix.rstrip("/"): np.asarray(tree, dtype=np.float32)}


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def save_artifact(path: str | os.PathLike, drift: Drift, params: Any, metadata: dict | None = None) -> Path:
    """Write ``drift`` and ``params`` to ``path`` atomically (temp file, then rename)."""
    path = Path(path)
    if path.suffix != ARTIFACT_SUFFIX:
        path = path.with_suffix(ARTIFACT_SUFFIX)
    header = {"format": FORMAT_VERSION, "name": drift.name, "options": drift.options, "metadata": metadata or {}}
    arrays = {_PARAM_PREFIX + key: value for key, value in _flatten(params).items()}
    arrays[_META_KEY] = np.asarray(json.dumps(header))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(buffer.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_artifact(path: str | os.PathLike) -> tuple[Drift, dict, dict]:
    """Read an artifact written by :func:`save_artifact`.

    Returns ``(drift, params, metadata)``. Raises :class:`ArtifactError` with
    one readable line when the file is missing, corrupt, or names an unknown
    family or parameters of the wrong shape.
    """
    from drift_functions import UnknownDriftError, make  # the registry imports this module

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"drift artifact not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data[_META_KEY]))
            flat = {k[len(_PARAM_PREFIX):]: np.asarray(data[k]) for k in data.files if k.startswith(_PARAM_PREFIX)}
    except Exception as error:  # zip, json and key errors all mean the same thing to the user
        raise ArtifactError(f"corrupt drift artifact {path}: {type(error).__name__}: {error}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION or "name" not in header:
        raise ArtifactError(f"corrupt drift artifact {path}: missing or unsupported header")
    try:
        drift = make(header["name"], **header.get("options", {}))
    except (UnknownDriftError, ValueError) as error:
        raise ArtifactError(f"drift artifact {path} has an unusable family: {error}") from None
    params = _unflatten(flat)
    expected = _flatten(drift.init(_dummy_key()))
    got = _flatten(params)
    if set(expected) != set(got) or any(expected[k].shape != got[k].shape for k in expected):
        shapes = {k: v.shape for k, v in got.items()}
        raise ArtifactError(
            f"drift artifact {path}: parameters {shapes} do not fit family {drift.spec!r}"
        )
    return drift, params, header.get("metadata", {})


def _dummy_key():
    import jax

    return jax.random.PRNGKey(0)
