"""Side-by-side throughput benchmark: our PPO vs the env-only limit vs Brax's PPO, and populations.

Everything runs in one process, one measurement after another, so the ratios
(ours/brax, ours/limit, vmapped/sequential) compare like with like even on a
noisy, shared machine. Every figure is the median of ``repeats`` timed
repetitions that follow a separate compile/warm-up; compile time is reported
on its own.

What is measured, per environment case:

* ``limit``: env-only stepping with uniformly random actions: one jitted
  ``lax.scan`` over steps of ``vmap(env.step)`` on the same env, backend and
  ``num_envs`` as the learner, for the same number of env steps. No learner
  can beat it on the same machine.
* ``learner``: our SGD alone (``rl_algos.ppo.train.sgd_epochs``, the code
  ``ours`` runs) for the same number of updates on a fixed random batch of
  the same shape: no env, no rollout. ``limit`` and ``learner`` back to back
  give the *ceiling*: the throughput if everything else were free.
* ``ours``: one ppo_clip learner through the batched runner (``make_train_batch``), env-steps/s.
* ``brax``: ``brax.training.agents.ppo.train`` with the same env, backend,
  ``num_envs``, unroll length, batch/minibatch layout, epochs, network sizes,
  activation, observation normalisation, learning rate, γ, λ, entropy cost,
  reward scale, gradient clip and clip ε. Brax compiles inside ``train``, so
  it is run once with ``num_evals = repeats + 2``: that gives ``repeats + 1``
  training epochs of exactly our number of updates each. The first epoch
  (compile + run) is the warm-up; the others are the timed repetitions.
  Epoch times come from Brax's own ``training/walltime`` (a
  ``block_until_ready`` timer around ``training_epoch`` only), so its
  evaluations never enter the figure; with ``brax_eval_envs = 0`` (the
  CPU presets) the evaluator is switched off altogether (``run_evals=False``),
  otherwise each evaluation's time is reported separately.
* ``cores``: ``train`` with 8 seeds and one meta-generation of 32 members,
  each on a mesh of one device and on a mesh of every device (one per CPU
  core by default), as a speed-up beside the device count.
* ``population``: ``P`` learners (PPO-initialised LPO drifts, perturbed like
  an ES population) trained by one ``jit(vmap(train))`` call vs the same ``P``
  learners run one after another through the single-learner compiled
  function; agent-env-steps/s. A *meta-generation* is one vmapped call over
  the population's drift parameters with one shared key (all members share
  the inner seed, as in the original LPO run), fitness included.

Peak memory: process RSS sampled every 20 ms by a background thread during
each measurement (``psutil``; ``resource.getrusage`` gives the process-wide
high-water mark), and the device's ``peak_bytes_in_use`` where the backend
reports ``memory_stats()`` (GPUs; it is a process-wide running peak).
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import time
from typing import Any

from discovery.io import configs
from discovery.io.outputs import environment_info
from discovery.runtime.progress import status
from discovery.workflows.bench.brax import BRAX_WARMUP_EPOCHS, bench_brax, brax_kwargs
from discovery.workflows.bench.measure import (
    ProgressSink,
    bench_cores,
    bench_population,
    learner_timer,
    limit_timer,
    ours_timer,
)
from discovery.workflows.bench.presets import PRESETS, EnvCase, PopulationCase, Preset
from discovery.workflows.bench.report import render_markdown
from discovery.workflows.bench.timing import Timed

__all__ = ["PARTS", "PRESETS", "EnvCase", "PopulationCase", "Preset", "brax_kwargs", "render_markdown", "run_bench"]


PARTS = ("limit", "learner", "ours", "brax", "population", "cores")


def bench_case(case: EnvCase, preset: Preset, repeats: int, parts: tuple[str, ...]) -> dict:
    """limit, ours (and ours with progress) and brax on one env, their timed repetitions interleaved.

    Each is compiled and warmed up first. Then every *round* times one call of
    each of ours/limit back to back; with Brax, a round runs after each Brax
    training epoch, so every figure's repetitions were taken under the same
    load as the others' (the machine may be shared). The first round (after
    Brax's compile epoch) is discarded; the last ``repeats`` rounds count.
    """
    spec, _ = configs.load_train_spec(case.env, dict(case.overrides))
    env, config = spec.make_env(), spec.ppo
    result: dict[str, Any] = {
        "env": case.env,
        "env_options": dict(spec.env_options),
        "config": dataclasses.asdict(config),
        "env_steps": config.env_steps,
    }
    label = f"{case.env}" + (f" ({spec.env_options.get('backend')})" if spec.env_options.get("backend") else "")
    timers: list[Timed] = []
    sink = ProgressSink()
    if "limit" in parts:
        status(f"  {label}: compiling limit (env-only, random actions)…")
        timers.append(limit_timer(env, config))
    if "learner" in parts:
        status(f"  {label}: compiling learner (SGD alone, the floor under ours)…")
        timers.append(learner_timer(env, config))
    if "ours" in parts:
        status(f"  {label}: compiling ours…")
        timers.append(ours_timer(env, config))
        if case.progress:
            timers.append(ours_timer(env, config, progress_callback=sink))

    def one_round():
        for timer in timers:
            timer.run_once()

    if "brax" in parts and case.brax and env.family == "brax":
        status(f"  {label}: brax PPO ({repeats + BRAX_WARMUP_EPOCHS} epochs, ours/limit timed between them)…")
        result["brax"] = bench_brax(env, config, repeats, preset.brax_eval_envs, between_epochs=one_round)
    else:
        for _ in range(repeats):
            one_round()
    for timer in timers:
        result[timer.name] = timer.result(last=repeats)
    if case.progress and "ours_progress" in result:
        result["ours_progress"]["callbacks"] = sink.calls
    if "limit" in result and "learner" in result:
        # The simulator alone plus the SGD alone, back to back: the rest of a training run taken as free.
        result["ceiling_env_steps_per_s"] = 1.0 / (
            1.0 / result["limit"]["env_steps_per_s"] + 1.0 / result["learner"]["env_steps_per_s"]
        )
    result["ratios"] = case_ratios(result)
    return result


def case_ratios(result: dict) -> dict:
    sps = {
        name: result[name]["env_steps_per_s"]
        for name in ("limit", "learner", "ours", "brax", "ours_progress")
        if name in result
    }
    ratios = {}
    if "ceiling_env_steps_per_s" in result:
        for name in ("ours", "brax"):
            if name in sps:
                ratios[f"{name}_over_ceiling"] = sps[name] / result["ceiling_env_steps_per_s"]
    if "ours" in sps and "brax" in sps:
        ratios["ours_over_brax"] = sps["ours"] / sps["brax"]
        ratios["ours_over_brax_cpu"] = result["brax"]["cpu_median_s"] / result["ours"]["cpu_median_s"]
        # Repetition i of ours ran right after Brax's epoch i: the median of per-pair ratios cancels slow load drifts.
        ours_times, brax_times = result["ours"]["times_s"], result["brax"]["times_s"]
        if len(ours_times) == len(brax_times):
            ratios["ours_over_brax_paired"] = statistics.median(b / o for o, b in zip(ours_times, brax_times))
    if "ours" in sps and "limit" in sps:
        ratios["ours_over_limit"] = sps["ours"] / sps["limit"]
    if "brax" in sps and "limit" in sps:
        ratios["brax_over_limit"] = sps["brax"] / sps["limit"]
    if "ours_progress" in sps:
        ratios["progress_overhead"] = 1.0 - sps["ours_progress"] / sps["ours"]
    return ratios


def run_bench(
    preset: Preset,
    repeats: int | None = None,
    envs_filter: tuple[str, ...] | None = None,
    parts: tuple[str, ...] = PARTS,
) -> dict:
    """Run every case of ``preset`` (optionally only ``envs_filter``) and return the ``bench.json`` document."""
    repeats = preset.repeats if repeats is None else repeats
    started = time.time()
    cases = [c for c in preset.cases if envs_filter is None or c.env in envs_filter]
    results = []
    for case in cases:
        results.append(bench_case(case, preset, repeats, parts))
        line = ", ".join(
            f"{n} {results[-1][n]['env_steps_per_s']:,.0f}" for n in ("limit", "ours", "brax") if n in results[-1]
        )
        status(f"  {case.env}: {line} env-steps/s")
    populations = []
    if "population" in parts:
        for case in preset.populations:
            if envs_filter is None or case.env in envs_filter:
                status(
                    f"  population {case.env}: sizes {', '.join(map(str, case.sizes))}, meta-generation "
                    f"{case.meta_size}…"
                )
                populations.append(bench_population(case, repeats))
    cores = []
    if "cores" in parts:
        for case in preset.cores:
            if envs_filter is None or case.env in envs_filter:
                status(
                    f"  cores {case.env}: train with {case.seeds} seeds and a meta-generation of {case.meta_size}, "
                    "1 device vs all…"
                )
                cores.append(bench_cores(case, repeats))
    return {
        "preset": preset.name,
        "description": preset.description,
        "repeats": repeats,
        "timing": "median of the timed repetitions after a separate compile and one warm-up call; compile reported "
        "separately",
        "cases": results,
        "populations": populations,
        "cores": cores,
        "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "wall_s": time.time() - started,
        "environment": environment_info(),
    }
