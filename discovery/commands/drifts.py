"""``discovery drifts``: every registered drift family and every shipped discovered drift, one line each."""

from __future__ import annotations

import inspect

import jax

import drift_functions
from discovery.io.artifacts import ArtifactError, load_artifact
from discovery.io.drift_registry import DISCOVERED_DIR, discovered

# One line per built-in family; a family registered later is described by its factory's docstring.
DESCRIPTIONS = {
    "ppo_clip": "PPO's clipping as a drift: relu((r − clip(r, 1−ε, 1+ε))·Â)",
    "dpo": "Discovered Policy Optimisation's closed form (Lu et al., NeurIPS 2022)",
    "dpo_poly": "DPO plus per-advantage-sign polynomial terms; the family `distill` fits",
    "lpo": "learned drift network: 8 ratio/advantage features → 128 tanh → 1, no biases",
    "ta_lpo": "LPO that also sees training progress p ∈ [0, 1] (Jackson et al., ICLR 2024)",
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "drifts",
        help="list the registered drift families and the shipped discovered drifts",
        description="Lists every drift that --drift accepts by name: registered families (with their options and "
        "the number of parameters an ES can search) and the discovered drifts shipped in "
        "drift_functions/discovered/ (with where and how they were found).",
    )
    parser.set_defaults(run=run)


def family_line(name: str) -> str:
    factory = drift_functions.factory(name)
    options = ", ".join(f"{p.name}={p.default!r}" for p in inspect.signature(factory).parameters.values())
    drift = drift_functions.make(name)
    count = sum(leaf.size for leaf in jax.tree.leaves(drift.init(jax.random.PRNGKey(0))))
    summary = DESCRIPTIONS.get(name) or (inspect.getdoc(factory) or "").split("\n")[0].replace("``", "").rstrip(".")
    return f"{name:<9}{count:>5} params  {summary}" + (f"  [options: {options}]" if options else "")


def discovered_line(stem: str, path) -> str:
    try:
        drift, params, metadata = load_artifact(path)
    except ArtifactError as error:
        return f"{stem:<24} unreadable: {error}"
    facts = [drift.spec]
    if metadata.get("envs"):
        facts.append("meta-trained on " + ", ".join(metadata["envs"]))
    if metadata.get("generation") is not None:
        facts.append(f"{metadata['generation']} generations")
    env_steps = metadata.get("env_steps_total") or metadata.get("env_steps")
    if env_steps:
        facts.append(f"{env_steps:.2g} env steps")
    if metadata.get("cpu_seconds_total"):
        facts.append(f"{metadata['cpu_seconds_total'] / 3600:.1f} CPU hours")
    if metadata.get("distilled_from"):
        r2 = (metadata.get("fit") or {}).get("r2", metadata.get("r2"))
        facts.append(f"distilled from {metadata['distilled_from']}" + (f" (R² {r2:.3f})" if r2 is not None else ""))
    validation = metadata.get("validation") or {}
    if validation.get("score") is not None:
        facts.append(f"validation {validation['score']:.3f} × PPO")
    return f"{stem:<24} " + "; ".join(facts)


def run(args, extra: list[str]) -> int:
    lines = ["Registered families (--drift NAME or NAME:option=value,...):"]
    lines += ["  " + family_line(name) for name in drift_functions.registered()]
    shipped = discovered()
    lines.append(
        f"Discovered drifts shipped in {DISCOVERED_DIR.relative_to(DISCOVERED_DIR.parents[1])}/ (--drift STEM):"
    )
    lines += ["  " + discovered_line(stem, path) for stem, path in shipped.items()] or ["  (none yet)"]
    print("\n".join(lines))  # a listing: plain text on stdout, for grep and pipes
    return 0
