"""``evaluate --report PATH``: the evaluation as a self-contained document (``docs/RESULTS.md``).

Beside the tables of ``results.md`` it holds what a reviewer asks for: the
command that made it, the commit and machine, where every learned drift came
from (meta-training tasks, generations, env steps, CPU hours), a plain reading
of each drift against the reference per role, learning curves, the
normalised-score figure and heatmaps of every evaluated drift next to DPO and PPO-clip.
Figures go to ``<PATH's folder>/results/``.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

from discovery.io.artifacts import load_artifact
from discovery.io.outputs import atomic_write_text, environment_info, git_commit, slug
from discovery.reporting.drift_plots import panels_for, plot_drift_panels, reference_panels
from discovery.runtime.devices import host_cpu
from discovery.workflows.evaluate.report import GROUP_TITLES, results_markdown


def reading(aggregates: dict, reference: str) -> list[str]:
    """Per role and drift: better / worse / not distinguishable from the reference, and why."""
    lines = []
    for group, stats in aggregates.items():
        if (group == "all" and len(aggregates) > 1) or not stats["tasks"]:
            continue
        ref = stats["aggregate"].get(reference)
        for label, agg in stats["aggregate"].items():
            if label == reference or ref is None:
                continue
            poi = stats["improvement"].get(label, (float("nan"),) * 3)
            iqm = f"IQM {agg['iqm']:.3f} [{agg['iqm_ci_low']:.3f}, {agg['iqm_ci_high']:.3f}] vs {ref['iqm']:.3f}"
            p = f"P(better) {poi[0]:.2f} [{poi[1]:.2f}, {poi[2]:.2f}]"
            if agg["iqm_ci_low"] > ref["iqm_ci_high"] or poi[1] > 0.5:
                verdict = "better than"
            elif agg["iqm_ci_high"] < ref["iqm_ci_low"] or poi[2] < 0.5:
                verdict = "worse than"
            else:
                verdict = "not distinguishable from"
            lines.append(f"- **{label}** on {GROUP_TITLES.get(group, group)}: {verdict} {reference} ({iqm}; {p}).")
    return lines


def provenance(resolved_drifts) -> list[str]:
    """Where each artifact drift came from, from its metadata."""
    lines = []
    for r in resolved_drifts:
        path = Path(r.source) if r.source.endswith(".npz") else None
        if path is None:
            from discovery.io.drift_registry import discovered

            path = discovered().get(r.source)
        if path is None:
            continue
        _, _, metadata = load_artifact(path)
        facts = [f"family `{r.drift.spec}`"]
        if metadata.get("envs"):
            facts.append("meta-trained on " + ", ".join(metadata["envs"]))
        if metadata.get("generation") is not None:
            facts.append(f"ES mean after {metadata['generation']} generations")
        if metadata.get("env_steps_total"):
            facts.append(f"{metadata['env_steps_total']:,} env steps")
        if metadata.get("cpu_seconds_total"):
            facts.append(f"{metadata['cpu_seconds_total'] / 3600:.1f} CPU hours")
        if metadata.get("distilled_from"):
            r2 = (metadata.get("fit") or {}).get("r2", metadata.get("r2", float("nan")))
            facts.append(
                f"distilled from `{metadata['distilled_from']}` (R² {r2:.3f} over the grid and rollout samples)"
            )
        if metadata.get("run"):
            facts.append(f"run files: `{metadata['run']}`")
        lines.append(f"- **{r.label}**: " + "; ".join(facts) + ".")
    return lines


def write_public_report(path: Path, out: Path, rows, aggregates, tasks, reference, grid, resolved_drifts) -> Path:
    path = Path(path)
    figures = path.parent / "results"
    figures.mkdir(parents=True, exist_ok=True)
    for png in sorted(out.glob("*.png")):
        shutil.copyfile(png, figures / png.name)
    learned = [r for r in resolved_drifts if r.drift.name not in ("ppo_clip", "dpo")]
    heatmap = None
    if learned:
        panels = [panel for r in learned for panel in panels_for(r)] + reference_panels()
        heatmap = plot_drift_panels(
            panels, figures / "drift_heatmaps.png", title="evaluated drifts beside DPO and PPO-clip"
        )
    env = environment_info()
    rel = os.path.relpath(figures, path.parent)
    lines = [
        "# Results",
        "",
        f"Written by `{env['command']}` on {datetime.now():%Y-%m-%d} at commit `{git_commit()}`; "
        f"{os.cpu_count()} × {host_cpu()}, JAX backend `{env['backend']}` ({len(env['devices'])} device(s)). "
        f"Rerun the same command to reproduce it; finished cells in `{out}` are reused.",
        "",
    ]
    if provenance(resolved_drifts):
        lines += ["## Drifts", ""] + provenance(resolved_drifts) + [""]
    if reference and reading(aggregates, reference):
        lines += [
            "## Reading",
            "",
            "Better = the IQM CI lies above the reference's, or the probability of improvement has a "
            "CI above 0.5; worse = the mirror image; anything else is not distinguishable.",
            "",
        ]
        lines += reading(aggregates, reference) + [""]
    body = results_markdown(rows, aggregates, tasks, reference, grid["seeds"], grid["overrides"])
    lines += [body.replace("# Evaluation results\n", "## Per task\n", 1)]
    lines += ["## Figures", "", f"![normalised scores]({rel}/normalized_scores.png)", ""]
    if heatmap is not None:
        lines += [f"![drift heatmaps]({rel}/drift_heatmaps.png)", ""]
    lines += [f"![{t.label}]({rel}/curves_{slug(t.label)}.png)" for t in tasks] + [""]
    return atomic_write_text(path, "\n".join(lines))
