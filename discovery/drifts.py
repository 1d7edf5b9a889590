"""Turn what a user types after ``--drift`` into a drift and its parameters."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax

import drift_functions
from discovery.artifacts import ARTIFACT_SUFFIX, ArtifactError, load_artifact
from discovery.errors import UserError


@dataclasses.dataclass(frozen=True)
class ResolvedDrift:
    label: str  # short name for tables and plots
    drift: drift_functions.Drift
    params: Any
    source: str  # the text the user gave


def resolve_drift(text: str, key: jax.Array | None = None) -> ResolvedDrift:
    """Accept ``name``, ``name:key=value,...`` or a path to a saved artifact (``.npz``).

    Learned families made by name get ``init(key)`` weights (all-zero, i.e.
    PPO, for ``lpo:ppo_init=true``).
    """
    text = text.strip()
    if not text:
        raise UserError("empty drift name; valid drifts: " + ", ".join(drift_functions.registered()))
    looks_like_path = text.endswith(ARTIFACT_SUFFIX) or "/" in text or Path(text).exists()
    if looks_like_path:
        try:
            drift, params, metadata = load_artifact(text)
        except ArtifactError as error:
            raise UserError(str(error)) from None
        label = metadata.get("label") or Path(text).stem
        if label in ("drift", "best_drift") and Path(text).parent.name:
            label = f"{Path(text).parent.name}/{label}"
        return ResolvedDrift(label, drift, params, text)
    try:
        name, options = drift_functions.parse_spec(text)
        drift = drift_functions.make(name, **options)
    except ValueError as error:  # UnknownDriftError is a ValueError
        raise UserError(str(error)) from None
    params = drift.init(jax.random.PRNGKey(0) if key is None else key)
    return ResolvedDrift(text, drift, params, text)


def split_drift_list(text: str) -> list[str]:
    """Split ``ppo,dpo:alpha=1.5,beta=0.3,/x/drift.npz`` at commas that start a new drift."""
    parts: list[str] = []
    for piece in text.split(","):
        piece = piece.strip()
        if not piece:
            continue
        # a piece with '=' but no ':' continues the previous drift's overrides
        if parts and "=" in piece and ":" not in piece and ":" in parts[-1]:
            parts[-1] += "," + piece
        else:
            parts.append(piece)
    return parts
