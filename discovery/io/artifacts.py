"""Portable drift artifacts: a few-KB ``.npz`` holding a drift's family, options and parameters.

Layout of the file (:func:`discovery.io.outputs.write_npz`, header under ``__drift__``):

    __drift__      JSON string: {"format": 1, "name": ..., "options": {...}, "metadata": {...}}
    p/<path>       one float32 array per parameter leaf, ``<path>`` = "/"-joined dict keys

Parameters are nested dicts of arrays (all drifts in this package use those),
so the tree is rebuilt from the key paths without pickling anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

import drift_functions
from discovery.io.outputs import DamagedFileError, read_npz, write_npz
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
    return write_npz(path, arrays, header, header_key=_META_KEY)


def load_artifact(path: str | os.PathLike) -> tuple[Drift, dict, dict]:
    """Read an artifact written by :func:`save_artifact`.

    Returns ``(drift, params, metadata)``. Raises :class:`ArtifactError` with
    one readable line when the file is missing, corrupt, or names an unknown
    family or parameters of the wrong shape.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"drift artifact not found: {path}")
    expected_file = "expected a drift artifact written by `discovery meta-train` or `discovery distill`"
    try:
        header, arrays = read_npz(path, header_key=_META_KEY)
        flat = {k[len(_PARAM_PREFIX) :]: v for k, v in arrays.items() if k.startswith(_PARAM_PREFIX)}
    except Exception as error:  # zip, json and key errors all mean the same thing to the user
        reason = str(error) if isinstance(error, DamagedFileError) else f"{path} is unreadable ({type(error).__name__})"
        raise ArtifactError(f"corrupt drift artifact: {reason}; {expected_file}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_VERSION or "name" not in header:
        raise ArtifactError(
            f"corrupt drift artifact: {path} has no drift header (format {FORMAT_VERSION}); {expected_file}"
        )
    try:
        drift = drift_functions.make(header["name"], **header.get("options", {}))
    except ValueError as error:  # UnknownDriftError included
        raise ArtifactError(f"drift artifact {path} has an unusable family: {error}") from None
    params = _unflatten(flat)
    expected = _flatten(drift.init(jax.random.PRNGKey(0)))
    got = _flatten(params)
    if set(expected) != set(got) or any(expected[k].shape != got[k].shape for k in expected):
        shapes = {k: v.shape for k, v in got.items()}
        raise ArtifactError(f"drift artifact {path}: parameters {shapes} do not fit family {drift.spec!r}")
    bad = sorted(k for k, v in got.items() if not np.all(np.isfinite(v)))
    if bad:
        raise ArtifactError(
            f"drift artifact {path} holds non-finite parameters ({', '.join(bad)}); "
            "it came from a diverged run and cannot be used"
        )
    return drift, params, header.get("metadata", {})
