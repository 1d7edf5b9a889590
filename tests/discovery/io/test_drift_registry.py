"""Tests of discovery/io/drift_registry."""

import jax
import pytest

import drift_functions
from discovery.runtime.errors import UserError


def _two_runs(tmp_path):
    from discovery.io import artifacts

    drift = drift_functions.make("lpo", ppo_init=True, hidden_size=4)
    paths = []
    for run in ("runA", "runB"):  # both carry the metadata label "lpo-mean", as meta-train writes it
        paths.append(
            artifacts.save_artifact(
                tmp_path / run / "drift.npz", drift, drift.init(jax.random.PRNGKey(0)), {"label": "lpo-mean"}
            )
        )
    return paths


def test_two_runs_drift_npz_get_path_labels(tmp_path):
    from discovery.io.drift_registry import resolve_drift
    from discovery.workflows.evaluate.grid import unique_labels

    a, b = _two_runs(tmp_path)
    labels = [r.label for r in unique_labels([resolve_drift(str(a)), resolve_drift(str(b))])]
    assert labels == ["runA/drift", "runB/drift"]  # not "lpo-mean" twice, the label inside both artifacts


def test_path_equals_label_names_an_artifact(tmp_path):
    from discovery.io.drift_registry import resolve_drift, split_drift_list
    from discovery.workflows.evaluate.grid import unique_labels

    a, b = _two_runs(tmp_path)
    texts = split_drift_list(f"ppo,dpo:alpha=1.5,beta=0.5,{a}=mine,{b}=theirs")
    assert texts == ["ppo", "dpo:alpha=1.5,beta=0.5", f"{a}=mine", f"{b}=theirs"]
    resolved = unique_labels([resolve_drift(t) for t in texts])
    assert [r.label for r in resolved] == ["ppo", "dpo:alpha=1.5,beta=0.5", "mine", "theirs"]
    assert resolved[2].drift.name == "lpo" and resolved[2].source == f"{a}=mine"
    with pytest.raises(UserError, match="appear twice"):
        unique_labels([resolve_drift(f"{a}=same"), resolve_drift(f"{b}=same")])
    with pytest.raises(UserError, match="bad label"):
        resolve_drift(f"{a}=")
