"""Turn what a user types after ``--drift`` into a drift and its parameters."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax

import drift_functions
from discovery.io.artifacts import ARTIFACT_SUFFIX, ArtifactError, load_artifact
from discovery.io.configs import REPO_ROOT
from discovery.runtime.errors import UserError

# Drifts this project discovered and ships: ``<stem>.npz`` artifacts, addressable as ``--drift <stem>``.
DISCOVERED_DIR = REPO_ROOT / "drift_functions" / "discovered"
# Artifact stems that say nothing on their own; their label adds the run directory.
_GENERIC_STEMS = ("drift", "best_drift", "best_validated_drift")


def discovered() -> dict[str, Path]:
    """Shipped discovered drifts: stem -> artifact path."""
    return {path.stem: path for path in sorted(DISCOVERED_DIR.glob(f"*{ARTIFACT_SUFFIX}"))}


def artifact_label(path: str | Path) -> str:
    """A short, path-derived label: the file stem, or ``<run dir>/<stem>`` for the generic names a
    meta-training run writes (two runs' ``drift.npz`` then stay apart in one table)."""
    path = Path(path)
    if path.stem in _GENERIC_STEMS and path.parent.name:
        return f"{path.parent.name}/{path.stem}"
    return path.stem


@dataclasses.dataclass(frozen=True)
class ResolvedDrift:
    label: str  # short name for tables and plots
    drift: drift_functions.Drift
    params: Any
    source: str  # the text the user gave


def resolve_drift(text: str, key: jax.Array | None = None) -> ResolvedDrift:
    """Accept ``name``, ``name:key=value,...``, the stem of a shipped discovered drift
    (``drift_functions/discovered/<stem>.npz``) or a path to a saved artifact (``.npz``).
    An artifact is labelled by its path (:func:`artifact_label`), or by ``LABEL`` in ``PATH.npz=LABEL``.

    Learned families made by name get ``init(key)`` weights (all-zero, i.e.
    PPO, for ``lpo:ppo_init=true``).
    """
    text = text.strip()
    if not text:
        raise UserError("empty drift name; valid drifts: " + ", ".join(drift_functions.registered()))
    shipped = discovered()
    path_text, label = split_label(text)
    if label is not None:
        if path_text in shipped:
            return _from_artifact(shipped[path_text], text, label=label)
        return _from_artifact(Path(path_text), text, label=label)
    if text in shipped:
        return _from_artifact(shipped[text], text, label=text)
    looks_like_path = text.endswith(ARTIFACT_SUFFIX) or "/" in text or Path(text).exists()
    if looks_like_path:
        return _from_artifact(Path(text), text, label=artifact_label(text))
    try:
        name, options = drift_functions.parse_spec(text)
        drift = drift_functions.make(name, **options)
    except drift_functions.UnknownDriftError as error:
        names = ", ".join(shipped) or "none yet"
        raise UserError(f"{error}; shipped discovered drifts: {names} (see `discovery drifts`)") from None
    except ValueError as error:
        raise UserError(str(error)) from None
    params = drift.init(jax.random.PRNGKey(0) if key is None else key)
    return ResolvedDrift(text, drift, params, text)


def split_label(text: str) -> tuple[str, str | None]:
    """``runs/a/drift.npz=mine`` -> ``('runs/a/drift.npz', 'mine')``; the label is ``None`` unless the
    text before the last ``=`` is an artifact (a ``.npz`` path or a shipped stem)."""
    head, sep, label = text.rpartition("=")
    if not sep or not (head.endswith(ARTIFACT_SUFFIX) or head in discovered()):
        return text, None
    if not label.strip() or any(c in label for c in ",:="):
        raise UserError(
            f"bad label {label!r} in {text!r}: write PATH.npz=LABEL with a non-empty LABEL without ',', ':' or '='"
        )
    return head, label.strip()


def _from_artifact(path: Path, source: str, label: str) -> ResolvedDrift:
    try:
        drift, params, _ = load_artifact(path)
    except ArtifactError as error:
        raise UserError(
            f"{error} (a drift is a name: {', '.join(drift_functions.registered())}; NAME:key=value,...; "
            "a shipped discovered drift, see `discovery drifts`; or such an artifact)"
        ) from None
    return ResolvedDrift(label, drift, params, source)


def split_drift_list(text: str) -> list[str]:
    """Split ``ppo,dpo:alpha=1.5,beta=0.3,/x/drift.npz`` at commas that start a new drift."""
    parts: list[str] = []
    for piece in text.split(","):
        piece = piece.strip()
        if not piece:
            continue
        # a piece with '=' but no ':' continues the previous drift's overrides, unless it is PATH.npz=LABEL
        labelled = split_label(piece)[1] is not None
        if parts and "=" in piece and ":" not in piece and ":" in parts[-1] and not labelled:
            parts[-1] += "," + piece
        else:
            parts.append(piece)
    return parts
